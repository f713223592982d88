package store

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/termagent/termagent/internal/syncbuf"
)

// crashReopen is kill -9 or power loss, then Open: the file as the last
// commit left it (what Close applies is thrown away), reopened.
func crashReopen(t testing.TB, s *Store, opts Options) *Store {
	t.Helper()
	path := s.Path()
	crashed, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, os.WriteFile(path, crashed, 0o600))
	s2, err := Open(t.Context(), path, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s2.Close() })
	return s2
}

// damagePendingEntry overwrites id's pending index entry with one that does
// not decode (a flipped version byte).
func damagePendingEntry(t *testing.T, s *Store, id string) {
	t.Helper()
	require.NoError(t, s.do(t.Context(), func(w *wtx) error {
		return w.tx.Bucket(bucketUnindexed).Put([]byte(id), []byte{9, 3, 0})
	}))
}

// TestPendingAliasOwnerSurvivesCrash: an alias given to a pending
// transaction, then to an older pending one, belongs to the older (the last
// given) live, after Close and after a crash: Open must not apply the
// aliases in start order.
func TestPendingAliasOwnerSurvivesCrash(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(map[bool]string{false: "close", true: "crash"}[crash], func(t *testing.T) {
			ctx := t.Context()
			opts := Options{NoSync: true, PruneInterval: -1, manualIndexes: true}
			s, _ := openTest(t, opts)
			_, err := s.StartTxn(ctx, TxnRef{ID: "older", SaleID: "POS1", ServiceID: "1"}, Transition{State: "s"})
			require.NoError(t, err)
			_, err = s.StartTxn(ctx, TxnRef{ID: "newer", SaleID: "POS1", ServiceID: "2"}, Transition{State: "s", Alias: "pp"})
			require.NoError(t, err)
			require.NoError(t, s.AppendTxn(ctx, "older", Transition{State: "qr", Alias: "pp"}))
			got, _, err := s.TxnByAlias(ctx, "pp")
			require.NoError(t, err)
			require.Equal(t, "older", got.ID, "live: the last given owns it")
			if crash {
				s = crashReopen(t, s, opts)
			} else {
				s = reopen(t, s, opts)
			}
			got, _, err = s.TxnByAlias(ctx, "pp")
			require.NoError(t, err)
			require.Equal(t, "older", got.ID, "after reopen")
		})
	}
}

// TestPendingAliasesDoNotRepeat: an alias passed back and forth between
// two pending transactions is named by one pending entry at a time, so
// neither entry grows with the number of passes.
func TestPendingAliasesDoNotRepeat(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{NoSync: true, PruneInterval: -1, manualIndexes: true})
	for _, id := range []string{"t1", "t2"} {
		_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "POS1", ServiceID: id}, Transition{State: "s"})
		require.NoError(t, err)
	}
	bytes0 := s.pendBytes.Load()
	for i := range 100 {
		require.NoError(t, s.AppendTxn(ctx, []string{"t1", "t2"}[i%2], Transition{State: "qr", Alias: "pp-shared"}))
	}
	entries := map[string]pendingEntry{}
	require.NoError(t, s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUnindexed).ForEach(func(k, v []byte) error {
			e, err := decodePending(v)
			entries[string(k)] = e
			return err
		})
	}))
	require.Empty(t, entries["t1"].aliases, "given away to t2 since")
	require.Equal(t, []string{"pp-shared"}, entries["t2"].aliases)
	require.LessOrEqual(t, s.pendBytes.Load(), bytes0+int64(len("pp-shared"))+1)
	got, _, err := s.TxnByAlias(ctx, "pp-shared")
	require.NoError(t, err)
	require.Equal(t, "t2", got.ID)
}

// TestDamagedPendingEntryKeepsReservation: a pending entry that does not
// decode, of a transaction whose header does, is rebuilt from the header
// when applied: the ServiceID stays reserved (a POS retry is refused), the
// transaction stays in journal.order, and the damage is logged.
func TestDamagedPendingEntryKeepsReservation(t *testing.T) {
	ctx := t.Context()
	var logs syncbuf.Buffer
	s, _ := openTest(t, Options{NoSync: true, PruneInterval: -1, manualIndexes: true,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	_, err := s.StartTxn(ctx, TxnRef{ID: "paid", SaleID: "POS1", ServiceID: "42"}, Transition{State: "s", Alias: "pp-paid"})
	require.NoError(t, err)
	damagePendingEntry(t, s, "paid")
	require.NoError(t, s.applyIndexesNow(ctx))
	require.Contains(t, logs.String(), "txn=paid")

	var inOrder bool
	require.NoError(t, s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOrder).ForEach(func(_, v []byte) error {
			inOrder = inOrder || string(v) == "paid"
			return nil
		})
	}))
	require.True(t, inOrder, "the transaction stays in journal.order")
	_, err = s.StartTxn(ctx, TxnRef{ID: "retry", SaleID: "POS1", ServiceID: "42"}, Transition{State: "s"})
	require.ErrorIs(t, err, ErrDuplicateServiceID, "the POS retry is refused")
	got, ok, err := s.TxnByAlias(ctx, "pp-paid")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "paid", got.ID)
	last, _, err := s.LastTxn(ctx)
	require.NoError(t, err)
	require.Equal(t, "paid", last.ID)
}

