package agent_test

import (
	"encoding/json"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/termagent/termagent/sim"
	"github.com/termagent/termagent/store"
)

// The outbox at scale, through the running agent's forwarder and mTLS client:
// PPaaS's events ingest is down while 10,000 receipts are queued, comes back,
// drops connections for a while mid-drain, comes back again. Every event
// arrives exactly once, in order; events queued twice under one idempotency
// key (a producer repeating itself after a crash) are kept once and counted
// as duplicates by the receiver.
func TestE2EOutboxAtScaleSurvivesIngestOutage(t *testing.T) {
	const n, repeated = 10_000, 100
	w := startWorld(t, nil)
	st := w.Agent.TestStore()
	w.PPaaS.AddFault(sim.Fault{Path: sim.EventsPath, Status: 503})

	type receipt struct {
		N int `json:"n"`
	}
	// Producers append concurrently, as the agent's components do; the store
	// orders them (group commit) and the order to check is the one it gave.
	const producers = 8
	keys := make([]uuid.UUID, n)
	seqs := make([]uint64, n)
	queued := time.Now()
	var g errgroup.Group
	for p := range producers {
		g.Go(func() error {
			for i := p; i < n; i += producers {
				keys[i] = uuid.New()
				b, err := json.Marshal(receipt{N: i})
				if err != nil {
					return err
				}
				rec, err := st.Append(t.Context(), store.Event{Kind: store.KindReceipt, Payload: b, Key: keys[i]})
				if err != nil {
					return err
				}
				seqs[i] = rec.Seq
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	order := make([]int, n) // event numbers by outbox position
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return seqs[order[a]] < seqs[order[b]] })
	for i := range repeated {
		b, err := json.Marshal(receipt{N: i})
		require.NoError(t, err)
		_, err = st.Append(t.Context(), store.Event{Kind: store.KindReceipt, Payload: b, Key: keys[i]})
		require.NoError(t, err)
	}
	t.Logf("queued %d events in %s", n+repeated, time.Since(queued).Round(time.Millisecond))
	require.Eventually(t, func() bool { return w.Agent.TestForwarderStats().Failures >= 3 }, 10*time.Second, 5*time.Millisecond)
	ev, _ := w.PPaaS.Ingested()
	require.Empty(t, ev, "nothing got through the outage")
	require.Equal(t, n+repeated, w.diagnosis().OutboxDepth)

	ingested := func() int { _, s := w.PPaaS.Ingested(); return s.Events }
	detail := func() string {
		return fmt.Sprintf("ingested %d; forwarder %+v; outbox %+v", ingested(), w.Agent.TestForwarderStats(), st.Stats())
	}
	w.clearFaults()
	back := time.Now()
	w.waitFor(30*time.Second, "a third drained", func() bool { return ingested() >= n/3 }, detail)
	w.PPaaS.AddFault(sim.Fault{Path: sim.EventsPath, Reset: true, Count: 20})
	w.waitFor(30*time.Second, "all drained", func() bool { return ingested() >= n }, detail)
	drained := time.Since(back)
	require.Eventually(t, func() bool { return st.Stats().Depth == 0 }, 10*time.Second, 5*time.Millisecond)
	ev, stats := w.PPaaS.Ingested()
	fs := w.Agent.TestForwarderStats()
	t.Logf("drained %d events in %s (%.0f/s); duplicates sent %d; failed attempts %d",
		len(ev), drained.Round(time.Millisecond), float64(len(ev))/drained.Seconds(), stats.Duplicates, fs.Failures)

	require.Equal(t, n, stats.Events, "every event once")
	// At least once: besides the repeated keys, a delivery whose answer was
	// lost (a reset, or a slow answer on a loaded machine) is sent again and
	// recognised by its key, never counted twice.
	require.GreaterOrEqual(t, stats.Duplicates, repeated, "the repeated keys were sent and recognised")
	inOrder := 0
	for i, e := range ev {
		var r receipt
		require.NoError(t, json.Unmarshal(e.Payload, &r))
		if order[i] == r.N {
			inOrder++
		}
		require.Equal(t, keys[r.N].String(), e.Key, fmt.Sprintf("event %d carries its idempotency key", r.N))
		require.Equal(t, "receipt", e.Kind)
	}
	require.Zero(t, st.Stats().Dead, "nothing dead-lettered")
	// Keys are independent lanes (one failing record delays only its own);
	// outside the retried ones, the outbox order holds.
	t.Logf("%d of %d events in outbox order", inOrder, n)
	require.Greater(t, inOrder, n/2)
}
