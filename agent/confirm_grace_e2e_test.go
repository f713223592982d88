package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/internal/testrig/worldrig"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	simworld "github.com/termagent/termagent/sim/world"
	"github.com/termagent/termagent/store"
)

// The POS aborts a payment its consumer has already paid (confirming): the
// Nexo server waits for the provider's confirmation, however long past the
// engine's own steps (here 6 s) it comes within confirm_timeout, and the POS
// gets the Success it is; TransactionStatus says InProgress meanwhile.
// Before, the server answered without the engine once those steps' bound had
// passed (45 s with the agent's defaults): Failure/UnreachableHost under a
// made-up POI transaction id and no reversal, then the confirmation
// journaled the payment Success, the consumer charged (review, rv-money).
func TestServerWaitsOutAPaidPaymentsConfirmation(t *testing.T) {
	w, pos := worldrig.Start(t, func(c *simworld.WorldConfig) {
		c.PPaaS.Payments.Providers.Pennymatic.ConfirmDelay = -1 // confirmed by the test
		c.AgentOptions.Steps = agent.StepTiming{Create: 500 * time.Millisecond, Cancel: 500 * time.Millisecond}
		prev := c.AgentConfig
		c.AgentConfig = func(ac *agent.Config) {
			prev(ac)
			ac.PaymentTimeout = 90 * time.Second
			ac.EventWait = 100 * time.Millisecond
			ac.ConfirmTimeout = "1m"
		}
	})
	ww := &world{World: w, t: t, pos: pos, seen: map[string]bool{}}
	ch := make(chan payResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		r, err := pos.Pay(ctx, "PM1", 320, "EUR", "PENNYMATIC")
		ch <- payResult{r, err}
	}()
	s := ww.awaitQR()
	for _, act := range []string{"connect", "pay"} {
		_, err := w.PPaaS.Act(s.TransactionID, act)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		tx, ok := w.PPaaS.Transaction(s.TransactionID)
		return ok && tx.Status == ppaas.Confirming
	}, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, pos.Abort(t.Context(), "PM1"))

	select {
	case r := <-ch: // the engine's steps (6 s) are long past at 8 s
		t.Fatalf("answered before the provider confirmed: %v %s", r.err, simworld.Describe(r.resp))
	case <-time.After(8 * time.Second):
	}
	st, err := pos.Status(t.Context(), "PM1")
	require.NoError(t, err)
	require.Equal(t, nexo.Failure, st.Status.Result, simworld.Describe(st))
	require.Equal(t, nexo.InProgress, st.Status.ErrorCondition, simworld.Describe(st))

	_, err = w.PPaaS.Act(s.TransactionID, "confirm")
	require.NoError(t, err)
	resp := ww.answer(ch, 15*time.Second)
	require.Equal(t, nexo.Success, resp.Status.Result, simworld.Describe(resp))
	require.Equal(t, nexo.Success, ww.status("PM1").Status.Result)
	tx, ok := w.PPaaS.Transaction(s.TransactionID)
	require.True(t, ok)
	require.Equal(t, ppaas.Approved, tx.Status)
	require.Zero(t, tx.RefundedAmount)
	require.Equal(t, 1, ww.charges())
	require.Zero(t, ww.queued(store.KindAdvice), "nothing to reverse: the POS was told Success")
	require.Equal(t, resp.Payment.POITransactionID.ID, tx.ClientTransactionID, "the POS's POI transaction id names the charge")
}
