package agent_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/sim"
	simworld "github.com/termagent/termagent/sim/world"
	"github.com/termagent/termagent/store"
)

// A create whose response is lost (the simulator creates, then answers 503) is
// retried with the same clientTransactionId: one transaction, one charge.
func TestE2ECreate5xxRetriedWithSameClientTransactionID(t *testing.T) {
	w := startWorld(t, nil)
	w.PPaaS.SetPaymentFaults(sim.PaymentFaults{CreateErrors: 2})

	done := w.payAsync("C5XX", 1250)
	s := w.awaitQR()
	_, err := w.PPaaS.Act(s.TransactionID, "pay")
	require.NoError(t, err)
	r := w.answer(done, 15*time.Second)
	require.Equal(t, nexo.Success, r.Status.Result, simworld.Describe(r))
	ctid := r.Payment.POITransactionID.ID

	txs, charges := w.PPaaS.Transactions()
	require.Len(t, txs, 1, "retries created no second transaction")
	require.Equal(t, ctid, txs[0].ClientTransactionID, "the POI transaction id is the clientTransactionId")
	require.Equal(t, 3, txs[0].CreateCalls, "two lost answers, then the create that answered")
	require.Equal(t, ppaas.Approved, txs[0].Status)
	require.Equal(t, 1, charges[w.Agent.Serial()])

	rep := w.status("C5XX")
	require.Equal(t, nexo.Success, rep.Status.Result, simworld.Describe(rep))
	require.Equal(t, ctid, rep.Payment.POITransactionID.ID)
}

// With PPaaS unreachable on every create attempt the POS hears UnreachableHost
// at once; a reversal advice waits in the outbox, and when PPaaS is back the
// forwarder makes sure the transaction does not stand (it replays the create
// idempotently and cancels it) and TransactionStatus reports the settlement.
func TestE2ECreateUnreachableQueuesAdviceResolvedLater(t *testing.T) {
	w := startWorld(t, nil)
	w.PPaaS.AddFault(sim.Fault{Path: "/qrcode-payment/v1/transactions", Method: "POST", Reset: true})

	start := time.Now()
	r := w.answer(w.payAsync("UNR1", 990), 15*time.Second)
	took := time.Since(start)
	require.Equal(t, nexo.Failure, r.Status.Result, simworld.Describe(r))
	require.Equal(t, nexo.UnreachableHost, r.Status.ErrorCondition, simworld.Describe(r))
	require.Less(t, took, 5*time.Second, "the POS is not kept waiting")
	t.Logf("UnreachableHost answered in %s", took.Round(time.Millisecond))

	txs, _ := w.PPaaS.Transactions()
	require.Empty(t, txs, "no create reached PPaaS")
	require.Equal(t, 1, w.queued(store.KindAdvice), "the reversal advice is queued")
	rep := w.status("UNR1")
	require.Equal(t, nexo.UnreachableHost, rep.Status.ErrorCondition, simworld.Describe(rep))

	// Let the forwarder fail a few times, then bring PPaaS back.
	require.Eventually(t, func() bool { return w.Agent.TestForwarderStats().Failures >= 2 }, 10*time.Second, 5*time.Millisecond)
	w.clearFaults()
	back := time.Now()
	require.Eventually(t, func() bool {
		return strings.Contains(w.status("UNR1").Status.AdditionalResponse, "reversed after the outcome was unknown")
	}, 10*time.Second, 10*time.Millisecond, "TransactionStatus reports the settlement")
	t.Logf("advice resolved %s after PPaaS came back", time.Since(back).Round(time.Millisecond))

	rep = w.status("UNR1")
	require.Equal(t, nexo.Failure, rep.Status.Result, simworld.Describe(rep))
	txs, charges := w.PPaaS.Transactions()
	require.Len(t, txs, 1, "the advice created (idempotently) the transaction to cancel it")
	require.Equal(t, ppaas.Cancelled, txs[0].Status)
	require.Zero(t, charges[w.Agent.Serial()])
	_, err := w.PPaaS.Act(txs[0].TransactionID, "pay")
	require.Error(t, err, "the consumer can no longer pay it")
	require.Zero(t, w.charges())
	require.Eventually(t, func() bool { return w.diagnosis().OutboxDepth == 0 }, 5*time.Second, 10*time.Millisecond)
}

