package agent_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/internal/testrig"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim"
	simworld "github.com/termagent/termagent/sim/world"
)

func postScan(t *testing.T, url, ctype, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestScanEndpoint: the terminal's scanner posts the customer's code to the
// admin listener's POST /scan; it completes the merchantscan payment waiting
// for it. Bad bodies, malformed codes and cross-site form posts are refused;
// the PaymentResponse carries the platform's MerchantID and AcquirerPOIID,
// as the TransactionStatus that repeats it does.
func TestScanEndpoint(t *testing.T) {
	w := startWorld(t, func(c *agent.Config) { c.AdminListen = "127.0.0.1:0" })
	url := w.Agent.AdminURL() + "/scan"

	code, body := postScan(t, url, "application/json", `{"code":"1111222233334444"}`)
	require.Equal(t, http.StatusConflict, code, body)
	require.Contains(t, body, "no payment is waiting")

	ch := make(chan payResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err := w.pos.Pay(ctx, "SCAN1", 1234, "EUR", "KBSCAN")
		ch <- payResult{r, err}
	}()
	testrig.WaitFor(t, 10*time.Second, "the terminal asks for the code", func() bool {
		s, ok := w.PPaaS.Terminals().Current(w.Agent.Serial())
		return ok && s.State == "awaiting_scan" && strings.Contains(s.Message, "Scan the customer's code")
	})
	for _, tc := range []struct {
		ctype, body string
		want        int
	}{
		{"application/x-www-form-urlencoded", "code=1111222233334444", http.StatusUnsupportedMediaType},
		{"text/plain", `{"code":"1111222233334444"}`, http.StatusUnsupportedMediaType},
		{"application/json", `{"code":"1111 2222"}`, http.StatusBadRequest},
		{"application/json", `{"code":""}`, http.StatusBadRequest},
		{"application/json", `{"code":"` + strings.Repeat("1", 600) + `"}`, http.StatusBadRequest},
		{"application/json", `{"code":"1","other":1}`, http.StatusBadRequest},
		{"application/json", `{"code":"` + strings.Repeat("1", 2000) + `"}`, http.StatusBadRequest},
	} {
		code, body := postScan(t, url, tc.ctype, tc.body)
		require.Equal(t, tc.want, code, "%s %.40s: %s", tc.ctype, tc.body, body)
	}
	code, body = postScan(t, url, "application/json", `{"code":"1111222233334444"}`)
	require.Equal(t, http.StatusAccepted, code, body)
	require.Contains(t, body, "clientTransactionId")

	r := w.answer(ch, 20*time.Second)
	require.Equal(t, nexo.Success, r.Status.Result, simworld.Describe(r))
	res := r.Payment.Result
	require.Equal(t, sim.SimAcquirerID, res.AcquirerID)
	require.Equal(t, "TID-"+w.Agent.Serial(), res.AcquirerPOIID)
	require.True(t, strings.HasPrefix(res.MerchantID, "MID-"), res.MerchantID)
	require.LessOrEqual(t, len(res.MerchantID), 35)
	rep := w.status("SCAN1")
	require.Equal(t, res.MerchantID, rep.Payment.Result.MerchantID, "TransactionStatus repeats the enriched response")

	// A code the POS's scanner read goes with the request; a malformed one is
	// refused before it is journaled or sent to PPaaS.
	r, err := w.pos.Client.Do(t.Context(), w.pos.ScannedPaymentRequest("SCAN2", 500, "EUR", "KBSCAN", "12\n34"))
	require.NoError(t, err)
	require.Equal(t, nexo.MessageFormat, r.Status.ErrorCondition, simworld.Describe(r))
	require.Contains(t, r.Status.AdditionalResponse, "TokenValue")
	_, charges := w.PPaaS.Transactions()
	require.Equal(t, 1, charges[w.Agent.Serial()])
}
