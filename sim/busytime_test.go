package sim

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The agent-share benchmark subtracts PaymentAPITime: spans that overlap (an
// event published while the API call that decided it is still answering)
// must count once, or the agent's share is flattered.
func TestBusyTimeCountsOverlappingSpansOnce(t *testing.T) {
	at := time.Unix(1_000_000, 0)
	clock := func(d time.Duration) { at = at.Add(d) }
	b := &busyTime{now: func() time.Time { return at }}

	b.enter() // API call: 0–10 ms
	clock(4 * time.Millisecond)
	b.enter() // publish: 4–13 ms, overlapping the call
	clock(6 * time.Millisecond)
	b.exit()
	require.Equal(t, 10*time.Millisecond, b.get(), "an open span counts up to now")
	clock(3 * time.Millisecond)
	b.exit()
	require.Equal(t, 13*time.Millisecond, b.get(), "the union, not the sum (19 ms)")

	clock(100 * time.Millisecond) // idle: not counted
	b.enter()
	clock(2 * time.Millisecond)
	b.exit()
	require.Equal(t, 15*time.Millisecond, b.get())
}

type publishedCh chan string

func (p publishedCh) Publish(_ context.Context, topic string, _ []byte) error {
	p <- topic
	return nil
}

// An event's wait in the simulator's queue (between its decision and the
// publishing goroutine taking it) is told apart (EventQueueWait) and is not
// the platform's time (PaymentAPITime): on a shared machine it may be the
// device's own work holding the CPU, and subtracting it would flatter the
// device's share.
func TestEventQueueWaitIsToldApart(t *testing.T) {
	var (
		mu sync.Mutex
		at = time.Unix(1_000_000, 0)
	)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return at } // the spans' clock
	pm, err := newPayments(slog.New(slog.DiscardHandler), now, ProviderApprove, ProvidersConfig{})
	require.NoError(t, err)
	pm.spans = &busyTime{now: now}

	pm.mu.Lock()
	pm.pushLocked([]outgoing{{topic: "a"}})
	pm.mu.Unlock()
	time.Sleep(20 * time.Millisecond) // queued, no publisher running yet
	mu.Lock()
	at = at.Add(5 * time.Millisecond) // the spans' clock moves while it waits, not while it is published
	mu.Unlock()
	pub := make(publishedCh, 4)
	pm.start(pub)
	defer pm.close()
	require.Equal(t, "a", <-pub)
	require.GreaterOrEqual(t, time.Duration(pm.queueWait.Load()), 20*time.Millisecond, "the queue wait is measured")
	require.Zero(t, pm.spans.get(), "and is not the platform's time")
}
