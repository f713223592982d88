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

// An event's span of the platform's time opens when the platform decides it
// (pushLocked), not when its publishing goroutine gets to it: the wait in
// the simulator's queue is the platform's, and counting it as the agent's
// share would charge the device for the simulator's scheduling. An event
// still queued when the publisher stops closes its span.
func TestEventSpanOpensWhenTheEventIsDecided(t *testing.T) {
	at := time.Unix(1_000_000, 0)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return at }
	pm, err := newPayments(slog.New(slog.DiscardHandler), now, ProviderApprove, ProvidersConfig{})
	require.NoError(t, err)
	pm.spans = &busyTime{now: now}

	pm.mu.Lock()
	pm.pushLocked([]outgoing{{topic: "a"}})
	pm.mu.Unlock()
	mu.Lock()
	at = at.Add(5 * time.Millisecond) // queued, no publisher running yet
	mu.Unlock()
	pub := make(publishedCh, 4)
	pm.start(pub)
	require.Equal(t, "a", <-pub)
	require.Eventually(t, func() bool { return pm.spans.get() == 5*time.Millisecond }, 5*time.Second, time.Millisecond,
		"the span covers the event's wait in the queue")

	pm.mu.Lock()
	pm.pushLocked([]outgoing{{topic: "b"}, {topic: "c"}})
	pm.mu.Unlock()
	pm.close()
	for len(pub) > 0 {
		<-pub
	}
	pm.spans.mu.Lock()
	open := pm.spans.open
	pm.spans.mu.Unlock()
	require.Zero(t, open, "events published or dropped at stop leave no span open")
}
