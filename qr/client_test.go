package qr

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/termagent/termagent/ppaas"
)

var fastRetry = Retry{Attempts: 4, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, PerAttempt: 2 * time.Second}

func testCreate() ppaas.CreateRequest {
	return ppaas.CreateRequest{PaymentType: "KB", PaymentScenario: ppaas.ConsumerScan, ClientTransactionID: "c1",
		PaymentAmount: ppaas.Amount{Amount: 2000, Currency: "EUR"}, Order: ppaas.Order{OrderID: "o1"}}
}

func TestClientCreateRetriesWithSameClientTransactionID(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "POST", r.Method)
		require.Equal(t, "/qrcode-payment/v1/transactions", r.URL.Path)
		var req ppaas.CreateRequest
		require.NoError(t, json.NewDecoder(r.Body).Decode(&req))
		mu.Lock()
		seen = append(seen, req.ClientTransactionID)
		n := len(seen)
		mu.Unlock()
		if n < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(ppaas.Transaction{TransactionID: "t1", ClientTransactionID: req.ClientTransactionID, Status: ppaas.AwaitingConsumer})
	}))
	defer srv.Close()
	c := NewClient(srv.Client(), srv.URL+"/", fastRetry)
	tx, err := c.Create(t.Context(), testCreate())
	require.NoError(t, err)
	require.Equal(t, "t1", tx.TransactionID)
	require.Equal(t, []string{"c1", "c1", "c1"}, seen)
}

func TestClientErrors(t *testing.T) {
	var calls int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		switch r.URL.Path {
		case "/qrcode-payment/v1/transactions/bad":
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = w.Write([]byte(`{"error":"unsupported_payment_type","message":"no"}`))
		case "/qrcode-payment/v1/transactions/done/cancel":
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(`{"error":"already_decided","message":"approved","transaction":{"transactionId":"done","status":"approved"}}`))
		case "/qrcode-payment/v1/transactions/down":
			w.WriteHeader(http.StatusBadGateway)
		case "/qrcode-payment/v1/transactions/garbage":
			_, _ = w.Write([]byte(`<html>`))
		}
	}))
	defer srv.Close()
	c := NewClient(srv.Client(), srv.URL, fastRetry)
	ctx := t.Context()

	_, err := c.Get(ctx, "bad")
	var ae *APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, 422, ae.StatusCode)
	require.Equal(t, "unsupported_payment_type", ae.Code)
	require.Equal(t, 1, calls, "4xx is not retried")

	_, err = c.Cancel(ctx, "done")
	require.ErrorAs(t, err, &ae)
	require.Equal(t, ppaas.Approved, ae.Transaction.Status)

	calls = 0
	_, err = c.Get(ctx, "down")
	require.ErrorIs(t, err, ErrUnreachable)
	require.Equal(t, 4, calls)

	_, err = c.Get(ctx, "garbage")
	require.ErrorContains(t, err, "decode transaction")

	srv.Close()
	_, err = c.Get(ctx, "x")
	require.ErrorIs(t, err, ErrUnreachable, "connection refused is an unknown outcome")

	_, err = c.Create(ctx, ppaas.CreateRequest{})
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrUnreachable)
}

func TestClientStopsRetryingWhenContextEnds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c := NewClient(srv.Client(), srv.URL, Retry{Attempts: 100, BaseDelay: 50 * time.Millisecond, MaxDelay: time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Get(ctx, "x")
	require.ErrorIs(t, err, ErrUnreachable)
	require.Less(t, time.Since(start), 2*time.Second)
}

// TestClientCreateRefusalHidesTheScannedCode: a refusal of a merchantscan
// create that quotes the consumer's code (its text reaches the logs and the
// POS) names it without its value.
func TestClientCreateRefusalHidesTheScannedCode(t *testing.T) {
	const code = "281666027690188713769014"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = w.Write([]byte(`{"error":"bad_code_` + code + `","message":"scannedPaymentId ` + code + ` is expired"}`))
	}))
	defer srv.Close()
	req := testCreate()
	req.PaymentScenario, req.ScannedPaymentID = ppaas.MerchantScan, code
	_, err := NewClient(srv.Client(), srv.URL, fastRetry).Create(t.Context(), req)
	var ae *APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, "scannedPaymentId [scanned code] is expired", ae.Message)
	require.NotContains(t, err.Error(), code)
}

// wrapped is a RoundTripper net/http does not know, as the agent's
// (mtls.Transport, which adds the bearer token).
type wrapped struct{ base http.RoundTripper }

func (w wrapped) RoundTrip(r *http.Request) (*http.Response, error) { return w.base.RoundTrip(r) }

