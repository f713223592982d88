package agent

import (
	"context"
	"errors"
	"time"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/store"
)

// ledger is the journal seen by day-end services (nexo.Ledger): GetTotals and
// Reconciliation read the store's reconciliation periods.
type ledger struct{ st *store.Store }

// ScanPeriod implements nexo.Ledger. Transactions the agent started on its
// own (no Nexo request) are skipped.
func (l ledger) ScanPeriod(ctx context.Context, id uint64, fn func(nexo.JournalEntry) error) (uint64, error) {
	got, err := l.st.ScanPeriod(ctx, id, func(t store.Txn) error {
		e := toEntry(t)
		if e.Category == "" {
			return nil
		}
		return fn(e)
	})
	if errors.Is(err, store.ErrNotFound) {
		return 0, nexo.Errorf(nexo.NotFound, "no reconciliation period %d", id)
	}
	return got, err
}

// Original implements nexo.Ledger: the POI transaction id of a payment is its
// journal id.
func (l ledger) Original(ctx context.Context, poiTransactionID string) (nexo.JournalEntry, bool, error) {
	t, err := l.st.Txn(ctx, poiTransactionID)
	if errors.Is(err, store.ErrNotFound) {
		return nexo.JournalEntry{}, false, nil
	}
	if err != nil {
		return nexo.JournalEntry{}, false, err
	}
	return toEntry(t), true, nil
}

// ClosePeriod implements nexo.Ledger.
func (l ledger) ClosePeriod(ctx context.Context, at time.Time) (uint64, error) {
	id, err := l.st.ClosePeriod(ctx, at)
	if errors.Is(err, store.ErrPeriodBusy) {
		return 0, nexo.Errorf(nexo.Busy, "%v; reconcile once it has ended", err)
	}
	return id, err
}
