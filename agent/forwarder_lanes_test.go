package agent

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/store"
)

// deadSink records the Sender's dead-letter calls.
type deadSink struct {
	senderFunc
	mu   sync.Mutex
	dead []string
}

func (d *deadSink) DeadLettered(_ context.Context, r store.Record, reason string) {
	d.mu.Lock()
	d.dead = append(d.dead, string(r.Payload)+": "+reason)
	d.mu.Unlock()
}

// Issue 10 item 4: a record PPaaS keeps refusing delays only its own lane.
// Before, the outbox was one stream and a 4xx was retried forever at its head,
// so every reversal and result behind it waited. Now the others are delivered
// at once, and the refused one is retried a bounded number of times, then
// dead-lettered loudly (counted by kind, handed to the Sender).
func TestForwarderPoisonRecordDelaysOnlyItsOwnLane(t *testing.T) {
	st := openStore(t, store.Options{})
	var delivered sync.Map
	var poisonTries atomic.Int32
	sink := &deadSink{senderFunc: func(_ context.Context, r store.Record) error {
		if string(r.Payload) == "poison" {
			poisonTries.Add(1)
			return Rejected(errString("PPaaS answered 422"))
		}
		delivered.Store(string(r.Payload), true)
		return nil
	}}
	var logs syncLog
	f := NewForwarder(st, sink, ForwarderConfig{BaseDelay: 20 * time.Millisecond, MaxDelay: 50 * time.Millisecond, MaxRejections: 4},
		slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelError})))
	_, err := st.Append(t.Context(), store.Event{Kind: store.KindAdvice, Payload: []byte("poison")})
	require.NoError(t, err)
	for _, p := range []string{"advice-2", "result-3", "result-4"} {
		kind := store.KindTransactionResult
		if p == "advice-2" {
			kind = store.KindAdvice
		}
		_, err := st.Append(t.Context(), store.Event{Kind: kind, Payload: []byte(p)})
		require.NoError(t, err)
	}
	startForwarder(t, f)
	require.Eventually(t, func() bool {
		_, a := delivered.Load("advice-2")
		_, b := delivered.Load("result-4")
		return a && b
	}, 5*time.Second, time.Millisecond, "the records behind the refused one go through")
	require.Less(t, poisonTries.Load(), int32(4), "delivered while the refused record still waits")

	require.Eventually(t, func() bool { return f.Stats().DeadByKind[store.KindAdvice] == 1 }, 10*time.Second, time.Millisecond)
	require.Equal(t, int64(1), st.Stats().Dead)
	require.Equal(t, int32(4), poisonTries.Load(), "MaxRejections attempts, then given up")
	sink.mu.Lock()
	require.Len(t, sink.dead, 1)
	require.Contains(t, sink.dead[0], "poison: refused 4 times")
	sink.mu.Unlock()
	require.Contains(t, logs.String(), `"level":"ERROR","msg":"outbox record given up and moved to dead letters`, "loud")
	require.Contains(t, logs.String(), `"kind":"advice"`)
}

// syncLog is a log sink safe for concurrent writes.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type errString string

func (e errString) Error() string { return string(e) }

// Issue 10: a 400/403/404 from the device events endpoint does not
// dead-letter a transaction result at once (before: "permanent", dead at the
// first answer); it is retried and delivered once the endpoint takes it.
func TestEventsEndpoint4xxRetriesATransactionResult(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			http.Error(w, "not yet", http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	st := openStore(t, store.Options{})
	f := NewForwarder(st, sender{api: srv.Client(), apiURL: srv.URL}, ForwarderConfig{BaseDelay: 5 * time.Millisecond, MaxDelay: 20 * time.Millisecond}, quietLog())
	_, err := st.Append(t.Context(), store.Event{Kind: store.KindTransactionResult, Payload: []byte(`{}`)})
	require.NoError(t, err)
	startForwarder(t, f)
	require.Eventually(t, func() bool { return f.Stats().Sent == 1 }, 5*time.Second, time.Millisecond)
	require.Zero(t, st.Stats().Dead)
	require.Equal(t, int32(3), calls.Load())
}

// Issue 10: the wall clock jumping back (an RTC reset corrected later) does
// not stall a record waiting out its backoff for as long as the jump.
func TestForwarderClockJumpBackDoesNotStall(t *testing.T) {
	var (
		mu  sync.Mutex
		now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	st := openStore(t, store.Options{})
	var calls atomic.Int32
	done := make(chan struct{})
	f := NewForwarder(st, senderFunc(func(context.Context, store.Record) error {
		if calls.Add(1) == 1 {
			return errString("connection refused")
		}
		close(done)
		return nil
	}), ForwarderConfig{BaseDelay: 200 * time.Millisecond, MaxDelay: 300 * time.Millisecond, Rand: func() float64 { return 1 }, Now: clock}, quietLog())
	_, err := st.Append(t.Context(), store.Event{Kind: store.KindAdvice, Payload: []byte("a")})
	require.NoError(t, err)
	startForwarder(t, f)
	require.Eventually(t, func() bool { return f.Stats().Failures == 1 }, 5*time.Second, time.Millisecond)
	mu.Lock()
	now = now.Add(-24 * time.Hour) // the jump, while the record waits out its backoff
	mu.Unlock()
	waitFor(t, done, "delivery after the clock went back a day", 5*time.Second)
}
