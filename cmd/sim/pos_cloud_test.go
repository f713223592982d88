package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/internal/testrig/worldrig"
	"github.com/termagent/termagent/sim"
)

// TestPOSCloudPays: sim pos -cloud lists the store's devices, then pays
// through the Retail API (a Nexo v5 session relayed to the agent's cloud
// connection) and asks the payment's status the same way.
func TestPOSCloudPays(t *testing.T) {
	w, _ := worldrig.Start(t, worldrig.Agent(func(c *agent.Config) {
		c.CloudURL = "wss://" + strings.TrimPrefix(c.APIURL, "https://") + sim.RetailRelayPath
	}))
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	require.NoError(t, w.Agent.Cloud().WaitConnected(ctx))
	flags := []string{"-cloud", w.PPaaS.RetailURL(), "-ca", w.Config.CA, "-control", w.PPaaS.ControlURL()}

	var out string
	require.Eventually(t, func() bool {
		var err error
		out, err = runOut(t, append([]string{"pos", "devices"}, flags...)...)
		return err == nil && strings.Contains(out, w.Agent.POIID()+"  connected  ")
	}, 15*time.Second, 10*time.Millisecond)
	require.Contains(t, out, "KB")

	pay := start(t.Context(), append([]string{"pos", "pay", "3.10", "EUR", "-service-id", "CLOUDPAY1"}, flags...)...)
	waitFor(t, &pay.out, hintRx)
	require.Contains(t, pay.out.String(), "Cloud session ")
	out, err := runOut(t, "consumer", "pay", "-control", w.PPaaS.ControlURL())
	require.NoError(t, err, out)
	require.NoError(t, pay.wait(t), pay.out.String())
	require.Contains(t, pay.out.String(), "Payment Response: Success")

	out, err = runOut(t, append([]string{"pos", "status", "CLOUDPAY1"}, flags...)...)
	require.NoError(t, err, out)
	require.Contains(t, out, "Success")
	_, charges := w.PPaaS.Transactions()
	require.Equal(t, 1, charges[w.Agent.Serial()])

	_, err = runOut(t, "pos", "devices")
	require.ErrorContains(t, err, "needs -cloud")
	_, err = runOut(t, append([]string{"pos", "status", "-cloud-key", "wrong"}, flags...)...)
	require.ErrorContains(t, err, "401")
}
