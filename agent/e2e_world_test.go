package agent_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/display"
	"github.com/termagent/termagent/internal/testrig"
	"github.com/termagent/termagent/internal/testrig/worldrig"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/sim"
	simworld "github.com/termagent/termagent/sim/world"
	"github.com/termagent/termagent/store"
)

// world is a simulated PPaaS with an agent and a POS, as the end-to-end fault
// tests drive them: every request goes through the agent's Nexo server, its
// QR engine, its mTLS client and its MQTT subscriber.
type world struct {
	*simworld.World
	t    *testing.T
	pos  *simworld.POS
	seen map[string]bool // QR transactions already awaited
}

// startWorld starts a world with short clocks: the forwarder retries within
// milliseconds and the store skips fsync (kill -9 safety is not what these
// tests are about; cmd/agent's crash test keeps fsync).
func startWorld(t *testing.T, mod func(*agent.Config)) *world {
	t.Helper()
	w, pos := worldrig.Start(t, worldrig.Agent(func(c *agent.Config) {
		c.PaymentTimeout = 30 * time.Second
		c.EventWait = 10 * time.Second
		if mod != nil {
			mod(c)
		}
	}))
	return &world{World: w, t: t, pos: pos, seen: map[string]bool{}}
}

type payResult struct {
	resp *nexo.Response
	err  error
}

// payAsync sends a KB payment from the POS; the result arrives on the channel.
func (w *world) payAsync(serviceID string, minor int64) <-chan payResult {
	ch := make(chan payResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		r, err := w.pos.Pay(ctx, serviceID, minor, "EUR", "KB")
		ch <- payResult{r, err}
	}()
	return ch
}

// answer waits for a payment's Nexo response.
func (w *world) answer(ch <-chan payResult, within time.Duration) *nexo.Response {
	w.t.Helper()
	select {
	case r := <-ch:
		require.NoError(w.t, r.err)
		require.NotNil(w.t, r.resp)
		return r.resp
	case <-time.After(within):
		w.t.Fatalf("no payment response within %s", within)
		return nil
	}
}

// awaitQR waits until the virtual terminal shows the QR of a transaction not
// awaited before (the screen of the previous payment may still be current).
func (w *world) awaitQR() display.Screen {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(w.t.Context(), 15*time.Second)
	defer cancel()
	for s := range w.PPaaS.Terminals().Watch(ctx, w.Agent.Serial()) {
		if s.State == "awaiting_consumer" && s.TransactionID != "" && !w.seen[s.TransactionID] {
			w.seen[s.TransactionID] = true
			return s
		}
	}
	w.t.Fatal("the terminal never showed a new QR")
	return display.Screen{}
}

// status asks TransactionStatus for serviceID and returns the repeated
// payment response.
func (w *world) status(serviceID string) *nexo.Response {
	w.t.Helper()
	st, err := w.pos.Status(w.t.Context(), serviceID)
	require.NoError(w.t, err)
	require.Equal(w.t, nexo.Success, st.Status.Result, simworld.Describe(st))
	require.NotNil(w.t, st.TransactionStatus)
	require.NotNil(w.t, st.TransactionStatus.Repeated)
	return st.TransactionStatus.Repeated
}

// charges is the number of approved charges the simulator made for the agent.
func (w *world) charges() int {
	_, c := w.PPaaS.Transactions()
	return c[w.Agent.Serial()]
}

// simTx is the simulator's record of the one transaction with ctid.
func (w *world) simTx(ctid string) sim.SimTransaction {
	w.t.Helper()
	tx, ok := w.PPaaS.Transaction(ctid)
	require.True(w.t, ok, "no transaction %s at the simulator", ctid)
	return tx
}

// qrPath is the QR engine's journaled path of a transaction: each state the
// engine moved to, in order, and what told it (agent, event, poll, cancel).
func (w *world) qrPath(ctid string) (states, sources []string) {
	w.t.Helper()
	txn, err := w.Agent.TestStore().Txn(w.t.Context(), ctid)
	require.NoError(w.t, err)
	for _, tr := range txn.Transitions {
		if !strings.HasPrefix(tr.State, "qr.") || tr.State == "qr.link" {
			continue
		}
		var qt qr.Transition
		require.NoError(w.t, json.Unmarshal(tr.Data, &qt))
		states = append(states, string(qt.To))
		sources = append(sources, qt.Source)
	}
	return states, sources
}

// qrStates is the QR engine's journaled states of a transaction.
func (w *world) qrStates(ctid string) []string {
	s, _ := w.qrPath(ctid)
	return s
}

// clearFaults removes every injected API fault (control API).
func (w *world) clearFaults() {
	w.t.Helper()
	req, err := http.NewRequestWithContext(w.t.Context(), http.MethodDelete, w.PPaaS.ControlURL()+"/control/faults", nil)
	require.NoError(w.t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(w.t, err)
	resp.Body.Close()
	require.Equal(w.t, http.StatusNoContent, resp.StatusCode)
}

// diagnosis asks the agent for its health as the POS sees it.
func (w *world) diagnosis() *nexo.DiagnosisResponse {
	w.t.Helper()
	d, err := w.pos.Diagnosis(w.t.Context())
	require.NoError(w.t, err)
	require.Equal(w.t, nexo.Success, d.Status.Result, simworld.Describe(d))
	return d.Diagnosis
}

func hostReachable(d *nexo.DiagnosisResponse, host string) bool {
	for _, h := range d.Hosts {
		if h.AcquirerID == host {
			return h.Reachable
		}
	}
	return false
}

// waitFor polls cond until it holds or within passes; on failure detail tells
// what the world looked like.
func (w *world) waitFor(within time.Duration, what string, cond func() bool, detail func() string) {
	w.t.Helper()
	testrig.WaitFor(w.t, within, what, cond, detail)
}

// queued counts the records of a kind waiting in the agent's outbox.
func (w *world) queued(kind store.Kind) int {
	w.t.Helper()
	recs, err := w.Agent.TestStore().List(w.t.Context(), 1000)
	require.NoError(w.t, err)
	n := 0
	for _, r := range recs {
		if r.Kind == kind {
			n++
		}
	}
	return n
}

// faultList is the simulator's active API faults, with their hits (control API).
func (w *world) faultList() []sim.Fault {
	w.t.Helper()
	req, err := http.NewRequestWithContext(w.t.Context(), http.MethodGet, w.PPaaS.ControlURL()+"/control/faults", nil)
	require.NoError(w.t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(w.t, err)
	defer resp.Body.Close()
	var out []sim.Fault
	require.NoError(w.t, json.NewDecoder(resp.Body).Decode(&out))
	return out
}
