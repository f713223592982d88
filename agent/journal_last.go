package agent

import (
	"context"
	"sync"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/store"
)

// maxLastEntries bounds lastEntries: the SaleIDs the Nexo server keeps
// logged in at once (nexo.ServerConfig.MaxLoggedIn, default 32). A POS
// cycling through more SaleIDs only costs itself cache misses.
const maxLastEntries = 32

// lastEntries keeps, per SaleID, the finished journal entry Last or Lookup
// decoded for it most recently, with the stamp of the record it was decoded
// from (store.TxnStamp: its id and number of transitions). Each call asks
// the store, in one read transaction of the header only, whether that
// record is still the one asked for and unchanged, and decodes again
// otherwise: whatever writes the entry (the server's Finish, recovery,
// settle, a refund, an after-sale update) appends a transition, so a kept
// entry is never served once the journal says something else. What it
// saves is reading every transition and decoding the response each time a
// POS asks about the same transaction.
type lastEntries struct {
	mu sync.Mutex
	m  map[string]stampedEntry
}

type stampedEntry struct {
	stamp store.TxnStamp
	entry nexo.JournalEntry
}

func newLastEntries() *lastEntries { return &lastEntries{m: map[string]stampedEntry{}} }

func (c *lastEntries) get(saleID string) stampedEntry {
	if c == nil {
		return stampedEntry{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[saleID]
}

// put keeps s for saleID; only a finished entry is worth keeping (one in
// progress changes at its next step).
func (c *lastEntries) put(saleID string, s stampedEntry) {
	if c == nil || s.entry.State != nexo.TxDone || s.entry.Response == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[saleID]; !ok && len(c.m) >= maxLastEntries {
		for k := range c.m { // any one: bounded, not clever
			delete(c.m, k)
			break
		}
	}
	c.m[saleID] = s
}

func (c *lastEntries) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// Last implements nexo.Journal. The entry's Response may be shared with
// other callers (nexo.JournalEntry says so): it is never modified here.
func (j journal) Last(ctx context.Context, saleID string) (nexo.JournalEntry, bool, error) {
	have := j.last.get(saleID)
	t, stamp, ok, err := j.st.LastTxnForSaleSince(ctx, saleID, have.stamp, entryStates...)
	return j.keep(saleID, have, t, stamp, ok, err)
}

// Lookup implements nexo.Journal, as Last.
func (j journal) Lookup(ctx context.Context, saleID, serviceID string) (nexo.JournalEntry, bool, error) {
	have := j.last.get(saleID)
	if have.entry.ServiceID != serviceID {
		have = stampedEntry{}
	}
	t, stamp, ok, err := j.st.TxnByServiceIDSince(ctx, saleID, serviceID, have.stamp, entryStates...)
	return j.keep(saleID, have, t, stamp, ok, err)
}

// keep answers Last or Lookup: the entry kept when the store says it is
// unchanged (stamp == have's), else t decoded, and kept.
func (j journal) keep(saleID string, have stampedEntry, t store.Txn, stamp store.TxnStamp, ok bool, err error) (nexo.JournalEntry, bool, error) {
	if err != nil || !ok {
		return nexo.JournalEntry{}, false, err
	}
	if stamp == have.stamp {
		return have.entry, true, nil
	}
	e := entryOf(t, withResponse)
	j.last.put(saleID, stampedEntry{stamp: stamp, entry: e})
	return e, true, nil
}
