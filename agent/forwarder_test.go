package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/store"
)

// receiver is a fake PPaaS events endpoint: it stores events de-duplicated
// by idempotency key, counts the duplicates it was sent, can be down (503),
// and can "lose" responses (store the event, then fail the exchange) to
// force redeliveries.
type receiver struct {
	mu        sync.Mutex
	down      bool
	loseEvery int // lose the response of every n-th accepted event (0: never)
	seen      map[string]bool
	order     []string // unique keys in arrival order
	dups      int
	lost      int
	accepted  int
	attempts  int
	downHits  chan struct{} // one value per request refused while down
	allIn     chan struct{} // closed when want unique events arrived
	want      int
}

func newReceiver(want int) *receiver {
	return &receiver{seen: map[string]bool{}, downHits: make(chan struct{}, 1<<16), allIn: make(chan struct{}), want: want}
}

func (rc *receiver) setDown(d bool) {
	rc.mu.Lock()
	rc.down = d
	rc.mu.Unlock()
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	_, _ = io.Copy(io.Discard, r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.attempts++
	if rc.down {
		rc.downHits <- struct{}{}
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	if rc.seen[key] {
		rc.dups++
	} else {
		rc.seen[key] = true
		rc.order = append(rc.order, key)
		if len(rc.order) == rc.want {
			close(rc.allIn)
		}
	}
	rc.accepted++
	if rc.loseEvery > 0 && rc.accepted%rc.loseEvery == 0 {
		rc.lost++
		http.Error(w, "response lost", http.StatusBadGateway)
		return
	}
	if r.Header.Get("X-Reject") != "" {
		http.Error(w, "malformed", http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// httpSender posts records the way a PPaaS events client would.
type httpSender struct {
	url    string
	client *http.Client
}

func (s httpSender) Send(ctx context.Context, r store.Record) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(r.Payload))
	if err != nil {
		return err
	}
	req.Header.Set("Idempotency-Key", r.Key.String())
	if string(r.Payload) == "reject-me" {
		req.Header.Set("X-Reject", "1")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("post event: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusBadRequest:
		return Permanent(fmt.Errorf("post event: %s", resp.Status))
	default:
		return fmt.Errorf("post event: %s", resp.Status)
	}
}

func openStore(t *testing.T, opts store.Options) *store.Store {
	t.Helper()
	opts.PruneInterval = -1
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "termagent.db"), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startForwarder runs f until the test ends and checks Run's result.
func startForwarder(t *testing.T, f *Forwarder) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("forwarder did not stop")
		}
	})
}

