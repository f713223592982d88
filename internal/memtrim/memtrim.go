// Package memtrim hands back to the operating system the memory a burst of
// work left behind, once the process has been quiet for a while.
//
// The Go runtime returns freed heap memory slowly: after a burst (a rush of
// payments, or a peer flooding the Nexo port) the agent keeps up to about
// twice its live heap resident until later collections and the background
// scavenger catch up, which can take minutes. A terminal shares its memory
// with the payment application, so the agent trims once it has been quiet for
// Quiet after some activity: two full collections and a scavenge
// (FreeOSMemory), a few milliseconds of CPU per quiet period, none while
// nothing happens.
package memtrim

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// Trimmer trims once per quiet period that follows activity.
type Trimmer struct {
	// Quiet is how long Activity must stay unchanged before a trim.
	Quiet time.Duration
	// Activity is a counter that moves with the process's work (requests
	// served, connections accepted or refused).
	Activity func() uint64
	// Free releases memory; nil: FreeOSMemory.
	Free func()
	// Log, if set, gets one debug line per trim.
	Log *slog.Logger

	trims atomic.Uint64
}

// Trims is the number of trims so far.
func (t *Trimmer) Trims() uint64 { return t.trims.Load() }

// Run trims until ctx ends. It looks at Activity every Quiet/2 (at least
// every 100 ms, at most every 5 s): a quiet process wakes that often and
// does nothing else.
func (t *Trimmer) Run(ctx context.Context) error {
	if t.Quiet <= 0 {
		return nil
	}
	free := t.Free
	if free == nil {
		free = FreeOSMemory
	}
	tick := min(max(t.Quiet/2, 100*time.Millisecond), 5*time.Second)
	tk := time.NewTicker(tick)
	defer tk.Stop()
	last := t.Activity()
	trimmed := last // nothing to trim before the first activity
	changed := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tk.C:
			switch a := t.Activity(); {
			case a != last:
				last, changed = a, now
			case a != trimmed && now.Sub(changed) >= t.Quiet:
				start := time.Now()
				free()
				trimmed = a
				t.trims.Add(1)
				if t.Log != nil {
					t.Log.Debug("memory trimmed after a quiet period", "quiet", t.Quiet, "took", time.Since(start))
				}
			}
		}
	}
}

// FreeOSMemory collects twice, then returns every free page to the OS: the
// first collection moves what sync.Pools hold (net/http's and TLS's
// buffers, encoders) to their victim caches, the second frees it.
func FreeOSMemory() {
	runtime.GC()
	debug.FreeOSMemory()
}
