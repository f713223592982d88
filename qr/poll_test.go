package qr

import (
	"context"
	"encoding/json"
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

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{" 10 ", 10 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"soon", 0},
		{"99999999999999999999", 0}, // not an int64: no constraint
		{"86400", 2 * time.Minute},  // a peer cannot park the payment
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{now.Add(time.Hour).Format(http.TimeFormat), 2 * time.Minute},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, ParseRetryAfter(tc.in, now), "%q", tc.in)
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"", "1", "120", "Wed, 21 Oct 2015 07:28:00 GMT", "-1", "1e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := ParseRetryAfter(s, time.Now())
		if d < 0 || d > maxRetryAfter {
			t.Fatalf("ParseRetryAfter(%q) = %s, out of [0, %s]", s, d, maxRetryAfter)
		}
	})
}

// pollingPPaaS creates transactions awaiting the consumer and answers each GET
// with the next of answers (the last one repeats), recording when.
type pollingPPaaS struct {
	mu      sync.Mutex
	answers []func(http.ResponseWriter)
	gets    []time.Time
}

func (p *pollingPPaaS) serve(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == txPath {
			var req ppaas.CreateRequest
			_ = json.NewDecoder(r.Body).Decode(&req)
			_ = json.NewEncoder(w).Encode(ppaas.Transaction{TransactionID: "t1", ClientTransactionID: req.ClientTransactionID, Status: ppaas.AwaitingConsumer})
			return
		}
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, txPath+"/") {
			p.mu.Lock()
			p.gets = append(p.gets, time.Now())
			answer := p.answers[min(len(p.gets), len(p.answers))-1]
			p.mu.Unlock()
			answer(w)
			return
		}
		http.Error(w, "unexpected", http.StatusTeapot)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func (p *pollingPPaaS) times() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.gets...)
}

func approvedAnswer(w http.ResponseWriter) {
	_ = json.NewEncoder(w).Encode(ppaas.Transaction{TransactionID: "t1", Status: ppaas.Approved, Sequence: 2})
}

// With no events pushed, the first status poll comes after PollFirst, not after
// PollAfter (event_wait): an approval is answered within about one poll interval.
func TestPollingModeFirstPollAfterPollFirst(t *testing.T) {
	p := &pollingPPaaS{answers: []func(http.ResponseWriter){approvedAnswer}}
	srv := p.serve(t)
	e, err := NewEngine(Config{PollAfter: time.Hour, PollFirst: 100 * time.Millisecond, PushEvents: func() bool { return false }, Timeout: time.Hour},
		NewClient(srv.Client(), srv.URL, fastRetry), &memRecorder{}, nopAdvisor{}, nil)
	require.NoError(t, err)
	start := time.Now()
	o, err := e.Pay(t.Context(), PaymentRequest{Brand: "KB", Amount: ppaas.Amount{Amount: 100, Currency: "EUR"}})
	require.NoError(t, err)
	require.Equal(t, ResultApproved, o.Result)
	took := time.Since(start)
	t.Logf("approved by polling in %s", took)
	require.Less(t, took, 2*time.Second, "with PollAfter 1h, only the polling mode answers this soon")
	require.Len(t, p.times(), 1)
}

// The backoff grows to PollCap and a Retry-After from PPaaS is honoured: the next
// poll comes no sooner than it asks.
func TestPollingHonoursRetryAfterAndCap(t *testing.T) {
	busy := func(w http.ResponseWriter) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, `{"error":"busy"}`, http.StatusServiceUnavailable)
	}
	pending := func(w http.ResponseWriter) {
		_ = json.NewEncoder(w).Encode(ppaas.Transaction{TransactionID: "t1", Status: ppaas.AwaitingConsumer, Sequence: 1})
	}
	p := &pollingPPaaS{answers: []func(http.ResponseWriter){busy, pending, pending, pending, pending, pending, approvedAnswer}}
	srv := p.serve(t)
	e, err := NewEngine(Config{PollAfter: time.Hour, PollFirst: 20 * time.Millisecond, PollCap: 80 * time.Millisecond,
		PushEvents: func() bool { return false }, Timeout: time.Hour},
		NewClient(srv.Client(), srv.URL, fastRetry), &memRecorder{}, nopAdvisor{}, nil)
	require.NoError(t, err)
	o, err := e.Pay(t.Context(), PaymentRequest{Brand: "KB", Amount: ppaas.Amount{Amount: 100, Currency: "EUR"}})
	require.NoError(t, err)
	require.Equal(t, ResultApproved, o.Result)
	gets := p.times()
	require.Len(t, gets, 7)
	require.GreaterOrEqual(t, gets[1].Sub(gets[0]), 950*time.Millisecond, "Retry-After: 1 honoured")
	for i := 2; i < len(gets); i++ {
		require.Less(t, gets[i].Sub(gets[i-1]), 500*time.Millisecond, "poll %d: the backoff is capped at PollCap", i)
	}
}

// While events are pushed, polling stays the slow safety net (PollAfter), but the
// timer wakes every PollFirst to notice the broker going down; then polling takes
// over at once.
func TestPollSchedule(t *testing.T) {
	now := time.Unix(0, 0)
	up := true
	s := newPollSchedule(Config{PollAfter: 5 * time.Second, PollMax: 30 * time.Second, PushEvents: func() bool { return up }}.withDefaults())
	s.now = func() time.Time { return now }
	polls := 0
	poll := func() time.Duration { polls++; return 0 }

	require.Equal(t, time.Second, s.first(), "push mode wakes at PollFirst")
	now = now.Add(time.Second)
	require.Equal(t, time.Second, s.tick(poll))
	require.Zero(t, polls, "not due yet while events are pushed")
	now = now.Add(4 * time.Second)
	require.Equal(t, time.Second, s.tick(poll))
	require.Equal(t, 1, polls, "due after PollAfter")

	up = false // the broker goes down
	now = now.Add(time.Second)
	d := s.tick(poll)
	require.Equal(t, 2, polls, "polled at the first wake after the broker went down")
	require.LessOrEqual(t, d, 5*time.Second, "PollCap")
	for range 10 {
		require.LessOrEqual(t, s.tick(poll), 5*time.Second)
	}
	require.Equal(t, 7*time.Second, s.wake(s.next(7*time.Second)), "Retry-After wins over the cap")

	require.Equal(t, time.Second, s.first(), "polling mode: PollFirst")
	nilPush := newPollSchedule(Config{PollAfter: 5 * time.Second}.withDefaults())
	require.Equal(t, 5*time.Second, nilPush.first(), "without PushEvents: PollAfter, as before")
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
	out, err := e.Pay(t.Context(), PaymentRequest{Brand: "KB", Amount: ppaas.Amount{Amount: 100, Currency: "EUR"}, ClientTransactionID: "c7"})
	require.NoError(t, err)
	require.Equal(t, ResultApproved, out.Result)
	require.Zero(t, advised.Load())
}

type advisorFunc func(context.Context, Advice) error

func (f advisorFunc) Advise(ctx context.Context, a Advice) error { return f(ctx, a) }
