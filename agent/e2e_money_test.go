package agent_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/internal/testrig/worldrig"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/sim"
	simworld "github.com/termagent/termagent/sim/world"
	"github.com/termagent/termagent/store"
)

// Issue 10 items 2 and 4: the outcome of a 49.99 EUR payment is lost (every
// create answer), the consumer pays, and PPaaS answers 404 to the refund of a
// transaction it has just shown approved. Before, the 404 was read as "never
// created: no money moved" and the advice dropped (consumer charged, never
// refunded, nothing said so); then it was given up after MaxRejections, sending
// a person to refund by hand what PPaaS might still refund. Now a 404 is
// retried for as long as it takes (the review's item 4) and refunds once PPaaS
// lets it. A genuine refusal (403) is given up, loudly: TransactionStatus names
// the amount and the PPaaS id and asks for a person, Diagnosis says
// Maintenance, /readyz is degraded; `agent queue retry` (RetryDead) brings it
// back and it refunds once PPaaS lets it.
func TestE2ERefund404IsNotNeverCreatedAndDeadLetterIsLoud(t *testing.T) {
	const maxRejections = 3
	w, pos := worldrig.Start(t, func(c *simworld.WorldConfig) {
		c.AgentOptions.Forwarder.MaxRejections = maxRejections
		prev := c.AgentConfig
		c.AgentConfig = func(ac *agent.Config) {
			prev(ac)
			ac.AdminListen = "127.0.0.1:0"
		}
	})
	ww := &world{World: w, t: t, pos: pos, seen: map[string]bool{}}
	lostAndPaid := func(serviceID string) ppaas.Transaction {
		t.Helper()
		w.PPaaS.SetPaymentFaults(sim.PaymentFaults{CreateErrors: 4})
		r := ww.answer(ww.payAsync(serviceID, 4999), 15*time.Second)
		require.Equal(t, nexo.UnreachableHost, r.Status.ErrorCondition, simworld.Describe(r))
		txs, _ := w.PPaaS.Transactions()
		for _, tx := range txs {
			if tx.Order.OrderID == "ORDER-"+serviceID {
				_, err := w.PPaaS.Act(tx.TransactionID, "pay")
				require.NoError(t, err)
				return tx.Transaction
			}
		}
		t.Fatalf("no PPaaS transaction for %s", serviceID)
		return ppaas.Transaction{}
	}

	// The cancel and the refund answer 404, three times MaxRejections and
	// more: the advice stays queued; then PPaaS lets it refund.
	w.PPaaS.AddFault(sim.Fault{OrderID: "ORDER-R404", Method: "POST", Status: 404})
	lost := lostAndPaid("R404")
	ww.waitFor(30*time.Second, "the reversal refused 3×MaxRejections times", func() bool {
		return faultHits(t, w.PPaaS.ControlURL()) >= 3*maxRejections
	}, func() string { return simworld.Describe(ww.status("R404")) })
	require.Zero(t, w.Agent.TestForwarderStats().DeadByKind[store.KindAdvice], "a 404 is never given up")
	require.NotContains(t, ww.status("R404").Status.AdditionalResponse, "manual action needed")
	ww.clearFaults()
	ww.waitFor(30*time.Second, "refunded after the 404s", func() bool {
		return strings.Contains(ww.status("R404").Status.AdditionalResponse, "refunded at PPaaS")
	}, func() string { return simworld.Describe(ww.status("R404")) })
	require.Zero(t, w.Agent.TestForwarderStats().DeadByKind[store.KindAdvice], "a 404 is never given up")
	tx := ww.simTx(lost.ClientTransactionID)
	require.Equal(t, ppaas.Refunded, tx.Status)
	require.Equal(t, int64(4999), tx.RefundedAmount)

	// A refusal is given up after MaxRejections, loudly.
	w.PPaaS.AddFault(sim.Fault{OrderID: "ORDER-R403", Method: "POST", Status: 403})
	lost = lostAndPaid("R403")
	ww.waitFor(20*time.Second, "the reversal given up", func() bool {
		return strings.Contains(ww.status("R403").Status.AdditionalResponse, "manual action needed")
	}, func() string {
		return simworld.Describe(ww.status("R403"))
	})
	rep := ww.status("R403")
	require.Equal(t, nexo.Failure, rep.Status.Result, simworld.Describe(rep))
	require.NotContains(t, rep.Status.AdditionalResponse, "no money moved")
	require.Contains(t, rep.Status.AdditionalResponse, "reversal of 49.99 EUR failed at PPaaS")
	require.Contains(t, rep.Status.AdditionalResponse, lost.TransactionID)
	require.Contains(t, rep.Status.AdditionalResponse, "manual action needed")
	tx = ww.simTx(lost.ClientTransactionID)
	require.Equal(t, ppaas.Approved, tx.Status, "still charged, and the agent says so")
	require.Zero(t, tx.RefundedAmount)
	require.Equal(t, "Maintenance", ww.diagnosis().GlobalStatus)
	require.Contains(t, w.Agent.TestDegraded(), "dead letters")
	require.Equal(t, int64(1), w.Agent.TestForwarderStats().DeadByKind[store.KindAdvice])
	code, body := httpGet(t, w.Agent.AdminURL()+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "degraded")
	_, body = httpGet(t, w.Agent.AdminURL()+"/metrics")
	require.Contains(t, body, `termagent_outbox_dead_total{kind="advice"} 1`)

	// A person fixes PPaaS and retries the dead letter.
	ww.clearFaults()
	n, err := w.Agent.TestStore().RetryDead(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	ww.waitFor(10*time.Second, "refunded", func() bool {
		return strings.Contains(ww.status("R403").Status.AdditionalResponse, "refunded at PPaaS")
	}, func() string { return simworld.Describe(ww.status("R403")) })
	tx = ww.simTx(lost.ClientTransactionID)
	require.Equal(t, ppaas.Refunded, tx.Status)
	require.Equal(t, int64(4999), tx.RefundedAmount)
	require.Empty(t, w.Agent.TestDegraded())
	code, _ = httpGet(t, w.Agent.AdminURL()+"/readyz")
	require.Equal(t, http.StatusOK, code)
}

// faultHits is how many requests the simulator's HTTP faults answered.
func faultHits(t *testing.T, controlURL string) int {
	t.Helper()
	code, body := httpGet(t, controlURL+"/control/faults")
	require.Equal(t, http.StatusOK, code)
	var fs []sim.Fault
	require.NoError(t, json.Unmarshal([]byte(body), &fs))
	n := 0
	for _, f := range fs {
		n += f.Hits
	}
	return n
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// Issue 10 item 7: a PENNYMATIC payment the consumer paid (txhash present, not
// confirmed) is not cancelled at payment_timeout — before, it was, the POS was
// told "the consumer did not pay in time" and PPaaS recorded a refund owed. It
// waits for the confirmation; TransactionStatus says InProgress meanwhile, and
// the POS gets Success when the confirmation comes.
func TestE2EPaidUnconfirmedWaitsForConfirmation(t *testing.T) {
	w, pos := worldrig.Start(t, func(c *simworld.WorldConfig) {
		c.PPaaS.Payments.Providers.Pennymatic.ConfirmDelay = -1 // confirmed by the test
		prev := c.AgentConfig
		c.AgentConfig = func(ac *agent.Config) {
			prev(ac)
			ac.PaymentTimeout = time.Second
			ac.EventWait = 100 * time.Millisecond
		}
	})
	ww := &world{World: w, t: t, pos: pos, seen: map[string]bool{}}
	ch := make(chan payResult, 1)
	go func() {
		r, err := pos.Pay(context.Background(), "PM1", 320, "EUR", "PENNYMATIC")
		ch <- payResult{r, err}
	}()
	s := ww.awaitQR()
	_, err := w.PPaaS.Act(s.TransactionID, "connect")
	require.NoError(t, err)
	_, err = w.PPaaS.Act(s.TransactionID, "pay")
	require.NoError(t, err)

	// Well past the payment timeout, still waiting, not cancelled.
	paidAt := time.Now()
	ww.waitFor(10*time.Second, "payment timeout passed", func() bool { return time.Since(paidAt) > 1500*time.Millisecond }, func() string { return "" })
	st, err := pos.Status(t.Context(), "PM1")
	require.NoError(t, err)
	require.Equal(t, nexo.InProgress, st.Status.ErrorCondition, simworld.Describe(st))
	select {
	case r := <-ch:
		t.Fatalf("answered before the confirmation: %s", simworld.Describe(r.resp))
	default:
	}
	txs, _ := w.PPaaS.Transactions()
	require.Len(t, txs, 1)
	require.Equal(t, ppaas.Confirming, txs[0].Status, "not cancelled at PPaaS")

	_, err = w.PPaaS.Act(s.TransactionID, "confirm")
	require.NoError(t, err)
	r := ww.answer(ch, 10*time.Second)
	require.Equal(t, nexo.Success, r.Status.Result, simworld.Describe(r))
	require.Equal(t, nexo.Success, ww.status("PM1").Status.Result)
	tx := ww.simTx(txs[0].ClientTransactionID)
	require.Equal(t, ppaas.Approved, tx.Status)
	require.Empty(t, tx.Provider["refund"])
	require.Equal(t, 1, ww.charges())
}