// Every answer to the create is lost although PPaaS created the transaction,
// and the consumer pays it before the agent can reach PPaaS again: the POS was
// told UnreachableHost, so the advice refunds the payment, and
// TransactionStatus says the consumer has the money back.
func TestE2ECreateAnswersLostConsumerPaidAdviceRefunds(t *testing.T) {
	w := startWorld(t, nil)
	w.PPaaS.SetPaymentFaults(sim.PaymentFaults{CreateErrors: 4}) // every attempt of the engine
	// Hold the advice back: it replays the create, then reads the status.
	w.PPaaS.AddFault(sim.Fault{Path: "/qrcode-payment/v1/transactions/", Method: "GET", Status: 503})

	r := w.answer(w.payAsync("LOST1", 1990), 15*time.Second)
	require.Equal(t, nexo.UnreachableHost, r.Status.ErrorCondition, simworld.Describe(r))
	txs, _ := w.PPaaS.Transactions()
	require.Len(t, txs, 1)
	require.GreaterOrEqual(t, txs[0].CreateCalls, 4, "one transaction for every attempt (and the advice's replay)")
	_, err := w.PPaaS.Act(txs[0].TransactionID, "pay")
	require.NoError(t, err)
	require.Equal(t, 1, w.charges())

	require.Eventually(t, func() bool { return w.Agent.TestForwarderStats().Failures >= 2 }, 10*time.Second, 5*time.Millisecond)
	w.clearFaults()
	require.Eventually(t, func() bool {
		return strings.Contains(w.status("LOST1").Status.AdditionalResponse, "refunded at PPaaS")
	}, 10*time.Second, 10*time.Millisecond, "TransactionStatus reports the refund")
	rep := w.status("LOST1")
	require.Equal(t, nexo.Failure, rep.Status.Result, simworld.Describe(rep))
	tx := w.simTx(txs[0].ClientTransactionID)
	require.Equal(t, ppaas.Refunded, tx.Status)
	require.Equal(t, tx.PaymentAmount.Amount, tx.RefundedAmount, "refunded in full")
	require.Equal(t, 1, tx.Charges, "charged once, then refunded")
}

// With the broker down during the payment no event arrives: the agent polls
// the status endpoint and completes the payment; when the broker is back, the
// agent subscribes again.
func TestE2EBrokerDownPollingCompletesPayment(t *testing.T) {
	w := startWorld(t, func(c *agent.Config) { c.EventWait = 200 * time.Millisecond })

	done := w.payAsync("BRK1", 700)
	s := w.awaitQR()
	require.NoError(t, w.PPaaS.StopBroker())
	_, err := w.PPaaS.Act(s.TransactionID, "pay")
	require.NoError(t, err)
	r := w.answer(done, 15*time.Second)
	require.Equal(t, nexo.Success, r.Status.Result, simworld.Describe(r))
	require.Equal(t, 1, w.charges())
	states, sources := w.qrPath(r.Payment.POITransactionID.ID)
	require.Equal(t, "approved", states[len(states)-1])
	require.Equal(t, "poll", sources[len(sources)-1], "decided by polling: no event could arrive")
	require.Equal(t, nexo.Success, w.status("BRK1").Status.Result)
	require.False(t, hostReachable(w.diagnosis(), "PPaaS-MQTT"), "Diagnosis tells the broker is down")

	require.NoError(t, w.PPaaS.StartBroker())
	require.Eventually(t, func() bool { return hostReachable(w.diagnosis(), "PPaaS-MQTT") }, 20*time.Second, 20*time.Millisecond,
		"the agent subscribes again when the broker is back")
}

