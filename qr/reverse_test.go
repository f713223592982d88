package qr

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/termagent/termagent/ppaas"
)

// scripted is a PPaaS whose answers a test sets per operation.
type scripted struct {
	mu      sync.Mutex
	tx      ppaas.Transaction
	answers map[string]func(w http.ResponseWriter) // "get", "cancel", "refund", "create"
	calls   map[string]int
}

func newScripted(t *testing.T, tx ppaas.Transaction) (*scripted, *Engine) {
	s := &scripted{tx: tx, answers: map[string]func(http.ResponseWriter){}, calls: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := "get"
		switch {
		case r.Method == http.MethodPost && r.URL.Path == txPath:
			op = "create"
		case strings.HasSuffix(r.URL.Path, "/cancel"):
			op = "cancel"
		case strings.HasSuffix(r.URL.Path, "/refund"):
			op = "refund"
		}
		s.mu.Lock()
		s.calls[op]++
		answer := s.answers[op]
		tx := s.tx
		s.mu.Unlock()
		if answer != nil {
			answer(w)
			return
		}
		_ = json.NewEncoder(w).Encode(tx)
	}))
	t.Cleanup(srv.Close)
	e, err := NewEngine(Config{}, NewClient(srv.Client(), srv.URL, Retry{Attempts: 1, BaseDelay: time.Millisecond}), &memRecorder{}, nopAdvisor{}, nil)
	require.NoError(t, err)
	return s, e
}

func (s *scripted) set(op string, f func(w http.ResponseWriter)) {
	s.mu.Lock()
	s.answers[op] = f
	s.mu.Unlock()
}

func status(code int, body string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}
}

func jsonBody(v any) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) { _ = json.NewEncoder(w).Encode(v) }
}

// Issue 10 item 2: a 404 from the refund or the cancel of a transaction PPaaS
// has just shown (it gave the agent its id) is no proof that no money moved:
// the reversal is not settled and no Outcome says otherwise.
func TestReverse404OnRefundOrCancelIsNotNeverCreated(t *testing.T) {
	approved := ppaas.Transaction{TransactionID: "qr-1", ClientTransactionID: "c1", Status: ppaas.Approved, PaymentAmount: ppaas.Amount{Amount: 2000, Currency: "EUR"}}
	s, e := newScripted(t, approved)
	s.set("refund", status(http.StatusNotFound, `{"error":"not_found","message":"no such transaction"}`))
	_, err := e.Reverse(t.Context(), ReverseRequest{ClientTransactionID: "c1", TransactionID: "qr-1"})
	var ae *APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, http.StatusNotFound, ae.StatusCode, "the caller sees a refusal to retry, not a settlement")

	pending := approved
	pending.Status = ppaas.AwaitingConsumer
	s, e = newScripted(t, pending)
	s.set("cancel", status(http.StatusNotFound, `{"error":"not_found"}`))
	_, err = e.Reverse(t.Context(), ReverseRequest{ClientTransactionID: "c1", TransactionID: "qr-1"})
	require.ErrorAs(t, err, &ae)

	// A status read 404 of a transaction PPaaS gave the agent an id for is
	// not "never created" either.
	s, e = newScripted(t, approved)
	s.set("get", status(http.StatusNotFound, `{"error":"not_found"}`))
	_, err = e.Reverse(t.Context(), ReverseRequest{ClientTransactionID: "c1", TransactionID: "qr-1"})
	require.ErrorAs(t, err, &ae)
}

