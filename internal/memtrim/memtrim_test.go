package memtrim

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5 s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTrimsOnceAfterEachQuietPeriodFollowingActivity(t *testing.T) {
	var activity, freed atomic.Uint64
	tr := &Trimmer{Quiet: 100 * time.Millisecond, Activity: activity.Load, Free: func() { freed.Add(1) }}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()

	// Nothing happened yet: nothing to trim, however long the quiet.
	time.Sleep(400 * time.Millisecond)
	require.Zero(t, freed.Load(), "trimmed before any activity")

	// A burst: a trim once it is over, one only.
	for range 5 {
		activity.Add(1)
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, "a trim after the burst", func() bool { return freed.Load() == 1 })
	time.Sleep(400 * time.Millisecond)
	require.Equal(t, uint64(1), freed.Load(), "trimmed again without new activity")
	require.Equal(t, uint64(1), tr.Trims())

	// Activity that never stops for Quiet: no trim while it goes on.
	stop := time.Now().Add(400 * time.Millisecond)
	for time.Now().Before(stop) {
		activity.Add(1)
		time.Sleep(20 * time.Millisecond)
	}
	require.Equal(t, uint64(1), freed.Load(), "trimmed while busy")
	waitFor(t, "a trim after the second burst", func() bool { return freed.Load() == 2 })

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop with its context")
	}
}

func TestZeroQuietIsOff(t *testing.T) {
	var freed atomic.Uint64
	tr := &Trimmer{Activity: func() uint64 { return uint64(time.Now().UnixNano()) }, Free: func() { freed.Add(1) }}
	require.NoError(t, tr.Run(t.Context()), "returns at once")
	require.Zero(t, freed.Load())
}

// FreeOSMemory leaves no free heap page resident.
func TestFreeOSMemoryReturnsFreePages(t *testing.T) {
	garbage := make([][]byte, 0, 256)
	for range 256 {
		garbage = append(garbage, make([]byte, 64<<10))
	}
	require.Len(t, garbage, 256)
	garbage = nil
	FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	require.Less(t, ms.HeapIdle-ms.HeapReleased, uint64(1<<20), "free heap pages kept after the trim")
}
