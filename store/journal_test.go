package store

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

func TestJournalLifecycle(t *testing.T) {
	ctx := t.Context()
	clk := newFakeClock()
	opts := Options{Now: clk.Now}
	s, _ := openTest(t, opts)

	ref := TxnRef{ID: "tx-1", SaleID: "POS-A", ServiceID: "42"}
	_, err := s.StartTxn(ctx, ref, Transition{State: "received", Data: json.RawMessage(`{"amount":1250}`)})
	require.NoError(t, err)
	clk.Advance(time.Second)
	require.NoError(t, s.AppendTxn(ctx, "tx-1", Transition{State: "qr-shown"}))

	unf, err := s.UnfinishedTxns(ctx)
	require.NoError(t, err)
	require.Len(t, unf, 1)
	require.Equal(t, "tx-1", unf[0].ID)

	// kill -9 equivalent for the journal: a reopen must give the same answers.
	s = reopen(t, s, opts)
	clk.Advance(time.Second)
	require.NoError(t, s.AppendTxn(ctx, "tx-1", Transition{State: "approved", Final: true, Data: json.RawMessage(`{"result":"Success"}`)}))
	require.NoError(t, s.AppendTxn(ctx, "tx-1", Transition{State: "receipt-queued"}))

	got, err := s.Txn(ctx, "tx-1")
	require.NoError(t, err)
	require.Equal(t, ref, got.TxnRef)
	require.True(t, got.Final, "final sticks after later transitions")
	require.Equal(t, "receipt-queued", got.State)
	require.Len(t, got.Transitions, 4)
	require.Equal(t, []string{"received", "qr-shown", "approved", "receipt-queued"},
		[]string{got.Transitions[0].State, got.Transitions[1].State, got.Transitions[2].State, got.Transitions[3].State})
	require.JSONEq(t, `{"amount":1250}`, string(got.Transitions[0].Data))
	require.Equal(t, clk.Now(), got.Updated)

	unf, err = s.UnfinishedTxns(ctx)
	require.NoError(t, err)
	require.Empty(t, unf)

	byID, ok, err := s.TxnByServiceID(ctx, "POS-A", "42")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "tx-1", byID.ID)
	_, ok, err = s.TxnByServiceID(ctx, "POS-A", "43")
	require.NoError(t, err)
	require.False(t, ok)

	_, err = s.Txn(ctx, "nope")
	require.ErrorIs(t, err, ErrNotFound)
	require.ErrorIs(t, s.AppendTxn(ctx, "nope", Transition{State: "x"}), ErrNotFound)
}

func TestJournalLast(t *testing.T) {
	ctx := t.Context()
	clk := newFakeClock()
	s, _ := openTest(t, Options{Now: clk.Now})
	_, ok, err := s.LastTxn(ctx)
	require.NoError(t, err)
	require.False(t, ok)
	for _, id := range []string{"a", "c", "b"} {
		_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "S", ServiceID: id}, Transition{State: "received"})
		require.NoError(t, err)
		clk.Advance(time.Millisecond)
	}
	last, ok, err := s.LastTxn(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "b", last.ID, "last started, not last by id")
}

