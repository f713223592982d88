package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
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

// OpenPeriod implements nexo.Ledger.
func (l ledger) OpenPeriod(ctx context.Context) (uint64, error) { return l.st.OpenPeriod(ctx) }

// ClosePeriod implements nexo.Ledger.
func (l ledger) ClosePeriod(ctx context.Context, at time.Time) (uint64, error) {
	id, err := l.st.ClosePeriod(ctx, at)
	if errors.Is(err, store.ErrPeriodBusy) {
		return 0, nexo.Errorf(nexo.Busy, "%v; reconcile once it has ended", err)
	}
	return id, err
}

// platformSync compares a period's journal with PPaaS's record of the device's
// transactions (nexo.Synchroniser): what moved money on one side must be the
// same on the other.
type platformSync struct{ qc *qr.Client }

// syncMargin widens the listing window: the platform stamps a transaction a
// little after the journal starts it.
const syncMargin = 5 * time.Minute

// maxSyncPages bounds the pages one synchronisation reads (200 each).
const maxSyncPages = 500

// Synchronise implements nexo.Synchroniser.
func (p platformSync) Synchronise(ctx context.Context, start, end time.Time, payments []nexo.JournaledPayment) ([]string, error) {
	byPlatform := make(map[string]*nexo.JournaledPayment, len(payments))
	byClient := make(map[string]*nexo.JournaledPayment, len(payments))
	for i := range payments {
		jp := &payments[i]
		if jp.PlatformID != "" {
			byPlatform[jp.PlatformID] = jp
		}
		byClient[jp.POITransactionID] = jp
	}
	seen := map[*nexo.JournaledPayment]bool{}
	var diffs []string
	if !start.IsZero() {
		after := ""
		for page := 0; ; page++ {
			if page == maxSyncPages {
				return nil, fmt.Errorf("synchronise: more than %d pages of platform transactions", maxSyncPages)
			}
			pg, err := p.qc.List(ctx, start.Add(-syncMargin), end.Add(syncMargin), after, 200)
			if err != nil {
				return nil, nexo.Errorf(nexo.UnreachableHost, "platform transactions unavailable: %v", err)
			}
			for _, t := range pg.Transactions {
				jp := byPlatform[t.TransactionID]
				if jp == nil {
					jp = byClient[t.ClientTransactionID]
				}
				if jp != nil {
					seen[jp] = true
				}
				if d := compareWithPlatform(jp, t); d != "" {
					diffs = append(diffs, d)
				}
			}
			if pg.Next == "" {
				break
			}
			after = pg.Next
		}
	}
	// A journaled payment the listing did not return (created outside the
	// window, or unknown to the platform) is asked for by id.
	for i := range payments {
		jp := &payments[i]
		if seen[jp] {
			continue
		}
		if jp.PlatformID == "" {
			diffs = append(diffs, fmt.Sprintf("payment %s approved in the journal has no platform transaction id", jp.POITransactionID))
			continue
		}
		t, err := p.qc.Get(ctx, jp.PlatformID)
		var ae *qr.APIError
		switch {
		case errors.As(err, &ae) && ae.StatusCode == 404:
			diffs = append(diffs, fmt.Sprintf("payment %s (%s %s) approved in the journal is unknown to the platform", jp.POITransactionID, jp.Brand, jp.Amount))
		case err != nil:
			return nil, nexo.Errorf(nexo.UnreachableHost, "platform transaction %s unavailable: %v", jp.PlatformID, err)
		default:
			if d := compareWithPlatform(jp, t); d != "" {
				diffs = append(diffs, d)
			}
		}
	}
	return diffs, nil
}

// compareWithPlatform describes how a platform transaction disagrees with the
// journal's payment (nil: the journal has no approved payment for it), or "".
func compareWithPlatform(jp *nexo.JournaledPayment, t ppaas.Transaction) string {
	amount := nexo.Amount{Minor: t.PaymentAmount.Amount, Currency: t.PaymentAmount.Currency}
	moved := t.Status == ppaas.Approved || t.Status == ppaas.Refunded || t.RefundedAmount > 0
	if jp == nil {
		if !moved {
			return ""
		}
		return fmt.Sprintf("platform transaction %s (POI %s, %s) is %s but the journal has no approved payment for it", t.TransactionID, t.ClientTransactionID, amount, t.Status)
	}
	switch {
	case !moved:
		return fmt.Sprintf("payment %s approved in the journal is %s on the platform", jp.POITransactionID, t.Status)
	case amount != jp.Amount:
		return fmt.Sprintf("payment %s is %s in the journal but %s on the platform", jp.POITransactionID, jp.Amount, amount)
	case jp.Reversed && t.RefundedAmount < t.PaymentAmount.Amount:
		return fmt.Sprintf("payment %s reversed in the journal has %s refunded on the platform", jp.POITransactionID, nexo.Amount{Minor: t.RefundedAmount, Currency: amount.Currency})
	case !jp.Reversed && (t.Status == ppaas.Refunded || t.RefundedAmount > 0):
		return fmt.Sprintf("payment %s has %s refunded on the platform but no reversal in the journal", jp.POITransactionID, nexo.Amount{Minor: t.RefundedAmount, Currency: amount.Currency})
	}
	return ""
}

// PeriodGap implements nexo.LedgerGaps: what the journal budget evicted from
// the period (store.PeriodGap).
func (l ledger) PeriodGap(ctx context.Context, id uint64) (int, time.Time, error) {
	g, err := l.st.PeriodGap(ctx, id)
	return g.Evicted, g.Before, err
}
