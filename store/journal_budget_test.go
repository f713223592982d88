package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

func adviceTxnID(payload []byte) string {
	var a struct{ ID string }
	_ = json.Unmarshal(payload, &a)
	return a.ID
}

// The journal stays within JournalMaxBytes however many requests arrive; the
// oldest finished transactions go, never an unfinished one nor one an advice
// names, and a ServiceID stays reserved after its transaction was evicted.
func TestJournalBudgetEvictsOldestFinished(t *testing.T) {
	const max = 1 << 20 // the smallest journal_max_bytes the agent takes
	clk := newFakeClock()
	s, path := openTest(t, Options{NoSync: true, Now: clk.Now, JournalMaxBytes: max, AdviceTxnID: adviceTxnID})
	ctx := context.Background()
	data := json.RawMessage(`"` + string(bytes.Repeat([]byte("r"), 1024)) + `"`)
	for i := range 3000 {
		id := fmt.Sprintf("t%04d", i)
		_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "POS1", ServiceID: fmt.Sprint(i)}, Transition{State: "started", Data: data})
		require.NoError(t, err)
		switch {
		case i < 3: // unfinished: kept whatever happens
		case i == 3: // finished, but an advice names it
			require.NoError(t, s.AppendTxn(ctx, id, Transition{State: "done", Final: true}))
			_, err := s.Append(ctx, Event{Kind: KindAdvice, Payload: []byte(`{"id":"t0003"}`)})
			require.NoError(t, err)
		default:
			require.NoError(t, s.AppendTxn(ctx, id, Transition{State: "done", Final: true, Data: data}))
		}
		clk.Advance(time.Hour)
	}
	_, err := s.EnforceJournalBudget(ctx)
	require.NoError(t, err)
	st := s.JournalStats()
	require.LessOrEqual(t, st.Bytes, int64(max))
	require.Positive(t, st.Evicted)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.LessOrEqual(t, fi.Size(), int64(2*max), "the budget counts whole pages, so it bounds the file (bbolt grows it in power-of-two steps)")

	// Kept: unfinished, named by an advice, or finished within the ServiceID
	// window (a POS that lost the answer may still ask about it).
	for _, id := range []string{"t0000", "t0001", "t0002", "t0003", "t2953", "t2999"} {
		_, err := s.Txn(ctx, id)
		require.NoError(t, err, id)
	}
	_, err = s.Txn(ctx, "t0004")
	require.ErrorIs(t, err, ErrNotFound, "the oldest finished transaction is evicted")
	_, ok, err := s.TxnByServiceID(ctx, "POS1", "4")
	require.NoError(t, err)
	require.False(t, ok)
	_, err = s.StartTxn(ctx, TxnRef{ID: "again", SaleID: "POS1", ServiceID: "4"}, Transition{State: "started"})
	require.NoError(t, err, "evicted only after its ServiceID window, so the ServiceID is free again")
	last, ok, err := s.LastTxnForSale(ctx, "POS1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "again", last.ID, "the SaleID index follows the newest transaction")
}

// Without AdviceTxnID the store cannot tell which transaction an advice is
// about: nothing is evicted while one is queued.
func TestJournalBudgetWithoutAdviceMapping(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true, JournalMaxBytes: 32 << 10, PruneInterval: -1})
	ctx := context.Background()
	_, err := s.Append(ctx, Event{Kind: KindAdvice, Payload: []byte(`{}`)})
	require.NoError(t, err)
	for i := range 200 {
		id := fmt.Sprint(i)
		_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "P", ServiceID: id}, Transition{State: "s", Final: true, Data: json.RawMessage(`"` + string(bytes.Repeat([]byte("x"), 512)) + `"`)})
		require.NoError(t, err)
	}
	n, err := s.EnforceJournalBudget(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
	_, err = s.Txn(ctx, "0")
	require.NoError(t, err)
}

