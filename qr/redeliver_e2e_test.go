package qr_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/internal/testrig/enginerig"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
)

// Review: an event whose handler failed was left unacked, but an MQTT 3.1.1
// broker delivers an unacked message again only on the next session, which
// might not come for hours: the approval a payment waited for was lost and
// the payment ran to its timeout. The subscriber ends the session; it
// reconnects (its backoff, growing while the event keeps failing) and the
// broker's redelivery is applied.
func TestEventLeftUnackedIsAppliedOnTheRedeliveryAfterAReconnect(t *testing.T) {
	const fails = 3
	w := newWorld(t, enginerig.Options{})
	e := w.Engine(qr.Config{}, w.disp) // no poll before the 10 s timeout: only the event decides it
	ctid := uuid.NewString()
	w.Handler.Fail(fails, func(ev ppaas.Event) bool { return ev.ClientTransactionID == ctid && ev.Status == ppaas.Approved })
	ch := w.payAsync(t.Context(), e, ctid)
	tx := w.WaitTx(ctid)
	before := w.creds.calls.Load()
	paid := time.Now()
	_, err := w.Sim.Act(tx.TransactionID, "pay")
	require.NoError(t, err)
	r := w.await(ch)
	require.NoError(t, r.err)
	require.Equal(t, qr.ResultApproved, r.o.Result)
	// Not at the timeout (10 s), whose cancel would find it approved.
	require.Less(t, time.Since(paid), 5*time.Second, "applied on the redelivery")
	require.GreaterOrEqual(t, w.creds.calls.Load(), before+fails, "a new session after each failure")
	approvals := statusEvents(w, ctid, ppaas.Approved)
	require.Equal(t, fails+1, approvals, "delivered, failed, delivered again")
	w.WaitSubscribed()
}

// Review: one event whose handler always fails (a poison event: say, a
// payment whose final write failed) ended every session, and the broker
// delivers it first on each new one: the events after it, of every payment,
// never arrived. It ends maxSessionEnds sessions; after that it stays
// unacked for the broker's next session and the events after it are
// applied: payment B is approved by its own event, not by a timeout. (With
// the embedded broker the churn does not always hold B back; the cap itself
// is TestOneFailingEventEndsAtMostThreeSessions.)
func TestPoisonEventHoldsBackNoOtherPayment(t *testing.T) {
	w := newWorld(t, enginerig.Options{})
	e := w.Engine(qr.Config{Timeout: 6 * time.Second}, w.disp)
	a, b := uuid.NewString(), uuid.NewString()
	w.Handler.Fail(1<<30, func(ev ppaas.Event) bool { return ev.ClientTransactionID == a && ev.Status == ppaas.Approved })
	before := w.creds.calls.Load()
	cha := w.payAsync(t.Context(), e, a)
	txa := w.WaitTx(a)
	_, err := w.Sim.Act(txa.TransactionID, "pay")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(w.Handler.Events(a)) > 3 }, 5*time.Second, 5*time.Millisecond,
		"A's approval delivered again after each of the sessions it ended")
	chb := w.payAsync(t.Context(), e, b)
	txb := w.WaitTx(b)
	paid := time.Now()
	_, err = w.Sim.Act(txb.TransactionID, "pay")
	require.NoError(t, err)
	rb := w.await(chb)
	require.NoError(t, rb.err)
	require.Equal(t, qr.ResultApproved, rb.o.Result)
	require.Less(t, time.Since(paid), 3*time.Second, "B's approval arrived by its event, not at the timeout")
	require.Positive(t, statusEvents(w, b, ppaas.Approved), "B's approval event reached the handler")
	require.LessOrEqual(t, w.creds.calls.Load(), before+1+3, "A ended three sessions, no more")
	w.await(cha) // A: its timeout's cancel finds it paid
}

// Review: an event held after its third failure was delivered again only
// when the connection happened to drop, maybe days later. While an event is
// held the session ends after HeldRetry, and the broker's redelivery is
// applied.
func TestHeldEventIsDeliveredAgainAfterHeldRetry(t *testing.T) {
	w := newWorld(t, enginerig.Options{HeldRetry: 300 * time.Millisecond})
	e := w.Engine(qr.Config{Timeout: 8 * time.Second}, w.disp)
	ctid := uuid.NewString()
	w.Handler.Fail(4, func(ev ppaas.Event) bool { return ev.ClientTransactionID == ctid && ev.Status == ppaas.Approved })
	ch := w.payAsync(t.Context(), e, ctid)
	tx := w.WaitTx(ctid)
	paid := time.Now()
	_, err := w.Sim.Act(tx.TransactionID, "pay")
	require.NoError(t, err)
	r := w.await(ch)
	require.NoError(t, r.err)
	require.Equal(t, qr.ResultApproved, r.o.Result)
	require.Less(t, time.Since(paid), 5*time.Second, "applied on the delivery after the held one, not at the timeout")
	approvals := statusEvents(w, ctid, ppaas.Approved)
	require.Equal(t, 5, approvals, "three sessions ended, one held, then applied")
}

// statusEvents counts the events of payment ctid with status st that the
// handler was given (failed deliveries included).
func statusEvents(w *world, ctid string, st ppaas.State) int {
	n := 0
	for _, ev := range w.Handler.Events(ctid) {
		if ev.Status == st {
			n++
		}
	}
	return n
}
