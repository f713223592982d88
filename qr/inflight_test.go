package qr

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/ppaas"
)

func TestInFlightNamesOnlyRunningPayments(t *testing.T) {
	e := &Engine{byClient: map[string]*txn{}, byID: map[string]*txn{}}
	tx := &txn{ctid: "c1"}
	require.NoError(t, e.register(tx))
	e.index(tx, "qr-1")
	require.True(t, e.InFlight(ppaas.Event{ClientTransactionID: "c1"}))
	require.True(t, e.InFlight(ppaas.Event{TransactionID: "qr-1"}))
	require.False(t, e.InFlight(ppaas.Event{ClientTransactionID: "c2", TransactionID: "qr-2"}))
	require.False(t, e.InFlight(ppaas.Event{}))
	e.unregister(tx)
	require.False(t, e.InFlight(ppaas.Event{ClientTransactionID: "c1", TransactionID: "qr-1"}))
}

// The Subscriber skips its event log only for events of a payment in flight,
// whose redelivery apply ignores: the same approval delivered twice moves the
// payment once and records one transition.
func TestEngineDeduplicatesEventsOfPaymentsInFlight(t *testing.T) {
	rec := &memRecorder{}
	e := &Engine{byClient: map[string]*txn{}, byID: map[string]*txn{}, rec: rec, log: slog.New(slog.DiscardHandler)}
	tx := &txn{ctid: "c1", done: make(chan struct{}), moved: make(chan struct{}, 1)}
	tx.m.state = ppaas.AwaitingConsumer
	require.NoError(t, e.register(tx))
	e.index(tx, "qr-1")
	ev := ppaas.Event{EventID: "e1", Type: ppaas.EventTypeStatus, ClientTransactionID: "c1", TransactionID: "qr-1", Status: ppaas.Approved, Sequence: 3}
	require.True(t, e.DeduplicatesEvent(ev))
	require.False(t, e.DeduplicatesEvent(ppaas.Event{EventID: "e2", ClientTransactionID: "c2", TransactionID: "qr-2"}))
	for range 2 {
		require.NoError(t, e.HandleEvent(t.Context(), ev))
	}
	require.Len(t, rec.ts, 1, "a redelivery is recognised by the engine")
	require.Equal(t, ppaas.Approved, tx.state())
	e.unregister(tx)
	require.False(t, e.DeduplicatesEvent(ev), "once the payment is answered the event log de-duplicates")
}

// An update of a payment the engine has decided but not let
// go yet (Pay has not returned) is passed back by ApplyEvent, neither applied
// nor dropped, so the agent hands it to its after-sale desk; an undecided
// payment's event is applied as before, and so is HandleEvent's.
func TestApplyEventPassesBackUpdatesOfDecidedPayments(t *testing.T) {
	rec := &memRecorder{}
	e := &Engine{byClient: map[string]*txn{}, byID: map[string]*txn{}, rec: rec, log: slog.New(slog.DiscardHandler)}
	tx := &txn{ctid: "c1", done: make(chan struct{}), moved: make(chan struct{}, 1)}
	tx.m.state = ppaas.AwaitingConsumer
	require.NoError(t, e.register(tx))
	e.index(tx, "qr-1")
	approved := ppaas.Event{EventID: "e1", Type: ppaas.EventTypeStatus, ClientTransactionID: "c1", TransactionID: "qr-1", Status: ppaas.Approved, Sequence: 3}
	require.False(t, e.Decided(approved))
	decided, err := e.ApplyEvent(t.Context(), approved)
	require.NoError(t, err)
	require.False(t, decided, "applied")
	require.Equal(t, ppaas.Approved, tx.state())
	require.Len(t, rec.ts, 1)

	for _, ev := range []ppaas.Event{
		{EventID: "e2", Type: ppaas.EventTypeStatus, TransactionID: "qr-1", Status: ppaas.Refunded, Sequence: 4},
		{EventID: "e3", Type: ppaas.EventTypeStatus, ClientTransactionID: "c1", Status: ppaas.Declined, Sequence: 5},
		approved, // its redelivery: the desk tells it from news
	} {
		require.True(t, e.Decided(ev), ev.EventID)
		decided, err := e.ApplyEvent(t.Context(), ev)
		require.NoError(t, err)
		require.True(t, decided, "%s passed back", ev.EventID)
	}
	require.Equal(t, ppaas.Approved, tx.state(), "nothing applied")
	require.Len(t, rec.ts, 1)
	require.NoError(t, e.HandleEvent(t.Context(), ppaas.Event{EventID: "e4", Type: ppaas.EventTypeStatus, ClientTransactionID: "c1", Status: ppaas.Refunded}),
		"HandleEvent still accepts and ignores it")

	e.unregister(tx)
	require.False(t, e.Decided(approved), "no longer in flight")
	decided, err = e.ApplyEvent(t.Context(), approved)
	require.NoError(t, err)
	require.True(t, decided, "a payment let go meanwhile is passed back too")
	require.False(t, e.Decided(ppaas.Event{}))
}