// TestDamagedPendingEntryRebuiltLeavesOthersAliases: a rebuilt entry
// writes an alias only where no other transaction holds it: the alias was
// given to another transaction since, and stays with it.
func TestDamagedPendingEntryRebuiltLeavesOthersAliases(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{NoSync: true, PruneInterval: -1, manualIndexes: true})
	_, err := s.StartTxn(ctx, TxnRef{ID: "first", SaleID: "POS1", ServiceID: "1"}, Transition{State: "s", Alias: "pp"})
	require.NoError(t, err)
	_, err = s.StartTxn(ctx, TxnRef{ID: "second", SaleID: "POS1", ServiceID: "2"}, Transition{State: "s", Alias: "pp"})
	require.NoError(t, err)
	damagePendingEntry(t, s, "first") // its alias entry beside the header stays
	require.NoError(t, s.applyIndexesNow(ctx))
	got, _, err := s.TxnByAlias(ctx, "pp")
	require.NoError(t, err)
	require.Equal(t, "second", got.ID)
}

// TestDamagedPendingEntryAppendIsAllOrNothing: with a damaged pending
// entry, a step that notes index work rebuilds it and commits whole: never
// a final header with the transaction still listed unfinished.
func TestDamagedPendingEntryAppendIsAllOrNothing(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{NoSync: true, PruneInterval: -1, manualIndexes: true})
	_, err := s.StartTxn(ctx, TxnRef{ID: "paid", SaleID: "POS1", ServiceID: "42"}, Transition{State: "s"})
	require.NoError(t, err)
	damagePendingEntry(t, s, "paid")
	require.NoError(t, s.AppendTxn(ctx, "paid", Transition{State: "approved", Final: true, Alias: "pp-paid"}))
	got, err := s.Txn(ctx, "paid")
	require.NoError(t, err)
	require.True(t, got.Final)
	unf, err := s.UnfinishedTxns(ctx)
	require.NoError(t, err)
	require.Empty(t, unf)
	_, err = s.StartTxn(ctx, TxnRef{ID: "retry", SaleID: "POS1", ServiceID: "42"}, Transition{State: "s"})
	require.ErrorIs(t, err, ErrDuplicateServiceID)
	require.NoError(t, s.applyIndexesNow(ctx))
	a, ok, err := s.TxnByAlias(ctx, "pp-paid")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "paid", a.ID)
	_, err = s.StartTxn(ctx, TxnRef{ID: "retry2", SaleID: "POS1", ServiceID: "42"}, Transition{State: "s"})
	require.ErrorIs(t, err, ErrDuplicateServiceID, "applied: still reserved")
}

// TestLastTxnWhileEvicting: LastTxn reads the overlay, then its snapshot;
// a transaction evicted between the two must not make it fail.
func TestLastTxnWhileEvicting(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{NoSync: true, PruneInterval: -1, manualIndexes: true})
	_, err := s.StartTxn(ctx, TxnRef{ID: "keep", SaleID: "POS"}, Transition{State: "s"}) // unfinished: never evicted
	require.NoError(t, err)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var fails atomic.Int64
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, _, err := s.LastTxn(ctx); err != nil && fails.Add(1) == 1 {
				t.Log(err)
			}
		}
	})
	for i := range 2000 { // compact refusals: evictable at once
		_, err := s.StartTxn(ctx, TxnRef{ID: fmt.Sprint("c", i), SaleID: "POS", ServiceID: fmt.Sprint(i), Compact: true}, Transition{State: "refused", Final: true})
		require.NoError(t, err)
		_, _, err = s.evictChunk(ctx, nil, 1<<30)
		require.NoError(t, err)
	}
	close(stop)
	wg.Wait()
	require.Zero(t, fails.Load(), "LastTxn failed while transactions were evicted")
}

// TestRecoverKeepsAppliedAlias: Recover rebuilds journal.alias from the
// alias entries beside the salvaged headers, and keeps the order counter
// past every salvaged header's order.
func TestRecoverKeepsAppliedAlias(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "termagent.db")
	opts := Options{NoSync: true, PruneInterval: -1, manualIndexes: true}
	s, err := Open(ctx, path, opts)
	require.NoError(t, err)
	for i, id := range []string{"a", "b", "c"} {
		_, err = s.StartTxn(ctx, TxnRef{ID: id, SaleID: "POS1", ServiceID: id}, Transition{State: "s", Alias: fmt.Sprint("pp-", i%2)})
		require.NoError(t, err)
	}
	require.NoError(t, s.applyIndexesNow(ctx))
	require.NoError(t, s.Close())
	s2, _ := recoverAndReopen(t, path, opts)
	for alias, id := range map[string]string{"pp-0": "c", "pp-1": "b"} {
		got, ok, err := s2.TxnByAlias(ctx, alias)
		require.NoError(t, err)
		require.True(t, ok, "alias %s survives Recover", alias)
		require.Equal(t, id, got.ID, "alias %s", alias)
	}
	_, err = s2.StartTxn(ctx, TxnRef{ID: "d", SaleID: "POS1"}, Transition{State: "s"})
	require.NoError(t, err)
	last, _, err := s2.LastTxn(ctx)
	require.NoError(t, err)
	require.Equal(t, "d", last.ID, "the order counter is past every salvaged header's")
}

