package sim

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/display"
)

// TestWatchEndsWithItsContext: a watcher ranging over Watch stops when its
// context ends, even when the screen it waits for never comes.
func TestWatchEndsWithItsContext(t *testing.T) {
	terms := newTerminals(time.Now)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range terms.Watch(ctx, "SN1") {
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch's channel stayed open after its context ended")
	}
}

// TestWatchKeepsAPaymentsScreens: a watcher that reads late still sees every
// screen of a payment, in order (a fast provider used to replace
// "confirming" by "approved" before a loaded test read it).
func TestWatchKeepsAPaymentsScreens(t *testing.T) {
	terms := newTerminals(time.Now)
	ch := terms.Watch(t.Context(), "SN1")
	states := []string{"awaiting_consumer", "confirming", "approved", display.Idle}
	for _, s := range states {
		terms.Show(display.Screen{Serial: "SN1", State: s})
	}
	next := func() string {
		select {
		case s := <-ch:
			return s.State
		case <-time.After(5 * time.Second):
			return "(none: the screen was dropped)"
		}
	}
	require.Equal(t, display.Idle, next(), "the screen current when watching began")
	for _, want := range states {
		require.Equal(t, want, next())
	}
}