func TestJournalDuplicateServiceID(t *testing.T) {
	ctx := t.Context()
	clk := newFakeClock()
	s, _ := openTest(t, Options{Now: clk.Now, ServiceIDRetention: 48 * time.Hour})
	_, err := s.StartTxn(ctx, TxnRef{ID: "1", SaleID: "POS", ServiceID: "7"}, Transition{State: "received"})
	require.NoError(t, err)
	_, err = s.StartTxn(ctx, TxnRef{ID: "2", SaleID: "POS", ServiceID: "7"}, Transition{State: "received"})
	require.ErrorIs(t, err, ErrDuplicateServiceID)
	_, err = s.StartTxn(ctx, TxnRef{ID: "1", SaleID: "POS", ServiceID: "8"}, Transition{State: "received"})
	require.ErrorIs(t, err, ErrTxnExists)
	_, err = s.StartTxn(ctx, TxnRef{ID: "3", SaleID: "OTHER-POS", ServiceID: "7"}, Transition{State: "received"})
	require.NoError(t, err, "ServiceID is unique per SaleID only")

	clk.Advance(48*time.Hour + time.Second)
	_, err = s.StartTxn(ctx, TxnRef{ID: "4", SaleID: "POS", ServiceID: "7"}, Transition{State: "received"})
	require.ErrorIs(t, err, ErrDuplicateServiceID, "an unfinished transaction keeps its pair")
	require.NoError(t, s.AppendTxn(ctx, "1", Transition{State: "done", Final: true}))
	_, err = s.StartTxn(ctx, TxnRef{ID: "4", SaleID: "POS", ServiceID: "7"}, Transition{State: "received"})
	require.NoError(t, err, "pair is free again after the retention")

	_, err = s.StartTxn(ctx, TxnRef{ID: "x\x00y"}, Transition{})
	require.Error(t, err)
}

func TestJournalWithoutServiceID(t *testing.T) {
	// Transactions the agent journals on its own (no POS request) reserve
	// nothing: several may start back to back.
	ctx := t.Context()
	s, _ := openTest(t, Options{})
	for _, id := range []string{"qr-1", "qr-2", "qr-3"} {
		_, err := s.StartTxn(ctx, TxnRef{ID: id}, Transition{State: "qr:created"})
		require.NoError(t, err)
	}
	_, ok, err := s.TxnByServiceID(ctx, "", "")
	require.NoError(t, err)
	require.False(t, ok)
	n, err := s.PruneJournal(ctx, time.Now())
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestJournalLastForSale(t *testing.T) {
	ctx := t.Context()
	clk := newFakeClock()
	s, _ := openTest(t, Options{Now: clk.Now})
	for _, ref := range []TxnRef{
		{ID: "a1", SaleID: "A", ServiceID: "1"},
		{ID: "b1", SaleID: "B", ServiceID: "1"},
		{ID: "a2", SaleID: "A", ServiceID: "2"},
		{ID: "b2", SaleID: "B", ServiceID: "2"},
		{ID: "qr"},
	} {
		_, err := s.StartTxn(ctx, ref, Transition{State: "received"})
		require.NoError(t, err)
		clk.Advance(time.Second)
	}
	for sale, want := range map[string]string{"A": "a2", "B": "b2", "": "qr"} {
		got, ok, err := s.LastTxnForSale(ctx, sale)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, want, got.ID)
	}
	_, ok, err := s.LastTxnForSale(ctx, "C")
	require.NoError(t, err)
	require.False(t, ok)
}