func TestLastTxnForSaleIndex(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	ctx := context.Background()
	for i, sale := range []string{"POS1", "POS10", "POS1", "POS", "POS10", "P"} {
		_, err := s.StartTxn(ctx, TxnRef{ID: fmt.Sprintf("t%d", i), SaleID: sale, ServiceID: fmt.Sprint(i)}, Transition{State: "s", Final: true})
		require.NoError(t, err)
	}
	check := func(s *Store) {
		for sale, want := range map[string]string{"POS1": "t2", "POS10": "t4", "POS": "t3", "P": "t5", "POS2": "", "": ""} {
			got, ok, err := s.LastTxnForSale(ctx, sale)
			require.NoError(t, err)
			require.Equal(t, want != "", ok, sale)
			require.Equal(t, want, got.ID, sale)
		}
	}
	check(s)
	// A file written before the index existed gets it at Open; so does one
	// an older agent wrote to since, with its journal.sale and this index
	// stale (it did not maintain it): the index is rebuilt, journal.sale
	// dropped, so that the older agent rebuilds its own if it opens the
	// file again.
	require.NoError(t, s.Close())
	for _, older := range []func(tx *bolt.Tx) error{
		func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketSaleLast) },
		func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketSaleLast).Put(saleLastKey("POS1"), saleLastValue(1, []byte("t0"))); err != nil {
				return err
			}
			_, err := tx.CreateBucket(bucketSale)
			return err
		},
	} {
		db, err := bolt.Open(s.Path(), 0o600, nil)
		require.NoError(t, err)
		require.NoError(t, db.Update(older))
		require.NoError(t, db.Close())
		s2, err := Open(ctx, s.Path(), Options{NoSync: true})
		require.NoError(t, err)
		check(s2)
		require.NoError(t, s2.view(func(tx *bolt.Tx) error {
			require.Nil(t, tx.Bucket(bucketSale))
			return nil
		}))
		require.NoError(t, s2.Close())
	}
	s2, err := Open(ctx, s.Path(), Options{NoSync: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s2.Close() })
	// Pruning removes index entries with their transactions.
	n, err := s2.PruneJournal(ctx, newFakeClock().Now().AddDate(1, 0, 0))
	require.NoError(t, err)
	require.Equal(t, 6, n)
	require.NoError(t, s2.view(func(tx *bolt.Tx) error {
		require.Zero(t, tx.Bucket(bucketSaleLast).Stats().KeyN)
		return nil
	}))
}

// When the newest transaction of a SaleID is pruned and an older one of it
// stays (unfinished), the index names the older one; when none is left, the
// SaleID has no last transaction. Other SaleIDs keep theirs.
func TestLastTxnForSaleAfterItsNewestIsPruned(t *testing.T) {
	clk := newFakeClock()
	s, _ := openTest(t, Options{NoSync: true, Now: clk.Now, PruneInterval: -1})
	ctx := context.Background()
	start := func(id, sale string, final bool) {
		_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: sale, ServiceID: id}, Transition{State: "s", Final: final})
		require.NoError(t, err)
	}
	start("a-open", "A", false) // kept by prune: unfinished
	start("b-1", "B", true)
	start("a-done", "A", true)
	start("c-1", "C", true)
	clk.Advance(40 * 24 * time.Hour)
	start("b-2", "B", true) // young: kept
	last := func(sale string) string {
		tx, ok, err := s.LastTxnForSale(ctx, sale)
		require.NoError(t, err)
		if !ok {
			return ""
		}
		return tx.ID
	}
	require.Equal(t, "a-done", last("A"))
	n, err := s.PruneJournal(ctx, clk.Now())
	require.NoError(t, err)
	require.Equal(t, 3, n) // b-1, a-done, c-1
	require.Equal(t, "a-open", last("A"))
	require.Equal(t, "b-2", last("B"))
	require.Equal(t, "", last("C"))
}

