package agent

import (
	"context"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/store"
)

func TestForegroundBusy(t *testing.T) {
	var fg foreground
	require.Nil(t, fg.Busy(), "nothing served yet")
	fg.Begin()
	fg.Begin()
	busy := fg.Busy()
	require.NotNil(t, busy)
	fg.End()
	select {
	case <-busy:
		t.Fatal("idle with a request still served")
	default:
	}
	require.NotNil(t, fg.Busy())
	fg.End()
	waitFor(t, busy, "idle after the last End", time.Second)
	require.Nil(t, fg.Busy())
	fg.End() // unpaired: ignored, does not go negative
	fg.Begin()
	require.NotNil(t, fg.Busy(), "a new request after a stray End is counted")
}

// yieldRig is a forwarder whose receiver counts deliveries, with a POS
// request in flight from the start.
type yieldRig struct {
	st   *store.Store
	fg   *foreground
	f    *Forwarder
	rc   *receiver
	sent atomic.Int32
	// yieldsAtSend is the most waits for the POS counted when a delivery
	// started: once the backlog is delivered the forwarder may wait again
	// before it looks for more, which is not a wait of the backlog's.
	yieldsAtSend atomic.Int64
}

func newYieldRig(t *testing.T, maxYield time.Duration, records int) *yieldRig {
	t.Helper()
	r := &yieldRig{st: openStore(t, store.Options{}), fg: &foreground{}, rc: newReceiver(records)}
	srv := httptest.NewServer(r.rc)
	t.Cleanup(srv.Close)
	http := httpSender{url: srv.URL, client: srv.Client()}
	r.f = NewForwarder(r.st, senderFunc(func(ctx context.Context, rec store.Record) error {
		r.sent.Add(1)
		if y := r.f.Stats().Yields; y > r.yieldsAtSend.Load() {
			r.yieldsAtSend.Store(y) // deliveries run one at a time
		}
		return http.Send(ctx, rec)
	}), ForwarderConfig{Settle: -1, Foreground: r.fg, MaxYield: maxYield}, quietLog())
	r.fg.Begin() // a payment is in flight
	return r
}

func (r *yieldRig) append(t *testing.T) {
	t.Helper()
	_, err := r.st.Append(t.Context(), store.Event{Kind: store.KindTransactionResult})
	require.NoError(t, err)
}

// waitYielding waits until the forwarder has started its n-th wait for the POS.
func (r *yieldRig) waitYielding(t *testing.T, n int64) {
	t.Helper()
	require.Eventually(t, func() bool { return r.f.Stats().Yields >= n }, 10*time.Second, time.Millisecond)
}

// Issue 17: a delivery waits while a POS request is served, and goes as soon
// as it ends.
func TestForwarderHoldsDeliveryWhileAPaymentIsInFlight(t *testing.T) {
	r := newYieldRig(t, time.Hour, 1)
	r.append(t)
	startForwarder(t, r.f)
	r.waitYielding(t, 1)
	require.Zero(t, r.sent.Load(), "nothing delivered while the payment is in flight")
	r.fg.End()
	waitFor(t, r.rc.allIn, "delivery once the payment ended", 10*time.Second)
	require.Equal(t, int32(1), r.sent.Load())
	require.Zero(t, r.f.Stats().Wakes)
}

// Payments that never pause hold the outbox for MaxYield, once: then the
// records go out while the POS is still busy, a backlog without a second
// wait, however the POS's requests come.
func TestForwarderDeliversAfterMaxYieldIfPaymentsNeverStop(t *testing.T) {
	const maxYield = 200 * time.Millisecond
	r := newYieldRig(t, maxYield, 3)
	r.append(t)
	r.append(t)
	r.append(t)
	start := time.Now()
	startForwarder(t, r.f)
	waitFor(t, r.rc.allIn, "deliveries while the POS stays busy", 10*time.Second)
	require.GreaterOrEqual(t, time.Since(start), maxYield, "the first delivery waited for the POS")
	require.NotNil(t, r.fg.Busy(), "the POS is still busy")
	require.Equal(t, int64(1), r.yieldsAtSend.Load(), "the backlog drained after one wait")
}

// A backlog is never held record by record, even by a POS whose requests
// come back to back with short pauses between them (each pause would have
// restarted a bound counted per busy period).
func TestForwarderDrainsABacklogWithoutWaitingForThePOS(t *testing.T) {
	const records = 20
	r := newYieldRig(t, 100*time.Millisecond, records)
	for range records {
		r.append(t)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() { // requests of 5 ms with 0.2 ms between them
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			r.fg.End()
			time.Sleep(200 * time.Microsecond)
			r.fg.Begin()
		}
	}()
	startForwarder(t, r.f)
	waitFor(t, r.rc.allIn, "the backlog delivered", 10*time.Second)
	require.LessOrEqual(t, r.yieldsAtSend.Load(), int64(1), "one wait for the POS at most, at start")
}

func TestForwarderWakeCutsTheWaitForThePOS(t *testing.T) {
	r := newYieldRig(t, time.Hour, 1)
	r.append(t)
	startForwarder(t, r.f)
	r.waitYielding(t, 1)
	r.f.Wake()
	waitFor(t, r.rc.allIn, "delivery after Wake", 10*time.Second)
	require.NotNil(t, r.fg.Busy(), "the POS is still busy")
	require.Eventually(t, func() bool { return r.f.Stats().Wakes == 1 }, 10*time.Second, time.Millisecond)
}

// Cancelling Run ends a wait for the POS at once, and the wait leaves no
// goroutine behind.
func TestForwarderCancelEndsTheWaitForThePOS(t *testing.T) {
	r := newYieldRig(t, time.Hour, 1)
	r.append(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.f.Run(ctx) }()
	r.waitYielding(t, 1)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return while waiting for the POS")
	}
	require.Zero(t, r.sent.Load())
	// None of the forwarder's goroutines is left. (Counting all goroutines
	// failed under load: the store's own, started by Open, may start after
	// the count was taken.)
	forwarders := func() (int, string) {
		buf := make([]byte, 1<<20)
		all := string(buf[:runtime.Stack(buf, true)])
		n := 0
		for _, g := range strings.Split(all, "\n\n") {
			if strings.Contains(g, "agent.(*Forwarder)") && !strings.Contains(g, "TestForwarderCancelEndsTheWaitForThePOS") {
				n++
			}
		}
		return n, all
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		n, all := forwarders()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d forwarder goroutines left after Run returned:\n%s", n, all)
		}
		time.Sleep(time.Millisecond)
	}
}