// Payment names the payment in flight an event is about by the id the
// caller's journal knows it by, also for an event naming only its PPaaS id,
// and says whether it is decided.
func TestPaymentNamesThePaymentInFlight(t *testing.T) {
	e := &Engine{byClient: map[string]*txn{}, byID: map[string]*txn{}}
	tx := &txn{ctid: "c1"}
	tx.m.state = ppaas.AwaitingConsumer
	require.NoError(t, e.register(tx))
	e.index(tx, "qr-1")
	for _, ev := range []ppaas.Event{{ClientTransactionID: "c1"}, {TransactionID: "qr-1"}} {
		ctid, decided := e.Payment(ev)
		require.Equal(t, "c1", ctid)
		require.False(t, decided)
	}
	tx.m.state = ppaas.Approved
	ctid, decided := e.Payment(ppaas.Event{TransactionID: "qr-1"})
	require.Equal(t, "c1", ctid)
	require.True(t, decided)
	ctid, decided = e.Payment(ppaas.Event{TransactionID: "qr-2"})
	require.Empty(t, ctid)
	require.False(t, decided)
	e.unregister(tx)
	ctid, _ = e.Payment(ppaas.Event{TransactionID: "qr-1"})
	require.Empty(t, ctid)
}

// Review: a refund event reaching a payment still undecided (it overtook the
// approval's, or the approval's was lost) was taken for the approval it
// implies, and the POS answered Success. A status decoded as refunded is not
// proof of an approval (an operator's spelling mapped to refunded, a platform
// quirk): the payment ignores the illegal move and stays undecided, its
// timeout ends it unknown and the reversal settles it.
func TestRefundOfAnUndecidedPaymentImpliesNoApproval(t *testing.T) {
	rec := &memRecorder{}
	e := &Engine{byClient: map[string]*txn{}, byID: map[string]*txn{}, rec: rec, log: slog.New(slog.DiscardHandler)}
	tx := &txn{ctid: "c1", done: make(chan struct{}), moved: make(chan struct{}, 1)}
	tx.m.state, tx.m.lastSeq = ppaas.Pending, 2
	require.NoError(t, e.register(tx))
	e.index(tx, "qr-1")
	for _, ev := range []ppaas.Event{
		{EventID: "rf", Type: ppaas.EventTypeStatus, ClientTransactionID: "c1", TransactionID: "qr-1", Status: ppaas.Refunded, Sequence: 4},
		{EventID: "rf2", Type: ppaas.EventTypeStatus, TransactionID: "qr-1", Status: ppaas.Refunded},
	} {
		decided, err := e.ApplyEvent(t.Context(), ev)
		require.NoError(t, err)
		require.False(t, decided, "not handed on as an update of an approval")
	}
	require.Equal(t, ppaas.Pending, tx.state())
	require.Empty(t, rec.ts, "nothing applied or recorded")
}
