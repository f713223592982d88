package store

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// TestRecoverDoesNotRegiveAPrunedOwnersAlias: alias pp was given to
// w, then to x (last given: x). x is pruned: its journal.alias entry goes
// with it and TxnByAlias(pp) finds nothing. Recover of that intact file
// must not hand pp back to w, which gave it away.
func TestRecoverDoesNotRegiveAPrunedOwnersAlias(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "termagent.db")
	opts := Options{NoSync: true, PruneInterval: -1, JournalRetention: 24 * time.Hour}
	s, err := Open(ctx, path, opts)
	require.NoError(t, err)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	_, err = s.StartTxn(ctx, TxnRef{ID: "x", SaleID: "POS1", ServiceID: "1"}, Transition{At: t0, State: "s"})
	require.NoError(t, err)
	_, err = s.StartTxn(ctx, TxnRef{ID: "w", SaleID: "POS1", ServiceID: "2"}, Transition{At: t0.Add(2 * time.Hour), State: "s", Alias: "pp"})
	require.NoError(t, err)
	require.NoError(t, s.AppendTxn(ctx, "w", Transition{At: t0.Add(2 * time.Hour), State: "done", Final: true}))
	// pp moves to x (a transition stamped before w started).
	require.NoError(t, s.AppendTxn(ctx, "x", Transition{At: t0.Add(time.Hour), State: "done", Final: true, Alias: "pp"}))
	got, ok, err := s.TxnByAlias(ctx, "pp")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "x", got.ID)
	n, err := s.PruneJournal(ctx, t0.Add(24*time.Hour+90*time.Minute))
	require.NoError(t, err)
	require.Equal(t, 1, n, "x pruned, w kept")
	_, ok, err = s.TxnByAlias(ctx, "pp")
	require.NoError(t, err)
	require.False(t, ok, "pp's owner is gone")
	require.NoError(t, s.Close())

	s2, _ := recoverAndReopen(t, path, opts)
	got, ok, err = s2.TxnByAlias(ctx, "pp")
	require.NoError(t, err)
	require.False(t, ok, "Recover gave pp (x's PPaaS id) to %q", got.ID)
}

// TestRecoverLeavesAnAliasWithTwoHoldersUnindexed: pp given to w, then to
// the older x (last given: x, still journaled). journal.alias is lost
// (bucket gone, as a lost branch page would leave it). Both list pp beside
// their headers and when each got it is not recorded: giving it to the
// newest started (w, the rule before) would book x's after-sale events
// against w. It stays unindexed and the report says so.
func TestRecoverLeavesAnAliasWithTwoHoldersUnindexed(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "termagent.db")
	opts := Options{NoSync: true, PruneInterval: -1}
	s, err := Open(ctx, path, opts)
	require.NoError(t, err)
	_, err = s.StartTxn(ctx, TxnRef{ID: "x", SaleID: "POS1", ServiceID: "1"}, Transition{State: "s"})
	require.NoError(t, err)
	_, err = s.StartTxn(ctx, TxnRef{ID: "w", SaleID: "POS1", ServiceID: "2"}, Transition{State: "s", Alias: "pp"})
	require.NoError(t, err)
	require.NoError(t, s.AppendTxn(ctx, "x", Transition{State: "paid", Alias: "pp"}))
	require.NoError(t, s.applyIndexesNow(ctx))
	require.NoError(t, s.Close())
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketAlias) }))
	require.NoError(t, db.Close())

	s2, rep := recoverAndReopen(t, path, opts)
	require.Contains(t, strings.Join(rep.Errors, "\n"), "1 aliases listed by more than one transaction left unindexed")
	got, ok, err := s2.TxnByAlias(ctx, "pp")
	require.NoError(t, err)
	require.False(t, ok, "pp (x's PPaaS id) given to %q", got.ID)
}
