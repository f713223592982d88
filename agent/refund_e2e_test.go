package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/internal/testrig/worldrig"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim"
	simworld "github.com/termagent/termagent/sim/world"
)

// paid runs a 20.00 EUR KB payment the consumer pays and returns its response.
func (w *world) paid(serviceID string) *nexo.Response {
	w.t.Helper()
	ch := w.payAsync(serviceID, 2000)
	s := w.awaitQR()
	_, err := w.PPaaS.Act(s.TransactionID, "pay")
	require.NoError(w.t, err)
	r := w.answer(ch, 15*time.Second)
	require.Equal(w.t, nexo.Success, r.Status.Result, simworld.Describe(r))
	return r
}

// Issue 14: a refund that names no original payment, or another POS's
// payment, is refused clearly and nothing is refunded.
func TestE2ERefundUnreferencedOrForeignIsRefused(t *testing.T) {
	w := startWorld(t, nil)
	p := w.paid("P1")
	orig := p.Payment.POITransactionID.ID

	r, err := w.pos.Client.Do(t.Context(), w.pos.RefundRequest("U1", "", 500, "EUR"))
	require.NoError(t, err)
	require.Equal(t, nexo.Failure, r.Status.Result, simworld.Describe(r))
	require.Equal(t, nexo.PaymentRestriction, r.Status.ErrorCondition)
	require.Contains(t, r.Status.AdditionalResponse, "unreferenced refunds are not supported")
	require.Contains(t, r.Status.AdditionalResponse, "OriginalPOITransaction")

	other := &simworld.POS{Client: w.pos.Client, SaleID: "POS2", POIID: w.pos.POIID}
	_, err = other.Login(t.Context())
	require.NoError(t, err)
	r, err = other.Refund(t.Context(), "F1", orig, 500, "EUR")
	require.NoError(t, err)
	require.Equal(t, nexo.NotFound, r.Status.ErrorCondition, simworld.Describe(r))

	r, err = w.pos.Refund(t.Context(), "C1", orig, 500, "USD")
	require.NoError(t, err)
	require.Equal(t, nexo.Refusal, r.Status.ErrorCondition, simworld.Describe(r))
	require.Contains(t, r.Status.AdditionalResponse, "refund in USD of a payment made in EUR")
	require.Zero(t, w.simTx(orig).RefundedAmount)
}

// Issue 14: the POS aborts a refund PPaaS has accepted but not completed.
// The POS must not be told Aborted (PPaaS will refund): it gets InProgress,
// TransactionStatus says InProgress, and once PPaaS completes the refund the
// refund desk journals Success.
func TestE2ERefundAbortedWhilePendingIsInProgressNotAborted(t *testing.T) {
	ws, pos := worldrig.Start(t, func(c *simworld.WorldConfig) {
		worldrig.Agent(func(ac *agent.Config) { ac.PaymentTimeout, ac.EventWait = 30*time.Second, 10*time.Second })(c)
		c.AgentOptions.Refunds = agent.RefundTiming{Wait: 20 * time.Second, Poll: 50 * time.Millisecond, Every: 100 * time.Millisecond}
	})
	w := &world{World: ws, t: t, pos: pos, seen: map[string]bool{}}
	orig := w.paid("P1").Payment.POITransactionID.ID
	require.NoError(t, w.PPaaS.SetRefundMode(sim.RefundMode{Async: true}))

	ch := make(chan payResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		r, err := w.pos.Refund(ctx, "R1", orig, 700, "EUR")
		ch <- payResult{r, err}
	}()
	w.waitFor(10*time.Second, "the refund pending at PPaaS", func() bool { return w.simTx(orig).RefundPending == 700 }, func() string { return "" })
	require.NoError(t, w.pos.Abort(t.Context(), "R1"))
	r := w.answer(ch, 30*time.Second)
	require.Equal(t, nexo.Failure, r.Status.Result, simworld.Describe(r))
	require.Equal(t, nexo.InProgress, r.Status.ErrorCondition, "a refund PPaaS may still make is never answered Aborted: %s", simworld.Describe(r))

	st, err := w.pos.Status(t.Context(), "R1")
	require.NoError(t, err)
	require.Equal(t, nexo.InProgress, st.Status.ErrorCondition, simworld.Describe(st))

	n, err := w.PPaaS.CompleteRefunds("")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	w.waitFor(10*time.Second, "the refund journaled Success", func() bool {
		st, err := w.pos.Status(t.Context(), "R1")
		return err == nil && st.Status.Result == nexo.Success && st.TransactionStatus.Repeated.Status.Result == nexo.Success
	}, func() string { st, _ := w.pos.Status(t.Context(), "R1"); return simworld.Describe(st) })
	require.Equal(t, int64(700), w.simTx(orig).RefundedAmount)
}