func TestJournalDuplicateServiceIDConcurrent(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, dups := 0, 0
	for i := range 20 {
		wg.Go(func() {
			_, err := s.StartTxn(ctx, TxnRef{ID: string(rune('a' + i)), SaleID: "POS", ServiceID: "1"}, Transition{State: "received"})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, ErrDuplicateServiceID):
				dups++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	require.Equal(t, 1, wins)
	require.Equal(t, 19, dups)
}

func TestJournalPrune(t *testing.T) {
	ctx := t.Context()
	clk := newFakeClock()
	opts := Options{Now: clk.Now, ServiceIDRetention: 48 * time.Hour, JournalRetention: 7 * 24 * time.Hour}
	s, _ := openTest(t, opts)
	start := func(id string, final bool) {
		_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "POS", ServiceID: id}, Transition{State: "received", Final: final})
		require.NoError(t, err)
	}
	start("old-final", true)
	start("old-open", false)
	clk.Advance(3 * 24 * time.Hour)
	start("mid-final", true)
	clk.Advance(5 * 24 * time.Hour) // old-* are 8 days old, mid 5 days

	n, err := s.PruneJournal(ctx, clk.Now())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = s.Txn(ctx, "old-final")
	require.ErrorIs(t, err, ErrNotFound)
	_, err = s.Txn(ctx, "old-open")
	require.NoError(t, err, "unfinished transactions are never pruned")
	_, err = s.Txn(ctx, "mid-final")
	require.NoError(t, err)

	// ServiceIDs older than 48 h are released even though the journal keeps the transaction.
	_, ok, err := s.TxnByServiceID(ctx, "POS", "mid-final")
	require.NoError(t, err)
	require.False(t, ok)
	_, err = s.StartTxn(ctx, TxnRef{ID: "new", SaleID: "POS", ServiceID: "mid-final"}, Transition{State: "received"})
	require.NoError(t, err)

	unf, err := s.UnfinishedTxns(ctx)
	require.NoError(t, err)
	require.Len(t, unf, 2)
	require.Equal(t, "old-open", unf[0].ID, "oldest first")

	// Issue 10 item 6: the ServiceID of an unfinished transaction is never
	// released (before: pruned after 48 h, and TransactionStatus said
	// NotFound of a payment that may have charged the consumer).
	tx, ok, err := s.TxnByServiceID(ctx, "POS", "old-open")
	require.NoError(t, err)
	require.True(t, ok, "an unfinished payment keeps its ServiceID")
	require.Equal(t, "old-open", tx.ID)
	_, err = s.StartTxn(ctx, TxnRef{ID: "reuse", SaleID: "POS", ServiceID: "old-open"}, Transition{State: "received"})
	require.ErrorIs(t, err, ErrDuplicateServiceID, "nor taken over by a new request")
	// Once finished, it is released by the next prune like any other.
	require.NoError(t, s.AppendTxn(ctx, "old-open", Transition{State: "done", Final: true}))
	_, err = s.PruneJournal(ctx, clk.Now())
	require.NoError(t, err)
	_, ok, err = s.TxnByServiceID(ctx, "POS", "old-open")
	require.NoError(t, err)
	require.False(t, ok)
}

func TestSeenEvent(t *testing.T) {
	ctx := t.Context()
	clk := newFakeClock()
	opts := Options{Now: clk.Now, EventRetention: time.Hour}
	s, _ := openTest(t, opts)

	seen, err := s.SeenEvent(ctx, "evt-1")
	require.NoError(t, err)
	require.False(t, seen)
	seen, err = s.SeenEvent(ctx, "evt-1")
	require.NoError(t, err)
	require.True(t, seen)

	s = reopen(t, s, opts)
	seen, err = s.SeenEvent(ctx, "evt-1")
	require.NoError(t, err)
	require.True(t, seen, "durable across restart")

	clk.Advance(30 * time.Minute)
	_, err = s.SeenEvent(ctx, "evt-2")
	require.NoError(t, err)
	clk.Advance(31 * time.Minute)
	n, err := s.PruneEvents(ctx, clk.Now())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	seen, err = s.SeenEvent(ctx, "evt-1")
	require.NoError(t, err)
	require.False(t, seen, "forgotten after the retention")
	seen, err = s.SeenEvent(ctx, "evt-2")
	require.NoError(t, err)
	require.True(t, seen)

	_, err = s.SeenEvent(ctx, "")
	require.Error(t, err)
}