// TestPendingServiceIDNeverAcceptedTwice: concurrent starts of a few
// SaleID+ServiceID keys while the writer applies every millisecond, with
// extra applies, prunes and failing commits mixed in: each key is accepted
// once (its reservation outlives the test).
func TestPendingServiceIDNeverAcceptedTwice(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{NoSync: true, PruneInterval: -1, indexDelay: time.Millisecond})
	errBoom := errors.New("boom")
	var mu sync.Mutex
	accepted := map[string]string{}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 300 {
				key := fmt.Sprint(i % 40)
				id := fmt.Sprintf("g%d-%d", g, i)
				_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "POS", ServiceID: key}, Transition{State: "s", Alias: "a" + key})
				switch {
				case err == nil:
					mu.Lock()
					if prev, dup := accepted[key]; dup {
						t.Errorf("key %s accepted twice: %s and %s", key, prev, id)
					}
					accepted[key] = id
					mu.Unlock()
				case !errors.Is(err, ErrDuplicateServiceID) && !errors.Is(err, errBoom):
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		for range 300 {
			_ = s.applyIndexesNow(ctx)
			_ = s.do(ctx, func(*wtx) error { return rollback{errBoom} })
			if _, err := s.PruneJournal(ctx, time.Now()); err != nil && !errors.Is(err, errBoom) {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	require.Len(t, accepted, 40)
}

// failIndexApply makes every later apply of the pending indexes fail: it
// removes journal.order, which applying writes to.
func failIndexApply(t *testing.T, s *Store) {
	t.Helper()
	require.NoError(t, s.do(t.Context(), func(w *wtx) error { return w.tx.DeleteBucket(bucketOrder) }))
}

// TestFailedIndexCommitIsLoggedAsSuch: a failed index commit is logged as
// the journal indexes left pending, not as a caller's deferred write, and
// Close reports the final apply it could not make (Open applies again).
func TestFailedIndexCommitIsLoggedAsSuch(t *testing.T) {
	ctx := t.Context()
	var logs syncbuf.Buffer
	s, _ := openTest(t, Options{NoSync: true, PruneInterval: -1, manualIndexes: true,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	_, err := s.StartTxn(ctx, TxnRef{ID: "paid", SaleID: "POS1", ServiceID: "42"}, Transition{State: "s"})
	require.NoError(t, err)
	failIndexApply(t, s)
	s.wmu.Lock()
	err = s.commitIndexes()
	s.wmu.Unlock()
	require.Error(t, err)
	require.NotContains(t, logs.String(), "deferred store write failed")
	require.Contains(t, logs.String(), "pending journal indexes not applied")
	require.NoError(t, s.Close())
	require.Contains(t, logs.String(), "close store: pending journal indexes left for Open")
}

// TestPendingIndexBytesBounded: one transaction given alias after alias is
// one pending entry, growing; its bytes bound the pending set too, so a
// commit applies it once they reach indexMaxPendingBytes.
func TestPendingIndexBytesBounded(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{NoSync: true, PruneInterval: -1, manualIndexes: true})
	_, err := s.StartTxn(ctx, TxnRef{ID: "t1", SaleID: "POS1", ServiceID: "1"}, Transition{State: "s"})
	require.NoError(t, err)
	alias := func(i int) string { return fmt.Sprintf("%0200d", i) }
	n := 2 * indexMaxPendingBytes / 200
	for i := range n {
		require.NoError(t, s.AppendTxn(ctx, "t1", Transition{State: "qr", Alias: alias(i)}))
		require.Less(t, s.pendBytes.Load(), int64(indexMaxPendingBytes+256), "step %d", i)
	}
	for _, i := range []int{0, n / 2, n - 1} {
		got, ok, err := s.TxnByAlias(ctx, alias(i))
		require.NoError(t, err)
		require.True(t, ok, "alias %d", i)
		require.Equal(t, "t1", got.ID)
	}
}

// requireAliasOwner checks that TxnByAlias(alias) finds transaction want.
func requireAliasOwner(t *testing.T, s *Store, alias, want string) {
	t.Helper()
	got, ok, err := s.TxnByAlias(t.Context(), alias)
	require.NoError(t, err)
	require.True(t, ok, "alias %s has no owner", alias)
	require.Equal(t, want, got.ID, "owner of alias %s", alias)
}

// recoverAndReopen runs Recover on the file at path (its store closed) and
// opens the result with opts, closed when the test ends.
func recoverAndReopen(t *testing.T, path string, opts Options) (*Store, RecoverReport) {
	t.Helper()
	rep, err := Recover(path)
	require.NoError(t, err)
	s, err := Open(t.Context(), path, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, rep
}
