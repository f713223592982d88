package world_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/display"
	"github.com/termagent/termagent/internal/testrig/worldrig"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim/world"
)

func startWorld(t *testing.T, mod func(*world.WorldConfig)) (*world.World, *world.POS) {
	t.Helper()
	return worldrig.Start(t, mod)
}

// awaitScreen waits for the virtual terminal to show a state.
func awaitScreen(t *testing.T, w *world.World, state string) display.Screen {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	for s := range w.PPaaS.Terminals().Watch(ctx, w.Agent.Serial()) {
		if s.State == state {
			return s
		}
	}
	t.Fatalf("terminal never showed %q", state)
	return display.Screen{}
}

type payResult struct {
	resp *nexo.Response
	err  error
}

func payAsync(t *testing.T, pos *world.POS, req *nexo.Request) <-chan payResult {
	ch := make(chan payResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		r, err := pos.Client.Do(ctx, req)
		ch <- payResult{r, err}
	}()
	return ch
}

func TestWorldQRPaymentApprovedEndToEnd(t *testing.T) {
	w, pos := startWorld(t, nil)
	req := pos.PaymentRequest("S1", 2000, "EUR", "KB")
	done := payAsync(t, pos, req)

	s := awaitScreen(t, w, "awaiting_consumer")
	require.NotEmpty(t, s.QRPayload, "the terminal shows the provider's QR")
	require.NotEmpty(t, s.QRPNG)
	require.Equal(t, int64(2000), s.Amount)
	require.NotEmpty(t, s.TransactionID)
	_, err := w.PPaaS.Act(s.TransactionID, "pay")
	require.NoError(t, err)

	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, nexo.Success, r.resp.Status.Result, world.Describe(r.resp))
	require.NotNil(t, r.resp.Payment.Result)
	require.Equal(t, int64(2000), r.resp.Payment.Result.AuthorizedAmount.Minor)
	require.Equal(t, "KB", r.resp.Payment.Result.Brand)
	require.NotEmpty(t, r.resp.Payment.Result.ProviderReference)
	poiTx := r.resp.Payment.POITransactionID.ID
	require.NotEmpty(t, poiTx)
	awaitScreen(t, w, "approved")

	// A POS that lost the response asks TransactionStatus instead of paying again.
	st, err := pos.Status(t.Context(), "S1")
	require.NoError(t, err)
	require.Equal(t, nexo.Success, st.Status.Result, world.Describe(st))
	require.NotNil(t, st.TransactionStatus.Repeated)
	require.Equal(t, poiTx, st.TransactionStatus.Repeated.Payment.POITransactionID.ID)

	// An identical retry of the same ServiceID replays, it does not charge again.
	again, err := pos.Client.Do(t.Context(), req)
	require.NoError(t, err)
	require.Equal(t, poiTx, again.Payment.POITransactionID.ID)
	_, charges := w.PPaaS.Transactions()
	require.Equal(t, 1, charges[w.Agent.Serial()], "exactly one charge")

	// The platform hears of the outcome through the agent's outbox, once.
	require.Eventually(t, func() bool {
		evs, _ := w.PPaaS.Ingested()
		for _, e := range evs {
			if e.Kind == "transaction-result" && strings.Contains(string(e.Payload), poiTx) && strings.Contains(string(e.Payload), `"result":"Success"`) {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond, "transaction result delivered to PPaaS")

	// Another POS on this POI cannot reverse it.
	other := &world.POS{Client: pos.Client, POIID: pos.POIID, SaleID: "POS2"}
	rev, err := other.Reverse(t.Context(), poiTx, "MerchantCancel")
	require.NoError(t, err)
	require.Equal(t, nexo.NotFound, rev.Status.ErrorCondition, world.Describe(rev))

	// Reversal refunds it.
	rev, err = pos.Reverse(t.Context(), poiTx, "MerchantCancel")
	require.NoError(t, err)
	require.Equal(t, nexo.Success, rev.Status.Result, world.Describe(rev))
}

func TestWorldDeclineAbortAndDiagnosis(t *testing.T) {
	w, pos := startWorld(t, func(c *world.WorldConfig) {
		prev := c.AgentConfig
		c.AgentConfig = func(ac *agent.Config) { prev(ac); ac.AdminListen = "127.0.0.1:0" }
	})

	done := payAsync(t, pos, pos.PaymentRequest("D1", 1500, "EUR", "KB"))
	s := awaitScreen(t, w, "awaiting_consumer")
	_, err := w.PPaaS.Act(s.TransactionID, "decline")
	require.NoError(t, err)
	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, nexo.Failure, r.resp.Status.Result)
	require.Equal(t, nexo.Refusal, r.resp.Status.ErrorCondition, world.Describe(r.resp))
	declined := r.resp.Payment.POITransactionID.ID
	st, err := pos.Status(t.Context(), "D1")
	require.NoError(t, err)
	require.Equal(t, declined, st.TransactionStatus.Repeated.Payment.POITransactionID.ID)
	_, err = uuid.Parse(declined)
	require.NoError(t, err, "a failed payment names the journaled POI transaction, %q", declined)

	done = payAsync(t, pos, pos.PaymentRequest("A1", 1500, "EUR", "KB"))
	awaitScreen(t, w, "awaiting_consumer")
	require.NoError(t, pos.Abort(t.Context(), "A1"))
	r = <-done
	require.NoError(t, r.err)
	require.Equal(t, nexo.Aborted, r.resp.Status.ErrorCondition, world.Describe(r.resp))
	txs, _ := w.PPaaS.Transactions()
	var cancelled int
	for _, tx := range txs {
		if tx.Status == "cancelled" {
			cancelled++
		}
	}
	require.Equal(t, 1, cancelled, "the aborted payment was cancelled at PPaaS")

	d, err := pos.Diagnosis(t.Context())
	require.NoError(t, err)
	require.Equal(t, nexo.Success, d.Status.Result, world.Describe(d))
	require.NotEmpty(t, d.Diagnosis.Hosts)
	for _, h := range d.Diagnosis.Hosts {
		require.True(t, h.Reachable, "%s reachable", h.AcquirerID)
	}

	admin := w.Agent.AdminURL()
	require.NotEmpty(t, admin)
	code, _ := get(t, admin+"/readyz")
	require.Equal(t, http.StatusOK, code)
	// The POS's answer is flushed before the agent observes the request
	// (nexo serveNexo): the last one shows in the metrics just after.
	var body string
	require.Eventually(t, func() bool {
		code, body = get(t, admin+"/metrics")
		return code == http.StatusOK && strings.Contains(body, `termagent_nexo_request_duration_seconds_bucket{category="Diagnosis"`)
	}, 5*time.Second, 5*time.Millisecond)
	for _, want := range []string{
		`termagent_nexo_requests_total{category="Payment",condition="Refusal",result="Failure"} 1`,
		`termagent_nexo_requests_total{category="Payment",condition="Aborted",result="Failure"} 1`,
		`termagent_apm_transactions_total{outcome="declined",payment_type="KB"} 1`,
		`termagent_nexo_request_duration_seconds_bucket{category="Diagnosis"`,
		"termagent_token_refreshes_total 1",
		"termagent_mqtt_connected 1",
		"termagent_outbox_depth ",
	} {
		require.Contains(t, body, want)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestWorldNotifiesThePOS(t *testing.T) {
	got := make(chan string, 8)
	posSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	}))
	defer posSrv.Close()
	w, _ := startWorld(t, func(c *world.WorldConfig) {
		prev := c.AgentConfig
		c.AgentConfig = func(ac *agent.Config) { prev(ac); ac.POSEventURL = posSrv.URL + "/events" }
	})
	select {
	case body := <-got:
		require.Contains(t, body, `"EventToNotify":"Initialised"`)
		require.Contains(t, body, `"POIID":"`+w.Agent.POIID()+`"`)
	case <-time.After(10 * time.Second):
		t.Fatal("no Initialised event")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	require.NoError(t, w.StopAgent(ctx))
	select {
	case body := <-got:
		require.Contains(t, body, `"EventToNotify":"Shutdown"`)
	case <-time.After(10 * time.Second):
		t.Fatal("no Shutdown event")
	}
}
