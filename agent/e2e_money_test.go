package agent_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/sim"
	"github.com/termagent/termagent/sim/simtest"
	"github.com/termagent/termagent/store"
)

// Issue 10 items 2 and 4: the outcome of a 49.99 EUR payment is lost (every
// create answer), the consumer pays, and PPaaS answers 404 to the refund of a
// transaction it has just shown approved. Before, the 404 was read as "never
// created: no money moved" and the advice dropped (consumer charged, never
// refunded, nothing said so). Now the reversal is retried, and when it gives up
// it is loud: TransactionStatus names the amount and the PPaaS id and asks for a
// person, Diagnosis says Maintenance, /readyz is degraded; `agent queue retry`
// (RetryDead) brings it back and it refunds once PPaaS lets it.
func TestE2ERefund404IsNotNeverCreatedAndDeadLetterIsLoud(t *testing.T) {
	w, pos := simtest.Start(t, func(c *sim.WorldConfig) {
		c.AgentOptions.Forwarder.MaxRejections = 3
	})
	ww := &world{World: w, t: t, pos: pos, seen: map[string]bool{}}
	w.PPaaS.SetPaymentFaults(sim.PaymentFaults{CreateErrors: 4})
	// The refund (and cancel) of an existing transaction answer 404; the
	// status read and the create still work.
	w.PPaaS.AddFault(sim.Fault{Path: "/qrcode-payment/v1/transactions/", Method: "POST", Status: 404})

	r := ww.answer(ww.payAsync("R404", 4999), 15*time.Second)
	require.Equal(t, nexo.UnreachableHost, r.Status.ErrorCondition, sim.Describe(r))
	txs, _ := w.PPaaS.Transactions()
	require.Len(t, txs, 1)
	_, err := w.PPaaS.Act(txs[0].TransactionID, "pay")
	require.NoError(t, err)

	ww.waitFor(20*time.Second, "the reversal given up", func() bool {
		return strings.Contains(ww.status("R404").Status.AdditionalResponse, "manual action needed")
	}, func() string {
		return sim.Describe(ww.status("R404"))
	})
	rep := ww.status("R404")
	require.Equal(t, nexo.Failure, rep.Status.Result, sim.Describe(rep))
	require.NotContains(t, rep.Status.AdditionalResponse, "no money moved")
	require.Contains(t, rep.Status.AdditionalResponse, "reversal of 49.99 EUR failed at PPaaS")
	require.Contains(t, rep.Status.AdditionalResponse, txs[0].TransactionID)
	require.Contains(t, rep.Status.AdditionalResponse, "manual action needed")
	tx := ww.simTx(txs[0].ClientTransactionID)
	require.Equal(t, qr.Approved, tx.Status, "still charged, and the agent says so")
	require.Zero(t, tx.RefundedAmount)
	require.Equal(t, "Maintenance", ww.diagnosis().GlobalStatus)
	require.Contains(t, w.Agent.TestDegraded(), "dead letters")
	require.Equal(t, int64(1), w.Agent.TestForwarderStats().DeadByKind[store.KindAdvice])

	// A person fixes PPaaS and retries the dead letter.
	ww.clearFaults()
	n, err := w.Agent.TestStore().RetryDead(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	ww.waitFor(10*time.Second, "refunded", func() bool {
		return strings.Contains(ww.status("R404").Status.AdditionalResponse, "refunded at PPaaS")
	}, func() string { return sim.Describe(ww.status("R404")) })
	tx = ww.simTx(txs[0].ClientTransactionID)
	require.Equal(t, qr.Refunded, tx.Status)
	require.Equal(t, int64(4999), tx.RefundedAmount)
	require.Empty(t, w.Agent.TestDegraded())
}