func TestSeenEventConcurrent(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	fresh := 0
	for range 16 {
		wg.Go(func() {
			seen, err := s.SeenEvent(ctx, "same")
			require.NoError(t, err)
			if !seen {
				mu.Lock()
				fresh++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Equal(t, 1, fresh)
}

func TestJanitorPrunes(t *testing.T) {
	ctx := t.Context()
	clk := newFakeClock()
	s, _ := openTest(t, Options{Now: clk.Now, EventRetention: time.Minute, PruneInterval: 5 * time.Millisecond})
	_, err := s.SeenEvent(ctx, "e")
	require.NoError(t, err)
	clk.Advance(2 * time.Minute)
	require.Eventually(t, func() bool {
		var gone bool
		require.NoError(t, s.view(func(tx *bolt.Tx) error {
			gone = tx.Bucket(bucketSeen).Get([]byte("e")) == nil
			return nil
		}))
		return gone
	}, 10*time.Second, 5*time.Millisecond)
}

// FinishTxnEvents writes only to an unfinished transaction, checked in the
// commit itself (the agent's Finish reads nothing before it): on a final one
// it fails with ErrTxnFinal and writes neither the transitions nor the events.
func TestFinishTxnEventsOnlyUnfinished(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{})
	_, err := s.StartTxn(ctx, TxnRef{ID: "t1", SaleID: "POS1", ServiceID: "S1"}, Transition{State: "started"})
	require.NoError(t, err)
	ev := Event{Kind: KindTransactionResult, Payload: []byte(`{}`)}
	require.NoError(t, s.FinishTxnEvents(ctx, "t1", []Transition{{State: "done", Final: true}}, ev))
	err = s.FinishTxnEvents(ctx, "t1", []Transition{{State: "again", Final: true}}, ev)
	require.ErrorIs(t, err, ErrTxnFinal)
	tx, err := s.Txn(ctx, "t1")
	require.NoError(t, err)
	require.Len(t, tx.Transitions, 2, "nothing written by the refused finish")
	recs, err := s.List(ctx, 10)
	require.NoError(t, err)
	require.Len(t, recs, 1, "nor its event")
	require.NoError(t, s.AppendTxnEvents(ctx, "t1", []Transition{{State: "settled", Final: true}}), "AppendTxnEvents still appends to a final one")
}

// Transitions are stored in a binary layout (version 2); those a version
// before it wrote as JSON still read the same, and a damaged value is an
// error, never a panic or a half-read transition.
func TestTransitionEncodingReadsBothLayouts(t *testing.T) {
	at := time.Date(2026, 3, 1, 9, 0, 0, 123, time.UTC)
	tr := Transition{At: at, State: "nexo.done", Final: true, Data: json.RawMessage(`{"SaleToPOIResponse":{}}`)}
	got, err := decodeTransition(encodeTransition(tr))
	require.NoError(t, err)
	require.Equal(t, tr, got)
	old, err := json.Marshal(tr) // the layout of files written before version 2
	require.NoError(t, err)
	got, err = decodeTransition(old)
	require.NoError(t, err)
	require.Equal(t, tr, got)
	enc := encodeTransition(tr)
	for i := range len(enc) {
		_, err := decodeTransition(enc[:i])
		require.Error(t, err, "cut at %d", i)
	}
	_, err = decodeTransition(append([]byte{9}, enc[1:]...))
	require.ErrorIs(t, err, ErrBadRecord)

	// A journal written with JSON transitions (a file from before) reads on.
	ctx := t.Context()
	s, _ := openTest(t, Options{})
	_, err = s.StartTxn(ctx, TxnRef{ID: "old", SaleID: "POS1", ServiceID: "S1"}, Transition{State: "started"})
	require.NoError(t, err)
	require.NoError(t, s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketTxn).Delete(transKey("old", 1)); err != nil { // where schema 1 had it
			return err
		}
		return tx.Bucket(bucketTrans).Put(transKey("old", 1), old)
	}))
	txn, err := s.Txn(ctx, "old")
	require.NoError(t, err)
	require.Equal(t, []Transition{tr}, txn.Transitions)
}

