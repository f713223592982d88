package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func scanIDs(t *testing.T, s *Store, period uint64) (uint64, []string) {
	t.Helper()
	var ids []string
	got, err := s.ScanPeriod(context.Background(), period, func(tx Txn) error {
		ids = append(ids, tx.ID)
		return nil
	})
	require.NoError(t, err)
	return got, ids
}

// TestReconciliationPeriods: periods split the journal in start order, a
// closed period survives a restart, an unfinished POS transaction blocks the
// close, and scans cross batch boundaries.
func TestReconciliationPeriods(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{})
	start := func(id, svc string, final bool) {
		_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "POS1", ServiceID: svc}, Transition{State: "s", Final: final})
		require.NoError(t, err)
	}
	var want1 []string
	for i := range scanBatch + 3 {
		id := fmt.Sprintf("a%04d", i)
		start(id, "S"+id, true)
		want1 = append(want1, id)
	}
	start("agent-own", "", false) // no ServiceID: does not block a close
	want1 = append(want1, "agent-own")
	id, ids := scanIDs(t, s, 0)
	require.Equal(t, uint64(1), id)
	require.Equal(t, want1, ids)

	start("open", "Sopen", false)
	_, err := s.ClosePeriod(ctx, time.Now())
	require.ErrorIs(t, err, ErrPeriodBusy)
	require.NoError(t, s.AppendTxn(ctx, "open", Transition{State: "done", Final: true}))
	closed, err := s.ClosePeriod(ctx, time.Now())
	require.NoError(t, err)
	require.Equal(t, uint64(1), closed)
	start("b1", "Sb1", true)

	s = reopen(t, s, Options{})
	_, ids = scanIDs(t, s, 1)
	require.Equal(t, append(want1, "open"), ids)
	id, ids = scanIDs(t, s, 0)
	require.Equal(t, uint64(2), id)
	require.Equal(t, []string{"b1"}, ids)
	_, err = s.ScanPeriod(ctx, 3, func(Txn) error { return nil })
	require.ErrorIs(t, err, ErrNotFound)
}

// The open period is read from the file once, then kept (ClosePeriod advances
// it): a payment's response names it without a read transaction, and a
// reopened store reads the same.
func TestOpenPeriodKeptAfterFirstRead(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{})
	id, err := s.OpenPeriod(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, id)
	reads := s.ReadTxns()
	id, err = s.OpenPeriod(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, id)
	require.Equal(t, reads, s.ReadTxns(), "no read transaction once known")
	closed, err := s.ClosePeriod(ctx, time.Now())
	require.NoError(t, err)
	require.EqualValues(t, 1, closed)
	id, err = s.OpenPeriod(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 2, id)
	s = reopen(t, s, Options{})
	id, err = s.OpenPeriod(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 2, id, "read from the file after a restart")
}

// TestPeriodGapsRecordEvictions: the journal budget evicts finished
// transactions of a closed period and of the period in progress (left open
// for days); each period records, durably, how many of its transactions went
// and when the newest of them began, exactly what its scan no longer sees.
func TestPeriodGapsRecordEvictions(t *testing.T) {
	const max = 1 << 20
	clk := newFakeClock()
	s, _ := openTest(t, Options{NoSync: true, Now: clk.Now, JournalMaxBytes: max, AdviceTxnID: adviceTxnID})
	ctx := context.Background()
	data := json.RawMessage(`"` + strings.Repeat("r", 4096) + `"`)
	run := func(prefix string, n int) {
		for i := range n {
			id := fmt.Sprintf("%s%04d", prefix, i)
			_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "POS1", ServiceID: id}, Transition{State: "started", Data: data})
			require.NoError(t, err)
			require.NoError(t, s.AppendTxn(ctx, id, Transition{State: "done", Final: true, Data: data}))
			clk.Advance(6 * time.Minute)
		}
	}
	run("a", 50)
	g, err := s.PeriodGap(ctx, 1)
	require.NoError(t, err)
	require.Zero(t, g.Evicted, "nothing evicted yet: complete")
	_, err = s.ClosePeriod(ctx, clk.Now())
	require.NoError(t, err)
	run("b", 400) // the next period stays open for 40 hours
	clk.Advance(72 * time.Hour)
	_, err = s.EnforceJournalBudget(ctx)
	require.NoError(t, err)
	require.Positive(t, s.JournalStats().Evicted)

	s = reopen(t, s, Options{NoSync: true, Now: clk.Now, JournalMaxBytes: max, AdviceTxnID: adviceTxnID})
	for _, p := range []struct {
		id uint64
		n  int
	}{{1, 50}, {2, 400}} {
		var kept []Txn
		_, err := s.ScanPeriod(ctx, p.id, func(tx Txn) error { kept = append(kept, tx); return nil })
		require.NoError(t, err)
		g, err := s.PeriodGap(ctx, p.id)
		require.NoError(t, err)
		require.Equal(t, p.n-len(kept), g.Evicted, "period %d", p.id)
		require.Positive(t, g.Evicted, "period %d", p.id)
		for _, tx := range kept {
			require.True(t, tx.Started.After(g.Before), "period %d: %s began after the evicted ones", p.id, tx.ID)
		}
	}
}
