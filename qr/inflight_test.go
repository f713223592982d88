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
