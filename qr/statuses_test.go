package qr

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Issue 10 item 8: a status spelling the agent does not know is a pending
// state (keep polling), reported once per spelling and counted — before it was
// a decode error, i.e. an unknown outcome with a reversal that could never
// resolve. Configured spellings map to the state they name.
func TestStatusesTolerantDecoding(t *testing.T) {
	var reported []string
	s, err := ParseStatuses("AUTHORIZED=approved, Refused=declined")
	require.NoError(t, err)
	s.OnUnknown = func(raw string) { reported = append(reported, raw) }

	tx, err := s.DecodeTransaction([]byte(`{"transactionId":"x","status":"authorized"}`))
	require.NoError(t, err)
	require.Equal(t, Approved, tx.Status)
	require.Equal(t, "authorized", tx.RawStatus)
	for range 3 {
		ev, err := s.DecodeEvent([]byte(`{"eventId":"e","transactionId":"x","status":"PENDING_REVIEW"}`))
		require.NoError(t, err)
		require.Equal(t, Pending, ev.Status)
	}
	ev, err := s.DecodeEvent([]byte(`{"eventId":"e","transactionId":"x","status":"unknown"}`))
	require.NoError(t, err)
	require.Equal(t, Pending, ev.Status, "the agent-only state is not a PPaaS answer")
	require.Equal(t, []string{"PENDING_REVIEW", "unknown"}, reported, "logged once per spelling")
	require.Equal(t, int64(4), s.UnknownCount(), "every occurrence counted")

	// Without configuration, our own spellings still decode.
	tx, err = DecodeTransaction([]byte(`{"transactionId":"x","status":"confirming"}`))
	require.NoError(t, err)
	require.Equal(t, Confirming, tx.Status)

	for _, bad := range []string{"AUTHORIZED", "AUTHORIZED=paid", "=approved", "X=unknown"} {
		_, err := ParseStatuses(bad)
		require.Error(t, err, bad)
	}
	// A peer cannot grow the remembered spellings without bound.
	for i := range 1000 {
		s.State(string(rune('A'+i%26)) + string(rune(i)))
	}
	require.LessOrEqual(t, len(s.seen), maxSeenSpellings)
}

// Issue 10 item 8, end to end in the engine: PPaaS answers the create with a
// spelling the agent does not know; the payment keeps polling and completes
// when the status read says approved — no UnreachableHost, no reversal.
func TestEngineUnknownStatusKeepsPolling(t *testing.T) {
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := "AUTHORIZING"
		if r.Method == http.MethodGet && gets.Add(1) >= 2 {
			st = "approved"
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"transactionId": "qr-7", "clientTransactionId": "c7", "status": st,
			"paymentAmount": map[string]any{"amount": 100, "currency": "EUR"}})
	}))
	defer srv.Close()
	var advised atomic.Int32
	adv := advisorFunc(func(context.Context, Advice) error { advised.Add(1); return nil })
	e, err := NewEngine(Config{PollAfter: 10 * time.Millisecond, PollMax: 20 * time.Millisecond, Timeout: 10 * time.Second},
		NewClient(srv.Client(), srv.URL, Retry{Attempts: 1}), &memRecorder{}, adv, nil)
	require.NoError(t, err)
	out, err := e.Pay(t.Context(), PaymentRequest{Brand: "KB", Amount: Amount{Amount: 100, Currency: "EUR"}, ClientTransactionID: "c7"})
	require.NoError(t, err)
	require.Equal(t, ResultApproved, out.Result)
	require.Zero(t, advised.Load())
}

type advisorFunc func(context.Context, Advice) error

func (f advisorFunc) Advise(ctx context.Context, a Advice) error { return f(ctx, a) }

func FuzzParseStatuses(f *testing.F) {
	f.Add("AUTHORIZED=approved,PENDING=pending")
	f.Add("=,,x=")
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := ParseStatuses(spec)
		if err != nil {
			return
		}
		for _, st := range s.m {
			if !st.wire() {
				t.Fatalf("mapped to a non-wire state %q", st)
			}
		}
	})
}