// Shared contract 3: an asynchronous refund ("pending") is not a definitive
// answer; the reversal settles once a status read shows the amount refunded.
func TestReverseAsyncRefundSettlesOnlyWhenRefunded(t *testing.T) {
	approved := ppaas.Transaction{TransactionID: "qr-2", ClientTransactionID: "c2", Status: ppaas.Approved, PaymentAmount: ppaas.Amount{Amount: 4999, Currency: "EUR"}}
	s, e := newScripted(t, approved)
	s.set("refund", jsonBody(ppaas.Refund{RefundID: "r-1", TransactionID: "qr-2", Status: "pending", Amount: approved.PaymentAmount}))
	_, err := e.Reverse(t.Context(), ReverseRequest{ClientTransactionID: "c2", TransactionID: "qr-2"})
	require.ErrorIs(t, err, ErrNotSettled)

	// Still approved, refund still pending: asked again with the same key.
	_, err = e.Reverse(t.Context(), ReverseRequest{ClientTransactionID: "c2", TransactionID: "qr-2"})
	require.ErrorIs(t, err, ErrNotSettled)
	require.Equal(t, 2, s.calls["refund"])

	// The refund completed: the status read says so (refundedAmount covers it).
	done := approved
	done.RefundedAmount = 4999
	s.mu.Lock()
	s.tx = done
	s.mu.Unlock()
	out, err := e.Reverse(t.Context(), ReverseRequest{ClientTransactionID: "c2", TransactionID: "qr-2"})
	require.NoError(t, err)
	require.Equal(t, ppaas.Refunded, out.State)
	require.Equal(t, 2, s.calls["refund"], "no third refund once it shows refunded")

	// A cancel answered with a live state, or a payment waiting for its
	// provider's confirmation, is not settled either.
	live := approved
	live.Status = ppaas.Confirming
	_, e = newScripted(t, live)
	_, err = e.Reverse(t.Context(), ReverseRequest{ClientTransactionID: "c2", TransactionID: "qr-2"})
	require.True(t, errors.Is(err, ErrNotSettled), "%v", err)
}

// Issue 10 (reading): a create retried after an attempt that may have reached
// PPaaS (a 503) and then refused (400) is not a clean decline — the first
// attempt may have created the transaction — so the outcome is unknown and a
// reversal is queued. Before, the 400 was taken as a decline, never cancelled.
func TestCreateRefusedAfterUncertainAttemptIsUnknown(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		http.Error(w, `{"error":"invalid_request","message":"duplicate order"}`, http.StatusBadRequest)
	}))
	defer srv.Close()
	var advised atomic.Int32
	e, err := NewEngine(Config{}, NewClient(srv.Client(), srv.URL, Retry{Attempts: 2, BaseDelay: time.Millisecond}), &memRecorder{},
		advisorFunc(func(context.Context, Advice) error { advised.Add(1); return nil }), nil)
	require.NoError(t, err)
	out, err := e.Pay(t.Context(), PaymentRequest{Brand: "KB", Amount: ppaas.Amount{Amount: 100, Currency: "EUR"}})
	require.NoError(t, err)
	require.Equal(t, ResultUnknown, out.Result)
	require.Equal(t, int32(1), advised.Load(), "a reversal makes sure nothing stands")

	// A refusal at the first attempt is a clean decline.
	calls.Store(1)
	out, err = e.Pay(t.Context(), PaymentRequest{Brand: "KB", Amount: ppaas.Amount{Amount: 100, Currency: "EUR"}})
	require.Error(t, err)
	require.Equal(t, ResultDeclined, out.Result)
}

