package nexo

import (
	"context"
	"sync"
	"time"
)

// MemJournal is an in-memory Journal for the tests. Sharing one
// between two Servers models a restart over a persistent journal.
type MemJournal struct {
	mu      sync.Mutex
	entries map[[2]string]*JournalEntry
	last    map[string][2]string
	order   [][2]string // keys in Begin order (see memledger.go)
	closed  []int       // len(order) at each ClosePeriod
}

// NewMemJournal returns an empty MemJournal.
func NewMemJournal() *MemJournal {
	return &MemJournal{entries: map[[2]string]*JournalEntry{}, last: map[string][2]string{}}
}

func (j *MemJournal) Begin(_ context.Context, e JournalEntry) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	k := [2]string{e.SaleID, e.ServiceID}
	e.Response = append([]byte(nil), e.Response...)
	j.entries[k] = &e
	j.last[e.SaleID] = k
	j.order = append(j.order, k)
	return nil
}

func (j *MemJournal) Finish(_ context.Context, saleID, serviceID string, response []byte, at time.Time) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	e, ok := j.entries[[2]string{saleID, serviceID}]
	if !ok {
		return &Error{Condition: NotFound, Text: "journal: no entry " + saleID + "/" + serviceID}
	}
	e.State, e.Response, e.Updated = TxDone, append([]byte(nil), response...), at
	return nil
}

func (j *MemJournal) Lookup(_ context.Context, saleID, serviceID string) (JournalEntry, bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	e, ok := j.entries[[2]string{saleID, serviceID}]
	if !ok {
		return JournalEntry{}, false, nil
	}
	return *e, true, nil
}

func (j *MemJournal) Last(_ context.Context, saleID string) (JournalEntry, bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	k, ok := j.last[saleID]
	if !ok {
		return JournalEntry{}, false, nil
	}
	return *j.entries[k], true, nil
}
