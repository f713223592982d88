package store

import (
	"context"
	"fmt"
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
