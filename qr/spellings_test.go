package qr

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/ppaas"
)

// spellingPPaaS answers every read of transaction t1 in the platform's own
// spellings: status is what it says, refund what a refund answer says.
func spellingPPaaS(t *testing.T, status, refund string) *httptest.Server {
	tx := func() map[string]any {
		return map[string]any{"transactionId": "t1", "clientTransactionId": "c1", "status": status, "sequence": 2,
			"paymentType": "KB", "paymentScenario": "consumerscan", "paymentAmount": map[string]any{"amount": 100, "currency": "EUR"}}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == txPath:
			_ = json.NewEncoder(w).Encode(map[string]any{"transactions": []any{tx()}})
		case r.Method == http.MethodGet:
			_ = json.NewEncoder(w).Encode(tx())
		case strings.HasSuffix(r.URL.Path, "/cancel"):
			w.WriteHeader(http.StatusConflict)
			_ = json.NewEncoder(w).Encode(map[string]any{"error": "not_cancellable", "transaction": tx()})
		case strings.HasSuffix(r.URL.Path, "/refund"):
			_ = json.NewEncoder(w).Encode(map[string]any{"refundId": "rf-1", "clientRefundId": "c1-r", "transactionId": "t1", "status": refund,
				"amount": map[string]any{"amount": 100, "currency": "EUR"}})
		default: // create
			_ = json.NewEncoder(w).Encode(tx())
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Every answer the client reads takes the platform's configured spellings:
// the poll and the listing used to decode with none, so a poll answered
// AUTHORIZED (configured approved) read as pending, uncounted.
func TestClientReadsConfiguredSpellingsEverywhere(t *testing.T) {
	reads := map[string]func(c *Client) (ppaas.Transaction, error){
		"create": func(c *Client) (ppaas.Transaction, error) { return c.Create(t.Context(), testCreate()) },
		"get":    func(c *Client) (ppaas.Transaction, error) { return c.Get(t.Context(), "t1") },
		"poll": func(c *Client) (ppaas.Transaction, error) {
			tx, _, err := c.Poll(t.Context(), "t1")
			return tx, err
		},
		"list": func(c *Client) (ppaas.Transaction, error) {
			p, err := c.List(t.Context(), time.Now().Add(-time.Hour), time.Now(), "", 10)
			if err != nil || len(p.Transactions) != 1 {
				return ppaas.Transaction{}, err
			}
			return p.Transactions[0], nil
		},
		"cancel refused": func(c *Client) (ppaas.Transaction, error) {
			_, err := c.Cancel(t.Context(), "t1")
			var ae *APIError
			if !errors.As(err, &ae) || ae.Transaction == nil {
				return ppaas.Transaction{}, err
			}
			return *ae.Transaction, nil
		},
	}
	for name, read := range reads {
		t.Run(name, func(t *testing.T) {
			srv := spellingPPaaS(t, "AUTHORIZED", "refunded")
			s, err := ppaas.ParseStatuses("AUTHORIZED=approved")
			require.NoError(t, err)
			tx, err := read(NewClient(srv.Client(), srv.URL, fastRetry).WithStatuses(s))
			require.NoError(t, err)
			require.Equal(t, ppaas.Approved, tx.Status)
			require.Equal(t, "AUTHORIZED", tx.RawStatus)
			require.Zero(t, s.UnknownCount())

			// An unknown spelling is pending, counted and reported, as on the
			// create path.
			srv = spellingPPaaS(t, "AUTHORISING", "refunded")
			var reported []string
			s.OnUnknown = func(raw string) { reported = append(reported, raw) }
			tx, err = read(NewClient(srv.Client(), srv.URL, fastRetry).WithStatuses(s))
			require.NoError(t, err)
			require.Equal(t, ppaas.Pending, tx.Status)
			require.EqualValues(t, 1, s.UnknownCount())
			require.Equal(t, []string{"AUTHORISING"}, reported)
		})
	}
}

// A refund answered in a configured spelling of refunded is done; the
// refund's own words are kept as sent and not counted as unknown.
func TestClientRefundReadsConfiguredSpellings(t *testing.T) {
	s, err := ppaas.ParseStatuses("REFUNDED=refunded, REFUSED=declined")
	require.NoError(t, err)
	for _, c := range []struct {
		raw, status string
		done        bool
	}{
		{"refunded", "refunded", true},
		{"REFUNDED", "refunded", true},
		{"Refused", "declined", false},
		{"pending", "pending", false},
		{"failed", "failed", false},
		{"PROCESSING", "PROCESSING", false},
	} {
		srv := spellingPPaaS(t, "approved", c.raw)
		ref, err := NewClient(srv.Client(), srv.URL, fastRetry).WithStatuses(s).Refund(t.Context(), "t1",
			ppaas.RefundRequest{ClientRefundID: "c1-r", Amount: ppaas.Amount{Amount: 100, Currency: "EUR"}})
		require.NoError(t, err, c.raw)
		require.Equal(t, c.status, ref.Status, c.raw)
		require.Equal(t, c.raw, ref.RawStatus)
		require.Equal(t, c.done, ref.Done(), c.raw)
	}
	require.Zero(t, s.UnknownCount(), "a refund's own words are not unknown transaction statuses")

	// Without spellings our own word is read in any case: done.
	srv := spellingPPaaS(t, "approved", "REFUNDED")
	ref, err := NewClient(srv.Client(), srv.URL, fastRetry).Refund(t.Context(), "t1",
		ppaas.RefundRequest{ClientRefundID: "c1-r", Amount: ppaas.Amount{Amount: 100, Currency: "EUR"}})
	require.NoError(t, err)
	require.Equal(t, ppaas.RefundDone, ref.Status)
	require.True(t, ref.Done())
	srv = spellingPPaaS(t, "approved", "PROCESSING")
	ref, err = NewClient(srv.Client(), srv.URL, fastRetry).Refund(t.Context(), "t1",
		ppaas.RefundRequest{ClientRefundID: "c1-r", Amount: ppaas.Amount{Amount: 100, Currency: "EUR"}})
	require.NoError(t, err)
	require.Equal(t, "PROCESSING", ref.Status, "any other word is kept as sent")
	require.False(t, ref.Done())
}

// With no broker, polling is the event source: an approval the platform
// spells its own way (configured) ends the payment approved at the poll,
// not at the timeout's refused cancel.
func TestPollingReadsAConfiguredApproval(t *testing.T) {
	var mu sync.Mutex
	var cancels int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx := map[string]any{"transactionId": "t1", "clientTransactionId": "c1", "status": "AUTHORIZED", "sequence": 2,
			"paymentAmount": map[string]any{"amount": 100, "currency": "EUR"}}
		switch {
		case r.Method == http.MethodPost && r.URL.Path == txPath:
			tx["status"], tx["sequence"] = "WAITING_FOR_SCAN", 1
		case r.Method == http.MethodPost: // the timeout's cancel: refused, approved
			mu.Lock()
			cancels++
			mu.Unlock()
			w.WriteHeader(http.StatusConflict)
			_ = json.NewEncoder(w).Encode(map[string]any{"error": "not_cancellable", "transaction": tx})
			return
		}
		_ = json.NewEncoder(w).Encode(tx)
	}))
	t.Cleanup(srv.Close)
	s, err := ppaas.ParseStatuses("AUTHORIZED=approved, WAITING_FOR_SCAN=awaiting_consumer")
	require.NoError(t, err)
	e, err := NewEngine(Config{PollAfter: time.Hour, PollFirst: 20 * time.Millisecond, PushEvents: func() bool { return false }, Timeout: 3 * time.Second},
		NewClient(srv.Client(), srv.URL, fastRetry).WithStatuses(s), &memRecorder{}, nopAdvisor{}, nil)
	require.NoError(t, err)
	start := time.Now()
	o, err := e.Pay(t.Context(), PaymentRequest{Brand: "KB", Amount: ppaas.Amount{Amount: 100, Currency: "EUR"}, ClientTransactionID: "c1"})
	require.NoError(t, err)
	require.Equal(t, ResultApproved, o.Result)
	require.Less(t, time.Since(start), 2*time.Second, "learnt at the poll, not at the timeout")
	mu.Lock()
	defer mu.Unlock()
	require.Zero(t, cancels, "an approved payment was cancelled at its timeout")
	require.Zero(t, s.UnknownCount())
}
