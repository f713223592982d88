package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPOSPayScanned: sim pos pay -scan sends the code the POS's scanner read;
// without -scan the payment waits for the terminal's scanner, which sim
// consumer scan feeds.
func TestPOSPayScanned(t *testing.T) {
	w, posFlags, ctl := posWorld(t)

	out, err := runOut(t, append([]string{"pos", "pay", "20.00", "EUR", "-brand", "KBSCAN", "-scan", "281666027690188713769014"}, posFlags...)...)
	require.NoError(t, err, out)
	require.Contains(t, out, "Payment Response: Success")
	require.Contains(t, out, "acquirer: SIMACQ")

	_, err = runOut(t, append([]string{"consumer", "scan", "1111222233334444"}, ctl...)...)
	require.ErrorContains(t, err, "no payment is waiting")

	pay := start(t.Context(), append([]string{"pos", "pay", "5", "EUR", "-brand", "KBSCAN"}, posFlags...)...)
	require.Eventually(t, func() bool {
		s, ok := w.PPaaS.Terminals().Current(w.Agent.Serial())
		return ok && s.State == "awaiting_scan"
	}, 15*time.Second, 10*time.Millisecond, "the terminal asks for the customer's code")
	_, err = runOut(t, append([]string{"consumer", "scan", "1111 2222"}, ctl...)...)
	require.ErrorContains(t, err, "not printable ASCII")
	out, err = runOut(t, append([]string{"consumer", "scan", "1111222233334444", "-serial", w.Agent.Serial()}, ctl...)...)
	require.NoError(t, err, out)
	require.Contains(t, out, "took the code")
	require.NoError(t, pay.wait(t), pay.out.String())
	require.Contains(t, pay.out.String(), "Payment Response: Success")
}