// Duplicated and reordered provider events make one outcome, the right one,
// decided by the events alone (polling is 30 s away).
func TestE2EDuplicateAndOutOfOrderEvents(t *testing.T) {
	w := startWorld(t, func(c *agent.Config) { c.EventWait = 30 * time.Second; c.PaymentTimeout = 60 * time.Second })
	cases := []struct {
		name   string
		faults sim.PaymentFaults
		action string
		want   nexo.Result
		cond   nexo.ErrorCondition
		path   []string // the journaled QR states
	}{
		{"duplicates approve", sim.PaymentFaults{DuplicateEvents: 2}, "pay", nexo.Success, "", []string{"created", "awaiting_consumer", "pending", "approved"}},
		{"reordered approve", sim.PaymentFaults{ReorderEvents: 1}, "pay", nexo.Success, "", []string{"created", "awaiting_consumer", "approved"}},
		{"duplicated and reordered decline", sim.PaymentFaults{DuplicateEvents: 2, ReorderEvents: 1}, "decline", nexo.Failure, nexo.Refusal, []string{"created", "awaiting_consumer", "declined"}},
		{"duplicates decline", sim.PaymentFaults{DuplicateEvents: 2}, "decline", nexo.Failure, nexo.Refusal, []string{"created", "awaiting_consumer", "pending", "declined"}},
	}
	wantCharges := 0
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w.t = t
			sid := "EV" + string(rune('A'+i))
			done := w.payAsync(sid, int64(100+i))
			s := w.awaitQR()
			w.PPaaS.SetPaymentFaults(tc.faults)
			acted := time.Now()
			_, err := w.PPaaS.Act(s.TransactionID, tc.action)
			require.NoError(t, err)
			r := w.answer(done, 10*time.Second)
			require.Less(t, time.Since(acted), 10*time.Second)
			require.Equal(t, tc.want, r.Status.Result, simworld.Describe(r))
			require.Equal(t, tc.cond, r.Status.ErrorCondition, simworld.Describe(r))
			ctid := w.simTxByQR(s.TransactionID).ClientTransactionID
			if tc.want == nexo.Success {
				wantCharges++
				require.Equal(t, ctid, r.Payment.POITransactionID.ID)
			}
			states, sources := w.qrPath(ctid)
			require.Equal(t, tc.path, states, "each state applied once, late ones ignored")
			require.Equal(t, "event", sources[len(sources)-1], "decided by the events")
			require.Equal(t, wantCharges, w.charges())
			rep := w.status(sid)
			require.Equal(t, tc.want, rep.Status.Result, simworld.Describe(rep))
		})
	}
}

// simTxByQR is the simulator's record of the transaction with a PPaaS id.
func (w *world) simTxByQR(id string) sim.SimTransaction {
	w.t.Helper()
	tx, ok := w.PPaaS.Transaction(id)
	require.True(w.t, ok, "no transaction %s at the simulator", id)
	return tx
}

// Tokens expiring while the consumer decides (and the MQTT session dropped, so
// it must come back with a fresh token) do not lose the payment.
func TestE2ETokenExpiresMidTransaction(t *testing.T) {
	w := startWorld(t, func(c *agent.Config) { c.EventWait = 300 * time.Millisecond })

	done := w.payAsync("TOK1", 4200)
	s := w.awaitQR()
	issued := w.PPaaS.Stats().TokensIssued
	w.PPaaS.ExpireTokens()
	require.NoError(t, w.PPaaS.KickDevice(w.Agent.Serial()))
	_, err := w.PPaaS.Act(s.TransactionID, "pay")
	require.NoError(t, err)
	r := w.answer(done, 15*time.Second)
	require.Equal(t, nexo.Success, r.Status.Result, simworld.Describe(r))
	require.Equal(t, 1, w.charges())
	require.Equal(t, nexo.Success, w.status("TOK1").Status.Result)
	require.Greater(t, w.PPaaS.Stats().TokensIssued, issued, "the agent authenticated again")
	_, sources := w.qrPath(r.Payment.POITransactionID.ID)
	t.Logf("decided by %s; tokens rejected: %d", sources[len(sources)-1], w.PPaaS.Stats().TokensRejected)

	// The MQTT session comes back with a fresh token (the subscriber retries
	// once the stale one is refused): the next payment is decided by its event.
	w.waitFor(20*time.Second, "MQTT subscribed again", func() bool { return hostReachable(w.diagnosis(), "PPaaS-MQTT") },
		func() string { return fmt.Sprintf("%+v", w.diagnosis().Hosts) })
	done = w.payAsync("TOK2", 4300)
	s = w.awaitQR()
	_, err = w.PPaaS.Act(s.TransactionID, "pay")
	require.NoError(t, err)
	r = w.answer(done, 15*time.Second)
	require.Equal(t, nexo.Success, r.Status.Result, simworld.Describe(r))
	_, sources = w.qrPath(r.Payment.POITransactionID.ID)
	require.Equal(t, "event", sources[len(sources)-1])
	require.Equal(t, 2, w.charges())
}

