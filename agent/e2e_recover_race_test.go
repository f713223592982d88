package agent_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/sim"
	simworld "github.com/termagent/termagent/sim/world"
)

// A POS that pays as soon as it hears Initialised (sent before restart
// recovery runs) must not have its live payment taken for one a previous run
// left unfinished: recovery would journal it as "interrupted by an agent
// restart" and queue a reversal that cancels (or refunds) what the POS is
// being told succeeded.
func TestE2EPaymentStartedBeforeRecoveryIsNotRecovered(t *testing.T) {
	initialised := make(chan struct{}, 1)
	release := make(chan struct{})
	posSrv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if bytes.Contains(b, []byte(`"Initialised"`)) {
			initialised <- struct{}{}
			select { // hold the notification until the payment is under way
			case <-release:
			case <-time.After(4 * time.Second):
			}
		}
	}))
	defer posSrv.Close()
	defer close(release)
	w := startWorld(t, func(c *agent.Config) { c.POSEventURL = posSrv.URL + "/events" })

	select {
	case <-initialised:
	case <-time.After(10 * time.Second):
		t.Fatal("no Initialised event")
	}
	done := w.payAsync("EARLY1", 700)
	s := w.awaitQR()
	release <- struct{}{}
	select { // recovery runs now: a reversal it wrongly queued would be in the outbox or carried out once it is done
	case <-w.Agent.Recovered():
	case <-time.After(10 * time.Second):
		t.Fatal("restart recovery did not finish")
	}
	noReversal := func() {
		t.Helper()
		tx := w.simTxByQR(s.TransactionID)
		queued, err := w.Agent.TestAdviceQueued(t.Context(), tx.ClientTransactionID)
		require.NoError(t, err)
		require.False(t, queued, "no reversal of the live payment queued")
	}
	noReversal()
	require.Equal(t, ppaas.AwaitingConsumer, w.simTxByQR(s.TransactionID).Status, "the live payment was not cancelled")
	_, err := w.PPaaS.Act(s.TransactionID, "pay")
	require.NoError(t, err)
	r := w.answer(done, 15*time.Second)
	require.Equal(t, nexo.Success, r.Status.Result, simworld.Describe(r))
	noReversal()
	require.Equal(t, ppaas.Approved, w.simTxByQR(s.TransactionID).Status, "not refunded behind the POS's back")
	require.Equal(t, 1, w.charges())
	require.Equal(t, nexo.Success, w.status("EARLY1").Status.Result)
}

// The consumer pays while the cancel of a POS Abort is on its way and PPaaS is
// slow to answer it (longer than the Nexo server's default abort grace): the
// POS must be told Success — the truth — not Aborted for a charged payment.
func TestE2EConsumerPaysWhileSlowAbortCancelInFlight(t *testing.T) {
	w := startWorld(t, nil)
	done := w.payAsync("SLOWAB1", 1500)
	s := w.awaitQR()
	w.PPaaS.AddFault(sim.Fault{Path: "/qrcode-payment/v1/transactions/", Method: "POST", Latency: 7 * time.Second, Count: 1})
	require.NoError(t, w.pos.Abort(t.Context(), "SLOWAB1"))
	w.waitFor(10*time.Second, "abort cancel under way", func() bool {
		f := w.faultList()
		return len(f) == 0 || f[0].Hits > 0
	}, func() string { return "" })
	_, err := w.PPaaS.Act(s.TransactionID, "pay")
	require.NoError(t, err)
	r := w.answer(done, 30*time.Second)
	require.Equal(t, 1, w.charges())
	require.Equal(t, ppaas.Approved, w.simTxByQR(s.TransactionID).Status)
	require.Equal(t, nexo.Success, r.Status.Result, simworld.Describe(r))
	require.Equal(t, nexo.Success, w.status("SLOWAB1").Status.Result)
}
