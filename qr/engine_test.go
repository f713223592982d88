package qr

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/termagent/termagent/ppaas"
)

type memRecorder struct {
	mu    sync.Mutex
	ts    []Transition
	scans map[string]string // clientTransactionId → the code RecordScan journaled
	fail  bool
}

func (r *memRecorder) RecordScan(_ context.Context, ctid, code string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("disk full")
	}
	if r.scans == nil {
		r.scans = map[string]string{}
	}
	r.scans[ctid] = code
	return nil
}

func (r *memRecorder) scanned(ctid string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.scans[ctid]
	return c, ok
}

func (r *memRecorder) Record(_ context.Context, t Transition) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("disk full")
	}
	r.ts = append(r.ts, t)
	return nil
}

func (r *memRecorder) states() []ppaas.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []ppaas.State
	for _, t := range r.ts {
		out = append(out, t.To)
	}
	return out
}

type nopAdvisor struct{}

func (nopAdvisor) Advise(context.Context, Advice) error { return nil }

// fakePPaaS answers create with awaiting_consumer and signals it.
func fakePPaaS(t *testing.T, created chan<- ppaas.CreateRequest) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req ppaas.CreateRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		_ = json.NewEncoder(w).Encode(ppaas.Transaction{TransactionID: "t-" + req.ClientTransactionID, ClientTransactionID: req.ClientTransactionID, Status: ppaas.AwaitingConsumer})
		if created != nil && r.URL.Path == txPath {
			created <- req
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestEngineAppliesEventsInOrder(t *testing.T) {
	created := make(chan ppaas.CreateRequest, 1)
	srv := fakePPaaS(t, created)
	rec := &memRecorder{}
	e, err := NewEngine(Config{PollAfter: time.Hour, Timeout: time.Hour}, NewClient(srv.Client(), srv.URL, fastRetry), rec, nopAdvisor{}, nil)
	require.NoError(t, err)
	ctx := t.Context()
	done := make(chan Outcome, 1)
	go func() {
		o, err := e.Pay(ctx, PaymentRequest{Brand: "kb", Amount: ppaas.Amount{Amount: 100, Currency: "EUR"}, ClientTransactionID: "c1"})
		require.NoError(t, err)
		done <- o
	}()
	<-created
	require.Eventually(t, func() bool { return len(rec.states()) == 2 }, 5*time.Second, time.Millisecond)
	ev := func(id string, s ppaas.State, seq int64) ppaas.Event {
		return ppaas.Event{EventID: id, Type: ppaas.EventTypeStatus, TransactionID: "t-c1", ClientTransactionID: "c1", Status: s, Sequence: seq}
	}
	require.NoError(t, e.HandleEvent(ctx, ev("e2", ppaas.Pending, 2)))
	require.NoError(t, e.HandleEvent(ctx, ev("e1", ppaas.AwaitingConsumer, 1)), "stale events are accepted (acked) and dropped")
	require.NoError(t, e.HandleEvent(ctx, ev("e3", ppaas.Approved, 3)))
	select {
	case o := <-done:
		require.Equal(t, ResultApproved, o.Result)
		require.Equal(t, "t-c1", o.TransactionID)
	case <-time.After(10 * time.Second):
		t.Fatal("pay did not finish")
	}
	require.NoError(t, e.HandleEvent(ctx, ev("e4", ppaas.Declined, 4)), "late event after the final state")
	require.Equal(t, []ppaas.State{ppaas.Created, ppaas.AwaitingConsumer, ppaas.Pending, ppaas.Approved}, rec.states())
}

func TestEngineEventNotAckedWhenNotRecorded(t *testing.T) {
	created := make(chan ppaas.CreateRequest, 1)
	srv := fakePPaaS(t, created)
	rec := &memRecorder{}
	e, err := NewEngine(Config{PollAfter: time.Hour, Timeout: time.Hour}, NewClient(srv.Client(), srv.URL, fastRetry), rec, nopAdvisor{}, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = e.Pay(ctx, PaymentRequest{Brand: "KB", Amount: ppaas.Amount{Amount: 100, Currency: "EUR"}, ClientTransactionID: "c2"})
	}()
	<-created
	// Wait for the awaiting transition so only the event's write fails.
	require.Eventually(t, func() bool { return len(rec.states()) == 2 }, 5*time.Second, time.Millisecond)
	rec.mu.Lock()
	rec.fail = true
	rec.mu.Unlock()
	err = e.HandleEvent(ctx, ppaas.Event{EventID: "x", Type: ppaas.EventTypeStatus, ClientTransactionID: "c2", Status: ppaas.Approved, Sequence: 1})
	require.ErrorContains(t, err, "disk full")
	rec.mu.Lock()
	rec.fail = false
	rec.mu.Unlock()
	cancel()
	<-done
}

func TestEngineRejectsBadRequests(t *testing.T) {
	srv := fakePPaaS(t, nil)
	e, err := NewEngine(Config{}, NewClient(srv.Client(), srv.URL, fastRetry), &memRecorder{}, nopAdvisor{}, nil)
	require.NoError(t, err)
	_, err = e.Pay(t.Context(), PaymentRequest{Brand: "Visa", Amount: ppaas.Amount{Amount: 1, Currency: "EUR"}})
	require.ErrorContains(t, err, "not mapped")
	_, err = e.Pay(t.Context(), PaymentRequest{Brand: "KB", Amount: ppaas.Amount{Amount: -1, Currency: "EUR"}})
	require.Error(t, err)
	_, err = NewEngine(Config{Brands: map[string]Method{"X": {PaymentType: "X", Scenario: "tap"}}}, NewClient(srv.Client(), srv.URL, fastRetry), &memRecorder{}, nopAdvisor{}, nil)
	require.Error(t, err)
	_, err = NewEngine(Config{QRLevel: "Z"}, NewClient(srv.Client(), srv.URL, fastRetry), &memRecorder{}, nopAdvisor{}, nil)
	require.Error(t, err)
}
