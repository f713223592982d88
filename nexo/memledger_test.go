package nexo

import (
	"context"
	"time"
)

// MemJournal is also a Ledger: periods are stretches of its Begin order.

// ScanPeriod implements Ledger.
func (j *MemJournal) ScanPeriod(ctx context.Context, id uint64, fn func(JournalEntry) error) (uint64, error) {
	j.mu.Lock()
	if id == 0 {
		id = uint64(len(j.closed)) + 1
	}
	if id > uint64(len(j.closed))+1 {
		j.mu.Unlock()
		return 0, Errorf(NotFound, "no reconciliation period %d", id)
	}
	from, to := 0, len(j.order)
	if id > 1 {
		from = j.closed[id-2]
	}
	if id <= uint64(len(j.closed)) {
		to = j.closed[id-1]
	}
	var entries []JournalEntry
	for _, k := range j.order[from:to] {
		entries = append(entries, *j.entries[k])
	}
	j.mu.Unlock()
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err := fn(e); err != nil {
			return 0, err
		}
	}
	return id, nil
}

// Original implements Ledger.
func (j *MemJournal) Original(_ context.Context, poiTransactionID string) (JournalEntry, bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, k := range j.order {
		e := j.entries[k]
		if e.Category != CategoryPayment || e.State != TxDone {
			continue
		}
		if r := e.Response; r != nil && r.Payment != nil && r.Payment.POITransactionID.ID == poiTransactionID {
			return e.copy(), true, nil
		}
	}
	return JournalEntry{}, false, nil
}

// ClosePeriod implements Ledger.
func (j *MemJournal) ClosePeriod(_ context.Context, _ time.Time) (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	from := 0
	if n := len(j.closed); n > 0 {
		from = j.closed[n-1]
	}
	for _, k := range j.order[from:] {
		if e := j.entries[k]; e.State != TxDone {
			return 0, Errorf(Busy, "transaction %s/%s is unfinished", e.SaleID, e.ServiceID)
		}
	}
	j.closed = append(j.closed, len(j.order))
	return uint64(len(j.closed)), nil
}

// OpenPeriod implements Ledger.
func (j *MemJournal) OpenPeriod(context.Context) (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return uint64(len(j.closed)) + 1, nil
}