// Journal headers are stored in a binary layout (version 2); the JSON headers
// of older files still read, and a transaction with one takes new steps (its
// header is then rewritten in the binary layout). A damaged header is an
// error.
func TestHeaderReadsBothLayouts(t *testing.T) {
	at := time.Date(2026, 3, 1, 9, 0, 0, 123, time.UTC)
	h := txnHeader{SaleID: "POS1", ServiceID: "S1", Started: at, Updated: at.Add(time.Second), State: "nexo.started", Final: true, N: 3, Order: 7, Compact: true}
	var got txnHeader
	require.NoError(t, got.decode(h.encode()))
	require.Equal(t, h, got)
	old, err := json.Marshal(h) // the layout of files written before version 2
	require.NoError(t, err)
	got = txnHeader{}
	require.NoError(t, got.decode(old))
	require.Equal(t, h, got)
	enc := h.encode()
	for i := range len(enc) {
		require.Error(t, got.decode(enc[:i]), "cut at %d", i)
	}

	ctx := t.Context()
	s, _ := openTest(t, Options{})
	_, err = s.StartTxn(ctx, TxnRef{ID: "old", SaleID: "POS1", ServiceID: "S1"}, Transition{At: at, State: "started"})
	require.NoError(t, err)
	legacy, err := json.Marshal(txnHeader{SaleID: "POS1", ServiceID: "S1", Started: at, Updated: at, State: "started", N: 1, Order: 1})
	require.NoError(t, err)
	require.NoError(t, s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketTxn).Put([]byte("old"), legacy) }))
	require.NoError(t, s.AppendTxn(ctx, "old", Transition{At: at, State: "done", Final: true, Data: json.RawMessage(`"x"`)}))
	txn, err := s.Txn(ctx, "old")
	require.NoError(t, err)
	require.True(t, txn.Final)
	require.Equal(t, "done", txn.State)
	require.Len(t, txn.Transitions, 2)
}

// A look-up given the states it reads copies only their data; the other
// transitions are listed without theirs.
func TestLookupCopiesOnlyTheStatesAsked(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{})
	_, err := s.StartTxn(ctx, TxnRef{ID: "t1", SaleID: "POS1", ServiceID: "S1"}, Transition{State: "a", Data: json.RawMessage(`"A"`)})
	require.NoError(t, err)
	require.NoError(t, s.AppendTxn(ctx, "t1", Transition{State: "b", Data: json.RawMessage(`"B"`)}))
	require.NoError(t, s.AppendTxn(ctx, "t1", Transition{State: "c", Data: json.RawMessage(`"C"`)}))
	txn, ok, err := s.TxnByServiceID(ctx, "POS1", "S1", "a", "c")
	require.NoError(t, err)
	require.True(t, ok)
	require.Len(t, txn.Transitions, 3)
	require.Equal(t, json.RawMessage(`"A"`), txn.Transitions[0].Data)
	require.Nil(t, txn.Transitions[1].Data)
	require.Equal(t, "b", txn.Transitions[1].State)
	require.Equal(t, json.RawMessage(`"C"`), txn.Transitions[2].Data)
	last, ok, err := s.LastTxnForSale(ctx, "POS1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, json.RawMessage(`"B"`), last.Transitions[1].Data, "without states, all data")
}

// Every field of a journal reference is bounded: a key built from one can
// then never fail a write halfway through an op (its earlier puts are not
// undone inside a group commit); a longer one is refused before anything is
// written.
func TestStartTxnRefusesOverlongReferences(t *testing.T) {
	s, _ := openTest(t, Options{PruneInterval: -1})
	long := strings.Repeat("x", MaxRefLen+1)
	for _, ref := range []TxnRef{
		{ID: long, SaleID: "POS", ServiceID: "1"},
		{ID: "t1", SaleID: long, ServiceID: "1"},
		{ID: "t2", SaleID: "POS", ServiceID: long},
	} {
		_, err := s.StartTxn(t.Context(), ref, Transition{State: "s"})
		require.ErrorContains(t, err, "at most 1024", "%.8s…", ref.ID)
		_, err = s.Txn(t.Context(), ref.ID)
		require.ErrorIs(t, err, ErrNotFound, "nothing written")
	}
	_, err := s.StartTxn(t.Context(), TxnRef{ID: strings.Repeat("y", MaxRefLen), SaleID: "POS", ServiceID: "2"}, Transition{State: "s"})
	require.NoError(t, err, "at the bound")
}