// Evicting a compact transaction (refused before anything ran) releases its
// ServiceID too, so the reservations of a flood of refusals cannot outgrow
// the budget; others keep theirs.
func TestJournalBudgetReleasesCompactServiceIDs(t *testing.T) {
	clk := newFakeClock()
	s, _ := openTest(t, Options{NoSync: true, Now: clk.Now, JournalMaxBytes: 256 << 10, PruneInterval: -1})
	ctx := context.Background()
	data := json.RawMessage(`"` + string(bytes.Repeat([]byte("d"), 300)) + `"`)
	for i := range 2000 {
		id := fmt.Sprint(i)
		_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "P", ServiceID: id, Compact: i%2 == 1}, Transition{State: "done", Final: true, Data: data})
		require.NoError(t, err)
		clk.Advance(time.Hour)
	}
	st := s.JournalStats()
	require.Positive(t, st.Evicted)
	// Writes are counted by estimate and measured near the budget, so the
	// journal may pass it by a little between two measurements.
	require.LessOrEqual(t, st.Bytes, int64(256<<10)*11/10)
	_, err := s.StartTxn(ctx, TxnRef{ID: "a", SaleID: "P", ServiceID: "1998"}, Transition{State: "s"})
	require.ErrorIs(t, err, ErrDuplicateServiceID, "a payment within its ServiceID window is kept, and its ServiceID reserved")
	_, err = s.StartTxn(ctx, TxnRef{ID: "b", SaleID: "P", ServiceID: "1"}, Transition{State: "s"})
	require.NoError(t, err, "an evicted refusal's ServiceID is released")
}

// A flood of compact refusals, with the budget kept only by the writes
// themselves (no explicit enforcement): the file stays within twice the
// budget, evictions included (each copies the pages it changes).
func TestJournalBudgetBoundsTheFileUnderAFlood(t *testing.T) {
	const max = 1 << 20
	clk := newFakeClock()
	s, path := openTest(t, Options{NoSync: true, Now: clk.Now, JournalMaxBytes: max, PruneInterval: -1})
	ctx := context.Background()
	data := json.RawMessage(`"` + string(bytes.Repeat([]byte("r"), 400)) + `"`)
	for i := range 6000 {
		id := fmt.Sprintf("r%05d", i)
		_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: fmt.Sprintf("POS%d", i%2), ServiceID: fmt.Sprint(i), Compact: true}, Transition{State: "refused", Final: true, Data: data})
		require.NoError(t, err)
		clk.Advance(time.Second)
	}
	require.Positive(t, s.JournalStats().Evicted)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.LessOrEqual(t, fi.Size(), int64(2*max))
}

// The journal's periodic measure (every 256 starts, or near the budget) runs
// on the budget goroutine: a payment's start never waits for it while the
// journal is under its budget.
func TestJournalMeasuredOffThePaymentsPath(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true, JournalMaxBytes: 64 << 20, PruneInterval: -1})
	ctx := context.Background()
	s.jbudget.mu.Lock() // a measure is running (or stuck)
	started := make(chan error, 1)
	go func() {
		for i := range 300 {
			if _, err := s.StartTxn(ctx, TxnRef{ID: fmt.Sprintf("t%03d", i), SaleID: "POS1", ServiceID: fmt.Sprint(i)}, Transition{State: "started"}); err != nil {
				started <- err
				return
			}
		}
		started <- nil
	}()
	select {
	case err := <-started:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		s.jbudget.mu.Unlock()
		t.Fatal("a start waited for the journal's measure")
	}
	require.Zero(t, s.jbudget.runs.Load())
	s.jbudget.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for s.jbudget.runs.Load() == 0 {
		require.True(t, time.Now().Before(deadline), "the 256th start did not ask for a measure")
		time.Sleep(time.Millisecond)
	}
	require.Positive(t, s.JournalStats().Bytes)
}

// fillFinished journals n finished transactions of about 2 KiB each and
// moves the clock past their ServiceID window, so that every one may go.
func fillFinished(t *testing.T, s *Store, clk *fakeClock, n int) {
	t.Helper()
	ctx := context.Background()
	data := json.RawMessage(`"` + string(bytes.Repeat([]byte("r"), 1024)) + `"`)
	for i := range n {
		id := fmt.Sprintf("t%04d", i)
		_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "POS1", ServiceID: fmt.Sprint(i)}, Transition{State: "started", Data: data})
		require.NoError(t, err)
		require.NoError(t, s.AppendTxn(ctx, id, Transition{State: "done", Final: true, Data: data}))
		clk.Advance(time.Hour)
	}
	clk.Advance(30 * 24 * time.Hour)
}

// A journal over its budget at Open (the budget lowered, an older file) is
// evicted by the budget goroutine, not on the first payment's path.
func TestJournalOverBudgetAtOpenEvictedInTheBackground(t *testing.T) {
	clk := newFakeClock()
	opts := Options{NoSync: true, Now: clk.Now, JournalMaxBytes: 64 << 20, PruneInterval: -1}
	s, _ := openTest(t, opts)
	fillFinished(t, s, clk, 3000)
	opts.JournalMaxBytes = 1 << 20
	s = reopen(t, s, opts)
	deadline := time.Now().Add(30 * time.Second)
	for s.JournalStats().Evicted == 0 {
		require.True(t, time.Now().Before(deadline), "nothing evicted without a payment")
		time.Sleep(time.Millisecond)
	}
}