// Issue 10 item 7: a payment the consumer has paid (confirming) is not
// cancelled at the payment timeout: it waits for the provider's confirmation
// and ends approved when it comes; past the provider's bound the outcome is
// unknown (a reversal refunds it once confirmed), never "did not pay in time".
func TestConfirmingIsNotCancelledByTheTimeout(t *testing.T) {
	for _, tc := range []struct {
		name        string
		confirmedAt int32 // status read that says approved; 0: never
		want        Result
	}{
		{"confirmed after the timeout", 8, ResultApproved},
		{"never confirmed within the bound", 0, ResultUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gets, cancels atomic.Int32
			confirming := map[string]any{"transactionId": "qr-8", "clientTransactionId": "c8", "status": "confirming",
				"paymentAmount": map[string]any{"amount": 100, "currency": "EUR"}}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch {
				case r.Method == http.MethodPost && r.URL.Path == txPath:
					_ = json.NewEncoder(w).Encode(map[string]any{"transactionId": "qr-8", "clientTransactionId": "c8", "status": "awaiting_consumer"})
				case strings.HasSuffix(r.URL.Path, "/cancel"):
					cancels.Add(1)
					w.WriteHeader(http.StatusConflict)
					_ = json.NewEncoder(w).Encode(map[string]any{"error": "already_decided", "transaction": confirming})
				default:
					if n := gets.Add(1); tc.confirmedAt > 0 && n >= tc.confirmedAt {
						approved := map[string]any{"transactionId": "qr-8", "status": "approved", "paymentAmount": map[string]any{"amount": 100, "currency": "EUR"}}
						_ = json.NewEncoder(w).Encode(approved)
						return
					}
					_ = json.NewEncoder(w).Encode(confirming)
				}
			}))
			defer srv.Close()
			var advised atomic.Int32
			e, err := NewEngine(Config{Timeout: 30 * time.Millisecond, PollAfter: 10 * time.Millisecond, PollMax: 10 * time.Millisecond,
				ConfirmTimeouts: map[string]time.Duration{"KB": 300 * time.Millisecond}},
				NewClient(srv.Client(), srv.URL, Retry{Attempts: 1}), &memRecorder{},
				advisorFunc(func(context.Context, Advice) error { advised.Add(1); return nil }), nil)
			require.NoError(t, err)
			out, err := e.Pay(t.Context(), PaymentRequest{Brand: "KB", Amount: ppaas.Amount{Amount: 100, Currency: "EUR"}, ClientTransactionID: "c8"})
			require.NoError(t, err)
			require.Equal(t, tc.want, out.Result, "%+v", out)
			require.Zero(t, cancels.Load(), "a paid payment is never cancelled")
			if tc.want == ResultUnknown {
				require.Contains(t, out.Reason, "not confirmed")
				require.Equal(t, int32(1), advised.Load())
			}
		})
	}
}

// Where is the one way to ask where a payment stands at PPaaS (Reverse and
// the agent's recovery use it): a status read when its id is known, a
// replayed create otherwise, and an error without either, calling nothing.
func TestWhereReadsOrReplaysTheCreate(t *testing.T) {
	s, e := newScripted(t, ppaas.Transaction{TransactionID: "qr-1", ClientTransactionID: "c-1", Status: ppaas.Approved,
		PaymentType: "KB", PaymentScenario: ppaas.ConsumerScan, PaymentAmount: ppaas.Amount{Amount: 100, Currency: "EUR"}})
	ctx := context.Background()
	got, err := e.Where(ctx, "qr-1", ppaas.CreateRequest{})
	require.NoError(t, err)
	require.Equal(t, ppaas.Approved, got.Status)
	create := ppaas.CreateRequest{PaymentType: "KB", PaymentScenario: ppaas.ConsumerScan, ClientTransactionID: "c-1",
		PaymentAmount: ppaas.Amount{Amount: 100, Currency: "EUR"}, Order: ppaas.Order{OrderID: "o-1"}}
	got, err = e.Where(ctx, "", create)
	require.NoError(t, err)
	require.Equal(t, "qr-1", got.TransactionID)
	_, err = e.Where(ctx, "", ppaas.CreateRequest{})
	require.ErrorIs(t, err, errNoReference)
	s.mu.Lock()
	defer s.mu.Unlock()
	require.Equal(t, map[string]int{"get": 1, "create": 1}, s.calls)
}

// Review: a reversal given a PPaaS id that belongs to another payment (an
// event naming the wrong transaction) would refund that payment. Reverse
// refuses: nothing is cancelled or refunded.
func TestReverseRefusesAnotherPaymentsTransaction(t *testing.T) {
	other := ppaas.Transaction{TransactionID: "qr-9", ClientTransactionID: "someone-else", Status: ppaas.Approved, PaymentAmount: ppaas.Amount{Amount: 700, Currency: "EUR"}}
	s, e := newScripted(t, other)
	_, err := e.Reverse(t.Context(), ReverseRequest{ClientTransactionID: "c1", TransactionID: "qr-9"})
	require.ErrorIs(t, err, ErrWrongTransaction)
	require.Zero(t, s.calls["refund"])
	require.Zero(t, s.calls["cancel"])
}
