package store

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRebuiltReservationIsNeverShorter: a damaged pending entry is rebuilt
// from its header, whose times are the caller's: a payment started with an
// At 47 h old was reserved 48 h from its commit; rebuilt from Started, a
// retry 2 h later was accepted. The rebuilt reservation runs from the
// rebuild (review).
func TestRebuiltReservationIsNeverShorter(t *testing.T) {
	ctx := t.Context()
	clk := newFakeClock()
	s, _ := openTest(t, Options{NoSync: true, PruneInterval: -1, manualIndexes: true, Now: clk.Now})
	_, err := s.StartTxn(ctx, TxnRef{ID: "paid", SaleID: "POS1", ServiceID: "42"},
		Transition{At: clk.Now().Add(-47 * time.Hour), State: "done", Final: true})
	require.NoError(t, err)
	damagePendingEntry(t, s, "paid")
	require.NoError(t, s.applyIndexesNow(ctx))
	clk.Advance(2 * time.Hour)
	_, err = s.StartTxn(ctx, TxnRef{ID: "retry", SaleID: "POS1", ServiceID: "42"}, Transition{State: "s"})
	require.ErrorIs(t, err, ErrDuplicateServiceID, "reserved 48 h from its start's commit")
}

// TestRebuiltEntryLeavesAReusedServiceID: x's ServiceID, released
// after 48 h while x's entry was pending, is reused by y; x's entry is
// damaged and rebuilt (at apply, or at x's next step): the key stays y's.
func TestRebuiltEntryLeavesAReusedServiceID(t *testing.T) {
	for _, viaStep := range []bool{false, true} {
		ctx := t.Context()
		clk := newFakeClock()
		s, _ := openTest(t, Options{NoSync: true, PruneInterval: -1, manualIndexes: true, Now: clk.Now})
		_, err := s.StartTxn(ctx, TxnRef{ID: "x", SaleID: "POS1", ServiceID: "42"}, Transition{State: "done", Final: true})
		require.NoError(t, err)
		clk.Advance(49 * time.Hour)
		_, err = s.StartTxn(ctx, TxnRef{ID: "y", SaleID: "POS1", ServiceID: "42"}, Transition{State: "s"})
		require.NoError(t, err)
		damagePendingEntry(t, s, "x")
		if viaStep {
			require.NoError(t, s.AppendTxn(ctx, "x", Transition{State: "late", Alias: "pp-x"}))
		}
		require.NoError(t, s.applyIndexesNow(ctx))
		got, ok, err := s.TxnByServiceID(ctx, "POS1", "42")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "y", got.ID, "viaStep=%v", viaStep)
		_, err = s.StartTxn(ctx, TxnRef{ID: "z", SaleID: "POS1", ServiceID: "42"}, Transition{State: "s"})
		require.ErrorIs(t, err, ErrDuplicateServiceID, "viaStep=%v: y's reservation holds", viaStep)
	}
}

// TestFailedAliasMoveKeepsOwner: a move of pp from pending x to z
// that rides in a failed commit leaves pp with x in the overlay, after an
// apply and after a reopen; a later move that commits gives it to z in all
// three.
func TestFailedAliasMoveKeepsOwner(t *testing.T) {
	ctx := t.Context()
	opts := Options{NoSync: true, PruneInterval: -1, manualIndexes: true}
	s, _ := openTest(t, opts)
	for _, id := range []string{"x", "z"} {
		_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "POS1", ServiceID: id}, Transition{State: "s", Alias: map[string]string{"x": "pp"}[id]})
		require.NoError(t, err)
	}
	owner := func(want, when string) {
		t.Helper()
		got, ok, err := s.TxnByAlias(ctx, "pp")
		require.NoError(t, err)
		require.True(t, ok, when)
		require.Equal(t, want, got.ID, when)
	}
	require.NoError(t, s.AppendTxnDeferred("z", Transition{State: "qr", Alias: "pp"}))
	require.Error(t, s.do(ctx, func(*wtx) error { return rollback{errors.New("boom")} }))
	owner("x", "overlay after the failed move")
	require.NoError(t, s.applyIndexesNow(ctx))
	owner("x", "applied after the failed move")
	s = reopen(t, s, opts)
	owner("x", "reopened after the failed move")
	require.NoError(t, s.AppendTxn(ctx, "z", Transition{State: "qr2", Alias: "pp"}))
	owner("z", "overlay after the move")
	s = reopen(t, s, opts)
	owner("z", "reopened after the move")
}

// TestAliasMovesFromAnUnreadableOwner: pp's pending owner a has both its
// pending entry and its header damaged. Giving pp to b took pp out of a's
// entry, which could not be rebuilt: the step failed, and so did every
// later step given pp (review). The alias moves; the apply drops a's entry.
func TestAliasMovesFromAnUnreadableOwner(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{NoSync: true, PruneInterval: -1, manualIndexes: true})
	for _, id := range []string{"a", "b"} {
		_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "POS1", ServiceID: id}, Transition{State: "s"})
		require.NoError(t, err)
	}
	require.NoError(t, s.AppendTxn(ctx, "a", Transition{State: "created", Alias: "pp"}))
	damagePendingEntry(t, s, "a")
	require.NoError(t, s.do(ctx, func(w *wtx) error {
		return w.tx.Bucket(bucketTxn).Put([]byte("a"), []byte{9, 9, 9}) // an unreadable header
	}))
	require.NoError(t, s.AppendTxn(ctx, "b", Transition{State: "created", Alias: "pp"}))
	requireAliasOwner(t, s, "pp", "b")
	require.NoError(t, s.applyIndexesNow(ctx))
	requireAliasOwner(t, s, "pp", "b")
}
