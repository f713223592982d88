package world_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim"
	"github.com/termagent/termagent/sim/world"
)

// The agent-share benchmark subtracts only a payment's own platform time: the
// forwarder's asynchronous delivery of the result is off the payment's path.
func TestPaymentAPITimeLeavesOutForwarderDeliveries(t *testing.T) {
	w, pos := startWorld(t, func(cfg *world.WorldConfig) { cfg.PPaaS.Payments.Provider = sim.ProviderApprove })
	resp, err := pos.Pay(t.Context(), "", 1250, "EUR", "KB")
	require.NoError(t, err)
	require.Equal(t, nexo.Success, resp.Status.Result, world.Describe(resp))
	require.Positive(t, w.PPaaS.PaymentAPITime(), "the payment's own calls are counted")
	require.Eventually(t, func() bool {
		evs, _ := w.PPaaS.Ingested()
		return len(evs) > 0
	}, 10*time.Second, 5*time.Millisecond, "the forwarder delivers the result")
	require.Eventually(t, func() bool {
		return w.PPaaS.APITime() > w.PPaaS.PaymentAPITime()
	}, 10*time.Second, 5*time.Millisecond, "the delivery's handler time is in APITime, not PaymentAPITime")
}
