package agent

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// An event that moved a payment in flight is not marked seen: its id is
// journaled with the QR transition it caused, in the same commit, and a
// redelivery after the payment ended is recognised there and changes nothing.
// Any other event (an after-sale update, one the engine ignored) is marked as
// before.
func TestEventAppliedInFlightIsJournaledNotMarked(t *testing.T) {
	r := newAfterSaleRig(t, false)
	r.j.journaled = newJournaledEvents()
	log := events{st: r.j.st, journaled: r.j.journaled}
	ctx := t.Context()
	id := beginPayment(t, r.j, "S1", 1234)

	// The Subscriber's steps for each event: apply (the engine records the
	// transition it causes), then mark.
	require.NoError(t, r.j.Record(ctx, qr.Transition{ClientTransactionID: id, TransactionID: "qr-1", From: ppaas.Created, To: ppaas.Pending, At: time.Now(), Source: "event", EventID: "ev-pending", Sequence: 2}))
	require.NoError(t, log.MarkEvent(ctx, "ev-pending"))
	require.NoError(t, r.j.Record(ctx, qr.Transition{ClientTransactionID: id, TransactionID: "qr-1", From: ppaas.Pending, To: ppaas.Approved, At: time.Now(), Source: "event", EventID: "ev-approved", Sequence: 3}))
	require.NoError(t, log.MarkEvent(ctx, "ev-approved"))
	require.NoError(t, log.MarkEvent(ctx, "ev-ignored")) // an event the engine ignored: no transition
	require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "S1"}, successResponse(t, "S1", id, 1234), time.Now()))

	for _, ev := range []string{"ev-pending", "ev-approved"} {
		seen, err := log.SeenEvent(ctx, ev)
		require.NoError(t, err)
		require.False(t, seen, "%s: journaled with its transition, not marked", ev)
	}
	seen, err := log.SeenEvent(ctx, "ev-ignored")
	require.NoError(t, err)
	require.True(t, seen, "an event that caused no transition is marked")

	// The broker or the provider delivers the approval again, the payment
	// being over: the after-sale desk takes it as the duplicate it is.
	handled, err := r.j.after.event(ctx, ppaas.Event{EventID: "ev-approved", Type: ppaas.EventTypeStatus, ClientTransactionID: id, TransactionID: "qr-1", Status: ppaas.Approved, Sequence: 3}, false)
	require.NoError(t, err)
	require.True(t, handled)
	require.Empty(t, afterSaleRecords(t, r.j.st, id))
	require.Empty(t, outboxOf(t, r.j.st, store.KindNexoEvent), "nothing told to the POS")

	// A new update of the same payment is still news.
	handled, err = r.j.after.event(ctx, ppaas.Event{EventID: "cb1", Type: ppaas.EventTypeStatus, ClientTransactionID: id, TransactionID: "qr-1",
		Status: ppaas.Refunded, StatusReason: "charged back by the card holder", Provider: map[string]string{"status": "CHARGED_BACK"}}, false)
	require.NoError(t, err)
	require.True(t, handled)
	require.Len(t, afterSaleRecords(t, r.j.st, id), 1)
	require.NoError(t, log.MarkEvent(ctx, "cb1"))
	require.NoError(t, r.j.st.Flush(ctx))
	seen, err = log.SeenEvent(ctx, "cb1")
	require.NoError(t, err)
	require.True(t, seen, "an after-sale update is marked as ever")
}

func TestJournaledEventsBounded(t *testing.T) {
	j := newJournaledEvents()
	for i := range maxJournaledEvents + 10 {
		j.add(string(rune('a' + i)))
	}
	require.Len(t, j.ids, maxJournaledEvents)
	require.False(t, j.take("a"), "the oldest was dropped: marked as any other")
	require.True(t, j.take(string(rune('a'+maxJournaledEvents+9))))
	require.False(t, j.take(string(rune('a'+maxJournaledEvents+9))), "taken once")
	var none *journaledEvents
	none.add("x")
	require.False(t, none.take("x"))
}

// Review: the redelivery check looked for an event id's raw bytes in the
// journaled JSON, which escapes <, > and & (and U+2028): such an id was never
// recognised. It looks for the id as JSON writes it.
func TestJournaledEventIDWithEscapedCharacters(t *testing.T) {
	for _, id := range []string{"plain-1", "a<b>&c", "line\u2028sep"} {
		data, err := json.Marshal(qr.Transition{ClientTransactionID: "c1", To: ppaas.Approved, EventID: id})
		require.NoError(t, err)
		txn := store.Txn{Transitions: []store.Transition{{State: stateQRPrefix + string(ppaas.Approved), Data: data}}}
		require.True(t, journaledEvent(txn, id), "%q", id)
		require.False(t, journaledEvent(txn, id+"x"), "%q", id)
	}
}
