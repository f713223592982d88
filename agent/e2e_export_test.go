package agent

import (
	"context"
	"time"

	"github.com/termagent/termagent/store"
)

// TestStore is the running agent's store (valid once Ready), so end-to-end
// tests in package agent_test can fill the outbox as the agent's own
// components do.
func (a *Agent) TestStore() *store.Store { return a.st }

// TestSweepStats is the running agent's after-sale sweep counters (zero
// when the sweep is off).
func (a *Agent) TestSweepStats() SweepStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sweep == nil {
		return SweepStats{}
	}
	return a.sweep.Stats()
}

// TestForwarderStats is the running agent's forwarder counters.
func (a *Agent) TestForwarderStats() ForwarderStats { return a.fwd.Stats() }

// TestDegraded is what /readyz and Diagnosis say needs attention.
func (a *Agent) TestDegraded() string { return a.degraded() }

// TestAdviceQueued reports whether a reversal advice for the client
// transaction ctid waits in the outbox.
func (a *Agent) TestAdviceQueued(ctx context.Context, ctid string) (bool, error) {
	_, _, found, err := a.st.FindKey(ctx, adviceKey(ctid))
	return found, err
}

// CloseWithoutAnswerForTest is `agent refund close -not-refunded` stopped
// before the refund's final answer is journaled (as a crash would).
func CloseWithoutAnswerForTest(ctx context.Context, st *store.Store, id, note string) error {
	m, err := closable(ctx, st, id)
	if err != nil {
		return err
	}
	_, err = m.decide(ctx, st, false, note, time.Now())
	return err
}

// TestOversized is the number of PPaaS bodies the running agent refused for
// an id over ppaas.MaxIDLen (valid once Ready).
func (a *Agent) TestOversized() int64 { return a.statuses.OversizedCount() }