// An eviction stops between chunks once its context ends: Close does not
// wait out the eviction of a whole journal.
func TestJournalEvictionStopsWhenCancelled(t *testing.T) {
	clk := newFakeClock()
	s, _ := openTest(t, Options{NoSync: true, Now: clk.Now, JournalMaxBytes: 64 << 20, PruneInterval: -1})
	fillFinished(t, s, clk, 3000)
	// budgetLoop's settle tick measures the fill and reads the budget: let
	// it measure everything, then change the budget with nothing left for
	// it to measure (no start follows: nothing kicks it again). Changing it
	// while a tick ran was a data race.
	settled(t, s)
	s.opts.JournalMaxBytes = 1 << 20
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n, err := s.EnforceJournalBudget(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.Zero(t, n)
	require.Zero(t, s.JournalStats().Evicted)
}

// Between the measures journalGrew asks for (every 256 starts, or near the
// budget) the journal's size is an estimate. Once writes settle, the
// journal is measured again if anything was written since, so a burst that
// ends short of the next measure leaves neither the figure nor the file as
// the burst left them; an idle journal is not measured again.
func TestJournalMeasuredOnceWritesSettle(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true, JournalMaxBytes: 64 << 20, PruneInterval: -1})
	ctx := context.Background()
	start := func(i int) {
		_, err := s.StartTxn(ctx, TxnRef{ID: fmt.Sprintf("t%04d", i), SaleID: "POS1", ServiceID: fmt.Sprint(i)}, Transition{State: "started", Data: json.RawMessage(`"` + strings.Repeat("r", 512) + `"`)})
		require.NoError(t, err)
	}
	for i := range 256 { // the 256th asks for a measure
		start(i)
	}
	require.Eventually(t, func() bool { return s.jbudget.runs.Load() >= 1 }, 10*time.Second, time.Millisecond)
	runs := s.jbudget.runs.Load()
	for i := 256; i < 300; i++ { // short of the next measure
		start(i)
	}
	require.Eventually(t, func() bool { return s.jbudget.runs.Load() > runs }, 10*time.Second, 5*time.Millisecond,
		"the writes after the last measure are measured once they settle")
	var pages int64
	require.NoError(t, s.view(func(tx *bolt.Tx) error { pages, _ = measureJournal(tx); return nil }))
	require.Equal(t, pages, s.JournalStats().Bytes, "the figure is the measure, not the estimate")
	runs = s.jbudget.runs.Load()
	require.Never(t, func() bool { return s.jbudget.runs.Load() > runs }, 2*budgetSettle+500*time.Millisecond, 50*time.Millisecond,
		"an idle journal is not measured again")
	for i := 300; i < 310; i++ { // a short burst after an idle while
		start(i)
	}
	require.Eventually(t, func() bool { return s.jbudget.runs.Load() > runs }, 10*time.Second, 5*time.Millisecond,
		"a burst after an idle while is measured too")
	require.NoError(t, s.view(func(tx *bolt.Tx) error { pages, _ = measureJournal(tx); return nil }))
	require.Equal(t, pages, s.JournalStats().Bytes)
}

// settled kicks s's budgetLoop to measure every commit so far and waits
// until it has and has stayed quiet for a settle period: the loop reads
// nothing of the store's options until the next commit.
func settled(t *testing.T, s *Store) {
	t.Helper()
	before := s.jbudget.runs.Load()
	select {
	case s.jbudget.kick <- struct{}{}:
	default: // a kick is pending already
	}
	require.Eventually(t, func() bool { return s.jbudget.runs.Load() > before }, 10*time.Second, time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for last := s.jbudget.runs.Load(); ; {
		time.Sleep(budgetSettle + 200*time.Millisecond)
		now := s.jbudget.runs.Load()
		if now == last {
			return
		}
		require.True(t, time.Now().Before(deadline), "the budget loop never settled")
		last = now
	}
}
