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
	var approvals int
	for _, ev := range w.Handler.Events(ctid) {
		if ev.Status == ppaas.Approved {
			approvals++
		}
	}
	require.Equal(t, fails+1, approvals, "delivered, failed, delivered again")
	w.WaitSubscribed()
}