// A PPaaS call runs under its attempt's deadline; the http.Client's longer
// Timeout only made net/http start a goroutine and a timer per request (on
// the payment's path, for a RoundTripper it does not know) and is dropped,
// without touching the caller's client. A shorter Timeout still bounds the
// call.
func TestClientAttemptDeadlineReplacesLongerClientTimeout(t *testing.T) {
	watchers := make(chan bool, 1)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == txPath+"/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		buf := make([]byte, 1<<20)
		watchers <- strings.Contains(string(buf[:runtime.Stack(buf, true)]), "net/http.setRequestCancel")
		_ = json.NewEncoder(w).Encode(ppaas.Transaction{TransactionID: "t1", ClientTransactionID: "c1", Status: ppaas.AwaitingConsumer})
	}))
	defer srv.Close()
	defer close(release)

	hc := srv.Client()
	hc.Transport, hc.Timeout = wrapped{hc.Transport}, time.Minute
	c := NewClient(hc, srv.URL, fastRetry)
	_, err := c.Create(t.Context(), testCreate())
	require.NoError(t, err)
	require.False(t, <-watchers, "no per-request timeout goroutine while the create is in flight")
	require.Equal(t, time.Minute, hc.Timeout, "the caller's client is not changed")

	short := srv.Client()
	short.Transport, short.Timeout = wrapped{short.Transport}, 50*time.Millisecond
	c = NewClient(short, srv.URL, Retry{Attempts: 1, PerAttempt: time.Hour})
	began := time.Now()
	_, err = c.Get(t.Context(), "slow")
	require.ErrorIs(t, err, ErrUnreachable)
	require.Less(t, time.Since(began), 30*time.Second, "the shorter Client.Timeout still bounds the call")
}

// A create's body is PPaaS's wire: written without encoding/json, it must be
// its bytes exactly.
func TestMarshalCreateIsJSONMarshal(t *testing.T) {
	for _, r := range []ppaas.CreateRequest{
		{},
		testCreate(),
		{PaymentType: "KB", PaymentScenario: ppaas.MerchantScan, ScannedPaymentID: "281012345678901234", ClientTransactionID: "c<&>",
			PaymentAmount: ppaas.Amount{Amount: -1, Currency: "\xff"}, Order: ppaas.Order{OrderID: "o\n1", OrderDescription: "basket \"77\" \u2028"}},
	} {
		want, err := json.Marshal(r)
		require.NoError(t, err)
		require.Equal(t, string(want), string(marshalCreate(r)))
	}
}

func FuzzMarshalCreate(f *testing.F) {
	f.Add("KB", "consumerscan", "", "c1", int64(2000), "EUR", "o1", "")
	f.Add("<", "\xff", "12", "\u2029", int64(-5), "", "", "d")
	f.Fuzz(func(t *testing.T, pt, sc, scanned, ctid string, amount int64, cur, order, desc string) {
		r := ppaas.CreateRequest{PaymentType: pt, PaymentScenario: ppaas.Scenario(sc), ScannedPaymentID: scanned, ClientTransactionID: ctid,
			PaymentAmount: ppaas.Amount{Amount: amount, Currency: cur}, Order: ppaas.Order{OrderID: order, OrderDescription: desc}}
		want, err := json.Marshal(r)
		require.NoError(t, err)
		require.Equal(t, string(want), string(marshalCreate(r)))
	})
}

// The hostile review: PPaaS's error text reached the POS ("refused by
// PPaaS: …") and the journal (the declined transition's reason) at whatever
// length PPaaS wrote it. An error body's code, message and transaction are
// bounded as the ppaas decoder bounds a transaction's text.
func TestClientErrorTextIsBounded(t *testing.T) {
	huge := strings.Repeat("é", 100_000) // 200,000 bytes, four times within the 1 MiB the client reads
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusConflict)
		_, _ = w.Write([]byte(`{"error":"` + huge + `","message":"` + huge + `","transaction":{"transactionId":"done","status":"approved","statusReason":"` + huge + `","providerReference":"` + huge + `"}}`))
	}))
	defer srv.Close()
	c := NewClient(srv.Client(), srv.URL, fastRetry)
	_, err := c.Cancel(t.Context(), "done")
	var ae *APIError
	require.ErrorAs(t, err, &ae)
	require.LessOrEqual(t, len(ae.Code), ppaas.MaxIDLen+len("…"))
	require.LessOrEqual(t, len(ae.Message), ppaas.MaxTextLen+len("…"))
	require.LessOrEqual(t, len(ae.Transaction.StatusReason), ppaas.MaxTextLen+len("…"))
	require.LessOrEqual(t, len(ae.Transaction.ProviderReference), ppaas.MaxReferenceLen+len("…"))
	require.Less(t, len(err.Error()), 1024)
	require.True(t, strings.HasPrefix(ae.Message, "éé"))
}
