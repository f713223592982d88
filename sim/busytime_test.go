package sim

import (
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
