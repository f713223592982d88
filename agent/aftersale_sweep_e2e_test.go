package agent_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/internal/testrig/worldrig"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim"
	simworld "github.com/termagent/termagent/sim/world"
)

// startPollingWorld starts a world whose agent has no MQTT broker (polling
// only, the default event source) and sweeps every 100 ms.
func startPollingWorld(t *testing.T) *world {
	t.Helper()
	ws, pos := worldrig.Start(t, func(c *simworld.WorldConfig) {
		worldrig.Agent(func(ac *agent.Config) { ac.MQTTURL, ac.PaymentTimeout = "", 30*time.Second })(c)
		c.AgentOptions.Sweep = agent.SweepTiming{Interval: 100 * time.Millisecond}
	})
	return &world{World: ws, t: t, pos: pos, seen: map[string]bool{}}
}

// awaitSweeps waits until n more sweeps than now have run.
func (w *world) awaitSweeps(n int64) {
	w.t.Helper()
	want := w.Agent.TestSweepStats().Sweeps + n
	w.waitFor(10*time.Second, fmt.Sprintf("%d more after-sale sweeps", n), func() bool { return w.Agent.TestSweepStats().Sweeps >= want },
		func() string { return fmt.Sprintf("%+v", w.Agent.TestSweepStats()) })
}

// With polling only, nothing reads a payment already answered: a provider
// refund and a chargeback made at PPaaS afterwards reached the agent only
// as MQTT events, and without a broker the POS never heard of them. The
// after-sale sweep lists them: the POS gets exactly one EventNotification for
// each, TransactionStatus tells it, and later sweeps add nothing.
func TestE2ESweepTellsProviderRefundAndChargebackWithoutMQTT(t *testing.T) {
	w := startPollingWorld(t)
	refunded := w.paid("R1").Payment.POITransactionID.ID
	charged := w.paid("C1").Payment.POITransactionID.ID
	acted := time.Now()
	_, err := w.PPaaS.Act(w.simTx(refunded).TransactionID, sim.ActionProviderRefund)
	require.NoError(t, err)
	_, err = w.PPaaS.Act(w.simTx(charged).TransactionID, sim.ActionChargeback)
	require.NoError(t, err)

	told := func(ctid, update string) func() bool {
		return func() bool {
			return len(w.POSEvents.Matching("Completed", "POITransactionID="+ctid, "Update="+update)) > 0
		}
	}
	stats := func() string { return fmt.Sprintf("%+v", w.Agent.TestSweepStats()) }
	w.waitFor(10*time.Second, "the POS notified of the provider refund", told(refunded, "refunded"), stats)
	t.Logf("provider refund to POS notification: %s (sweep every 100 ms)", time.Since(acted))
	w.waitFor(10*time.Second, "the POS notified of the chargeback", told(charged, "charged_back"), stats)
	w.awaitSweeps(3) // sweeps that list both again, unchanged

	for _, ctid := range []string{refunded, charged} {
		got := w.POSEvents.Matching("Completed", "POITransactionID="+ctid)
		require.Len(t, got, 1, "notified once: %s", ctid)
		require.Contains(t, got[0].Event.EventDetails, "Amount=20.00")
	}
	s := w.Agent.TestSweepStats()
	require.Equal(t, int64(2), s.Updates, "%+v", s)
	require.Zero(t, s.ListFailures+s.Failures+s.Unknown, "%+v", s)

	st := w.status("R1")
	require.Equal(t, nexo.Success, st.Status.Result, "the sale happened; the refund is told beside it")
	require.Contains(t, st.Status.AdditionalResponse, "refunded or charged back after the sale (PPaaS's listing does not say which): 20.00 EUR back to the consumer")
	st = w.status("C1")
	require.Equal(t, nexo.Success, st.Status.Result)
	require.Contains(t, st.Status.AdditionalResponse, "charged back by the card holder after the sale: 20.00 EUR taken back")
}

// A payment the POS reversed itself is refunded at PPaaS too: the sweep
// lists it refunded, and the desk takes it for the reversal's own outcome,
// which its response told. It is not announced again.
func TestE2ESweepDoesNotReannounceThePOSOwnReversal(t *testing.T) {
	w := startPollingWorld(t)
	ctid := w.paid("P1").Payment.POITransactionID.ID
	r, err := w.pos.Reverse(t.Context(), ctid, "CustCancel")
	require.NoError(t, err)
	require.Equal(t, nexo.Success, r.Status.Result, simworld.Describe(r))
	// The reversal's POI transaction id names its own journal entry (it was
	// the payment's id with "-rev", which named nothing: NotFound): the agent
	// finds it, money given back, and refuses to reverse it.
	again, err := w.pos.Reverse(t.Context(), r.Reversal.POITransactionID.ID, "CustCancel")
	require.NoError(t, err)
	require.Equal(t, nexo.Refusal, again.Status.ErrorCondition, simworld.Describe(again))
	require.Contains(t, again.Status.AdditionalResponse, "cannot be reversed")
	w.waitFor(5*time.Second, "PPaaS refunded the reversed payment", func() bool { return w.simTx(ctid).RefundedAmount == 2000 },
		func() string { return fmt.Sprintf("%+v", w.simTx(ctid)) })
	w.awaitSweeps(3)

	require.Empty(t, w.POSEvents.Matching("Completed", "POITransactionID="+ctid), "the reversal's response told it")
	s := w.Agent.TestSweepStats()
	require.Zero(t, s.Updates, "%+v", s)
	require.Zero(t, s.ListFailures+s.Failures+s.Unknown, "%+v", s)
}