// A consumer who walks away: the agent's payment timeout cancels at PPaaS and
// the POS hears Cancel; the consumer cannot pay afterwards.
func TestE2EConsumerAbandonsTimeoutCancels(t *testing.T) {
	w := startWorld(t, func(c *agent.Config) { c.PaymentTimeout = time.Second; c.EventWait = 300 * time.Millisecond })

	done := w.payAsync("ABN1", 3000)
	s := w.awaitQR()
	_, err := w.PPaaS.Act(s.TransactionID, "abandon")
	require.NoError(t, err)
	r := w.answer(done, 15*time.Second)
	require.Equal(t, nexo.Failure, r.Status.Result, simworld.Describe(r))
	require.Equal(t, nexo.Cancel, r.Status.ErrorCondition, simworld.Describe(r))

	tx := w.simTxByQR(s.TransactionID)
	require.Equal(t, ppaas.Cancelled, tx.Status, "cancelled at PPaaS")
	_, err = w.PPaaS.Act(s.TransactionID, "pay")
	require.Error(t, err, "too late to pay")
	require.Zero(t, w.charges())
	rep := w.status("ABN1")
	require.Equal(t, nexo.Cancel, rep.Status.ErrorCondition, simworld.Describe(rep))
}

// The POS aborts while the create is still on its way (PPaaS slow): the agent
// waits for the create's answer, cancels what it created, and the POS hears
// Aborted; nothing is charged and the consumer cannot pay it.
func TestE2EAbortDuringSlowCreate(t *testing.T) {
	w := startWorld(t, nil)
	w.PPaaS.AddFault(sim.Fault{Path: "/qrcode-payment/v1/transactions", Method: "POST", Latency: 500 * time.Millisecond, Count: 1})

	done := w.payAsync("ABC1", 800)
	w.waitFor(5*time.Second, "create under way", func() bool { return len(w.faultList()) == 0 }, func() string { return "" })
	require.NoError(t, w.pos.Abort(t.Context(), "ABC1"))
	r := w.answer(done, 15*time.Second)
	require.Equal(t, nexo.Failure, r.Status.Result, simworld.Describe(r))
	require.Equal(t, nexo.Aborted, r.Status.ErrorCondition, simworld.Describe(r))

	txs, charges := w.PPaaS.Transactions()
	require.Len(t, txs, 1)
	require.Equal(t, ppaas.Cancelled, txs[0].Status, "what the slow create made is cancelled")
	_, err := w.PPaaS.Act(txs[0].TransactionID, "pay")
	require.Error(t, err)
	require.Zero(t, charges[w.Agent.Serial()])
	require.Equal(t, nexo.Aborted, w.status("ABC1").Status.ErrorCondition)
}

// The consumer pays while the agent's timeout cancel is on its way: PPaaS
// answers the cancel with "already approved", and the POS is told Success —
// the truth — rather than a cancellation of a payment that was charged.
func TestE2EConsumerPaysWhileTimeoutCancelInFlight(t *testing.T) {
	w := startWorld(t, func(c *agent.Config) { c.PaymentTimeout = time.Second })
	w.PPaaS.AddFault(sim.Fault{Path: "/qrcode-payment/v1/transactions/", Method: "POST", Latency: 700 * time.Millisecond})

	done := w.payAsync("RACE1", 1500)
	s := w.awaitQR()
	w.waitFor(10*time.Second, "timeout cancel under way", func() bool {
		f := w.faultList()
		return len(f) == 1 && f[0].Hits > 0
	}, func() string { return fmt.Sprintf("%+v", w.faultList()) })
	_, err := w.PPaaS.Act(s.TransactionID, "pay")
	require.NoError(t, err)
	r := w.answer(done, 15*time.Second)
	require.Equal(t, nexo.Success, r.Status.Result, simworld.Describe(r))
	require.Equal(t, 1, w.charges())
	require.Equal(t, ppaas.Approved, w.simTxByQR(s.TransactionID).Status, "not refunded: the POS was told Success")
	require.Equal(t, nexo.Success, w.status("RACE1").Status.Result)
}
