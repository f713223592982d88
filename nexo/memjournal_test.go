package nexo

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// MemJournal is an in-memory Journal for the tests. Sharing one
// between two Servers models a restart over a persistent journal.
type MemJournal struct {
	mu      sync.Mutex
	entries map[[2]string]*JournalEntry
	last    map[string][2]string
	ids     map[[2]string]string // the POI transaction id Begin gave each entry
	order   [][2]string          // keys in Begin order (see memledger.go)
	closed  []int                // len(order) at each ClosePeriod
	seq     int                  // POI transaction ids handed out by Begin
}

// NewMemJournal returns an empty MemJournal.
func NewMemJournal() *MemJournal {
	return &MemJournal{entries: map[[2]string]*JournalEntry{}, last: map[string][2]string{}, ids: map[[2]string]string{}}
}

func (j *MemJournal) Begin(_ context.Context, e JournalEntry) (string, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.seq++
	id := e.SaleID + "." + e.ServiceID + "." + strconv.Itoa(j.seq)
	k := [2]string{e.SaleID, e.ServiceID}
	if err := recordable(e.Request, e.Response); err != nil {
		return "", err
	}
	e.Request, e.Response = copyRequest(e.Request), copyResponse(e.Response)
	j.entries[k] = &e
	j.last[e.SaleID] = k
	j.order = append(j.order, k)
	j.ids[k] = id
	return id, nil
}

// ID is the POI transaction id Begin gave saleID/serviceID ("" if none).
func (j *MemJournal) ID(saleID, serviceID string) string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.ids[[2]string{saleID, serviceID}]
}

func (j *MemJournal) Finish(_ context.Context, txn Txn, response *Response, at time.Time) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	k := [2]string{txn.SaleID, txn.ServiceID}
	e, ok := j.entries[k]
	if !ok || j.ids[k] != txn.POITransactionID {
		return &Error{Condition: NotFound, Text: "journal: no entry " + txn.SaleID + "/" + txn.ServiceID + " " + txn.POITransactionID}
	}
	if err := recordable(nil, response); err != nil {
		return err
	}
	e.State, e.Response, e.Updated = TxDone, copyResponse(response), at
	return nil
}

func (j *MemJournal) Lookup(_ context.Context, saleID, serviceID string) (JournalEntry, bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	e, ok := j.entries[[2]string{saleID, serviceID}]
	if !ok {
		return JournalEntry{}, false, nil
	}
	return e.copy(), true, nil
}

func (j *MemJournal) Last(_ context.Context, saleID string) (JournalEntry, bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	k, ok := j.last[saleID]
	if !ok {
		return JournalEntry{}, false, nil
	}
	return j.entries[k].copy(), true, nil
}

// copy is e with its own request and response, as a persistent journal
// returns them (the server adds reprinted receipts to the response).
func (e *JournalEntry) copy() JournalEntry {
	c := *e
	c.Request, c.Response = copyRequest(e.Request), copyResponse(e.Response)
	return c
}

// recordable fails as the agent's journal does for what its record cannot
// hold.
func recordable(req *Request, resp *Response) error {
	if req != nil {
		if _, err := AppendRequestRecord(nil, req); err != nil {
			return err
		}
	}
	if resp != nil {
		if _, err := AppendResponseRecord(nil, resp); err != nil {
			return err
		}
	}
	return nil
}

// copyRequest and copyResponse copy through the journal record, as the
// agent's journal stores them: a field the record drops is lost here too.
func copyRequest(r *Request) *Request {
	if r == nil {
		return nil
	}
	b, err := AppendRequestRecord(nil, r)
	if err != nil {
		panic(err)
	}
	c, err := DecodeRequestRecord(b)
	if err != nil {
		panic(err)
	}
	return c
}

func copyResponse(r *Response) *Response {
	if r == nil {
		return nil
	}
	b, err := AppendResponseRecord(nil, r)
	if err != nil {
		panic(err)
	}
	c, err := DecodeResponseRecord(b)
	if err != nil {
		panic(err)
	}
	return c
}