func waitFor(t *testing.T, ch <-chan struct{}, what string, d time.Duration) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestForwarderOutageThenRecovery queues 10,000 events while the receiver is
// down, brings it back, and checks every event arrives once, in order, with
// the only duplicates being the ones whose responses were lost.
func TestForwarderOutageThenRecovery(t *testing.T) {
	const n = 10_000
	rc := newReceiver(n)
	rc.setDown(true)
	rc.loseEvery = 97
	srv := httptest.NewServer(rc)
	defer srv.Close()

	// NoSync: durability under kill -9 is store's crash test; here it would
	// only turn 20,000 commits into 20,000 fsyncs.
	st := openStore(t, store.Options{NoSync: true, MaxCount: n})
	f := NewForwarder(st, httpSender{url: srv.URL, client: srv.Client()},
		ForwarderConfig{BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond}, quietLog())
	startForwarder(t, f)

	// Producers append concurrently while the receiver is down.
	var keys []uuid.UUID
	var mu sync.Mutex
	var wg sync.WaitGroup
	for p := range 8 {
		wg.Go(func() {
			for i := range n / 8 {
				mu.Lock() // keeps keys in append (= sequence) order
				r, err := st.Append(t.Context(), store.Event{Kind: store.KindTransactionResult, Payload: fmt.Appendf(nil, `{"p":%d,"i":%d}`, p, i)})
				if err == nil {
					keys = append(keys, r.Key)
				}
				mu.Unlock()
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	for range 5 {
		waitFor(t, rc.downHits, "attempts during the outage", 10*time.Second)
	}
	head, ok, err := st.Peek(t.Context(), time.Now())
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, keys[0], head.Key, "the head is what the paused forwarder probes")
	require.GreaterOrEqual(t, head.Attempts, uint32(4))
	require.Less(t, f.Stats().Failures, int64(n/10), "an outage costs an attempt per pause, not one per record")
	require.Contains(t, head.LastError, "503")

	rc.setDown(false)
	waitFor(t, rc.allIn, "all events", 60*time.Second)
	require.Eventually(t, func() bool { return st.Stats().Depth == 0 }, 10*time.Second, time.Millisecond)

	rc.mu.Lock()
	defer rc.mu.Unlock()
	require.Len(t, rc.order, n)
	// Keys are independent lanes: each arrives once; a record whose response
	// was lost is retried after its own backoff while the others go on.
	got := map[string]bool{}
	for _, k := range rc.order {
		got[k] = true
	}
	for i, k := range keys {
		require.True(t, got[k.String()], "event %d never arrived", i)
	}
	require.Equal(t, rc.lost, rc.dups, "a duplicate is sent only when a response was lost")
	require.Positive(t, rc.lost)
	fs := f.Stats()
	require.Equal(t, int64(n), fs.Sent)
	require.Positive(t, fs.Failures)
	t.Logf("attempts %d, duplicates %d (lost responses %d), failures %d", rc.attempts, rc.dups, rc.lost, fs.Failures)
}

func TestForwarderWakeCutsBackoff(t *testing.T) {
	rc := newReceiver(3)
	rc.setDown(true)
	srv := httptest.NewServer(rc)
	defer srv.Close()
	st := openStore(t, store.Options{})
	// A one-hour backoff with maximal jitter: only Wake can deliver in time.
	f := NewForwarder(st, httpSender{url: srv.URL, client: srv.Client()},
		ForwarderConfig{BaseDelay: time.Hour, Rand: func() float64 { return 0.999 }}, quietLog())
	startForwarder(t, f)
	for range 3 {
		_, err := st.Append(t.Context(), store.Event{Kind: store.KindReceipt})
		require.NoError(t, err)
	}
	waitFor(t, rc.downHits, "first attempt", 10*time.Second)
	// The receiver is down for every record: the forwarder pauses as a whole.
	require.Eventually(t, func() bool { return f.Stats().NextAttempt.After(time.Now().Add(50 * time.Minute)) }, 10*time.Second, time.Millisecond)
	require.WithinDuration(t, time.Now().Add(time.Hour), f.Stats().NextAttempt, 5*time.Second)

	rc.setDown(false)
	f.Wake()
	waitFor(t, rc.allIn, "delivery after Wake", 10*time.Second)
	require.Eventually(t, func() bool { return f.Stats().Sent == 3 }, 10*time.Second, time.Millisecond)
	require.Equal(t, int64(1), f.Stats().Wakes)
}

func TestForwarderPermanentErrorDeadLetters(t *testing.T) {
	rc := newReceiver(2)
	srv := httptest.NewServer(rc)
	defer srv.Close()
	st := openStore(t, store.Options{})
	f := NewForwarder(st, httpSender{url: srv.URL, client: srv.Client()}, ForwarderConfig{BaseDelay: time.Millisecond}, quietLog())
	for _, p := range []string{"ok-1", "reject-me", "ok-2"} {
		_, err := st.Append(t.Context(), store.Event{Kind: store.KindReceipt, Payload: []byte(p)})
		require.NoError(t, err)
	}
	startForwarder(t, f)
	require.Eventually(t, func() bool { return st.Stats().Depth == 0 }, 10*time.Second, time.Millisecond)
	dead, err := st.ListDead(t.Context(), 10)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	require.Equal(t, "reject-me", string(dead[0].Payload))
	require.Contains(t, dead[0].LastError, "permanent")
	require.Zero(t, dead[0].Attempts, "no retries for a permanent error")
	require.Equal(t, int64(1), f.Stats().DeadLettered)
	require.Equal(t, int64(2), f.Stats().Sent)
}

func TestForwarderExpiryDeadLetters(t *testing.T) {
	rc := newReceiver(1)
	rc.setDown(true)
	srv := httptest.NewServer(rc)
	defer srv.Close()
	st := openStore(t, store.Options{})
	f := NewForwarder(st, httpSender{url: srv.URL, client: srv.Client()},
		ForwarderConfig{BaseDelay: time.Hour, Rand: func() float64 { return 0.5 }}, quietLog())
	_, err := st.Append(t.Context(), store.Event{Kind: store.KindDeviceStatus, TTL: 100 * time.Millisecond})
	require.NoError(t, err)
	keep, err := st.Append(t.Context(), store.Event{Kind: store.KindTransactionResult, TTL: -1})
	require.NoError(t, err)
	startForwarder(t, f)
	// The expiring head is retried in 30 min, but its expiry is sooner: the
	// forwarder wakes at the expiry and the store dead-letters it.
	require.Eventually(t, func() bool { return st.Stats().Dead == 1 }, 10*time.Second, time.Millisecond)
	dead, err := st.ListDead(t.Context(), 1)
	require.NoError(t, err)
	require.Equal(t, "expired", dead[0].LastError)
	rc.setDown(false)
	f.Wake()
	require.Eventually(t, func() bool { return st.Stats().Depth == 0 }, 10*time.Second, time.Millisecond)
	require.Equal(t, []string{keep.Key.String()}, rc.order)
}

func TestForwarderStopsOnCancel(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	st := openStore(t, store.Options{})
	_, err := st.Append(t.Context(), store.Event{Kind: store.KindReceipt})
	require.NoError(t, err)
	var calls atomic.Int32
	f := NewForwarder(st, senderFunc(func(ctx context.Context, r store.Record) error {
		calls.Add(1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-block:
			return nil
		}
	}), ForwarderConfig{}, quietLog())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	require.Eventually(t, func() bool { return calls.Load() == 1 }, 10*time.Second, time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	r, ok, err := st.Peek(t.Context(), time.Now())
	require.NoError(t, err)
	require.True(t, ok)
	require.Zero(t, r.Attempts, "an attempt cut short by shutdown is not counted")
}

func TestForwarderStoreClosed(t *testing.T) {
	st := openStore(t, store.Options{})
	require.NoError(t, st.Close())
	f := NewForwarder(st, senderFunc(func(context.Context, store.Record) error { return nil }), ForwarderConfig{}, quietLog())
	err := f.Run(t.Context())
	require.ErrorIs(t, err, store.ErrClosed)
}

type senderFunc func(ctx context.Context, r store.Record) error

func (f senderFunc) Send(ctx context.Context, r store.Record) error { return f(ctx, r) }

func TestBackoff(t *testing.T) {
	const base, maxD = 15 * time.Second, 60 * time.Minute
	tests := []struct {
		attempt uint32
		want    time.Duration // ceiling (r = 1)
	}{
		{0, 15 * time.Second},
		{1, 15 * time.Second},
		{2, 45 * time.Second},
		{3, 135 * time.Second},
		{4, 405 * time.Second},
		{5, 1215 * time.Second},
		{6, 60 * time.Minute},
		{100, 60 * time.Minute},
		{1 << 31, 60 * time.Minute},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, Backoff(tt.attempt, base, maxD, 3, 1), "attempt %d", tt.attempt)
		require.Zero(t, Backoff(tt.attempt, base, maxD, 3, 0), "full jitter reaches 0")
		require.Equal(t, tt.want/2, Backoff(tt.attempt, base, maxD, 3, 0.5))
	}
}

func TestPermanentError(t *testing.T) {
	require.NoError(t, Permanent(nil))
	base := errors.New("400 Bad Request")
	err := fmt.Errorf("send: %w", Permanent(base))
	var pe *PermanentError
	require.ErrorAs(t, err, &pe)
	require.ErrorIs(t, err, base)
}

// BenchmarkForwarderDrain measures the drain rate from a durable outbox to
// a local HTTP receiver: one record in flight, each ack committed to disk.
func BenchmarkForwarderDrain(b *testing.B) {
	rc := newReceiver(b.N)
	srv := httptest.NewServer(rc)
	defer srv.Close()
	st, err := store.Open(b.Context(), filepath.Join(b.TempDir(), "termagent.db"),
		store.Options{PruneInterval: -1, MaxCount: 1 << 40, MaxBytes: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range (b.N + 15) / 16 {
				if _, err := st.Append(b.Context(), store.Event{Kind: store.KindTransactionResult, Payload: make([]byte, 200)}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	f := NewForwarder(st, httpSender{url: srv.URL, client: srv.Client()}, ForwarderConfig{BaseDelay: time.Millisecond}, quietLog())
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan error, 1)
	b.ResetTimer()
	t0 := time.Now()
	go func() { done <- f.Run(ctx) }()
	select {
	case <-rc.allIn:
	case <-time.After(10 * time.Minute):
		b.Fatal("drain did not finish")
	}
	el := time.Since(t0)
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
}

// Issue 17: the commit that queues a payment's result also releases its
// response to the POS; the forwarder lets the new record lie for Settle
// before delivering it, so the delivery does not compete with the response.
// Wake is not delayed.
func TestForwarderSettlesBeforeDeliveringANewRecord(t *testing.T) {
	const settle = 300 * time.Millisecond
	for _, tc := range []struct {
		name string
		wake bool
	}{{"appended", false}, {"woken", true}} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(2)
			srv := httptest.NewServer(rc)
			defer srv.Close()
			st := openStore(t, store.Options{})
			f := NewForwarder(st, httpSender{url: srv.URL, client: srv.Client()}, ForwarderConfig{Settle: settle}, quietLog())
			_, err := st.Append(t.Context(), store.Event{Kind: store.KindReceipt})
			require.NoError(t, err)
			startForwarder(t, f)
			// The first record is delivered (found at start: no settling), then
			// the forwarder reads the outbox again (a read transaction) and
			// waits for a new record.
			require.Eventually(t, func() bool { return f.Stats().Sent == 1 }, 10*time.Second, time.Millisecond)
			reads := st.ReadTxns()
			require.Eventually(t, func() bool { return st.ReadTxns() > reads }, 10*time.Second, time.Millisecond)
			appended := time.Now()
			_, err = st.Append(t.Context(), store.Event{Kind: store.KindReceipt})
			require.NoError(t, err)
			if tc.wake {
				f.Wake()
			}
			waitFor(t, rc.allIn, "delivery", 10*time.Second)
			took := time.Since(appended)
			if tc.wake {
				require.Less(t, took, settle, "Wake delivers at once")
			} else {
				require.GreaterOrEqual(t, took, settle, "a new record lies for Settle first")
			}
		})
	}
}
