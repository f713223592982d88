package sim_test

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim"
	"github.com/termagent/termagent/sim/simtest"
	"github.com/termagent/termagent/store"
)

// BenchmarkWorldPayment measures whole QR payments as a POS sees them: Nexo
// PaymentRequest over HTTPS → agent → simulated PPaaS with an instant-approve
// provider → approval event over MQTT → PaymentResponse. It reports the total
// latency, the agent's own share (total minus the time the simulated platform spent
// in the payment's own API calls and publishing its events — not in the forwarder's
// asynchronous result deliveries, which are off the payment's path) and the time from the simulator handing the
// approval event to its broker to the POS holding the response.
func BenchmarkWorldPayment(b *testing.B) {
	w, pos := startWorldB(b)
	ctx := b.Context()
	total := make([]time.Duration, 0, b.N)
	share := make([]time.Duration, 0, b.N)
	eventToResp := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		before := w.PPaaS.PaymentAPITime()
		start := time.Now()
		resp, err := pos.Pay(ctx, "", 1250, "EUR", "KB")
		end := time.Now()
		if err != nil || resp.Status.Result != nexo.Success {
			b.Fatalf("payment: %v %s", err, sim.Describe(resp))
		}
		simTime := w.PPaaS.PaymentAPITime() - before
		total = append(total, end.Sub(start))
		share = append(share, end.Sub(start)-simTime)
		b.StopTimer()
		if at := finalEventAt(w, resp.Payment.Result.ApprovalCode); !at.IsZero() {
			eventToResp = append(eventToResp, end.Sub(at))
		}
		b.StartTimer()
	}
	b.StopTimer()
	report := func(name string, d []time.Duration) {
		if len(d) == 0 {
			return
		}
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, name+"-p50-ms")
		b.ReportMetric(float64(d[len(d)*99/100].Microseconds())/1000, name+"-p99-ms")
	}
	report("total", total)
	report("agent", share)
	report("event-to-response", eventToResp)
	_, charges := w.PPaaS.Transactions()
	if charges[w.Agent.Serial()] != b.N {
		b.Fatalf("charges %d, want %d", charges[w.Agent.Serial()], b.N)
	}
}

// BenchmarkPaymentPollingMode measures the same whole payment with no broker:
// the agent learns the approval by polling (first poll after poll_first, 1 s),
// the path that must work on a platform that pushes no events.
func BenchmarkPaymentPollingMode(b *testing.B) {
	w, pos := simtest.Start(b, func(cfg *sim.WorldConfig) {
		cfg.PPaaS.Payments.Provider = sim.ProviderApprove
		cfg.AgentOptions.StoreOptions = store.Options{NoSync: os.Getenv("BENCH_NOSYNC") != ""}
		cfg.AgentOptions.Forwarder = agent.ForwarderConfig{}
		simtest.Agent(func(c *agent.Config) { c.LogLevel, c.MQTTURL, c.EventWait = "error", "", 5*time.Second })(cfg)
	})
	ctx := b.Context()
	total := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		resp, err := pos.Pay(ctx, "", 1250, "EUR", "KB")
		if err != nil || resp.Status.Result != nexo.Success {
			b.Fatalf("payment: %v %s", err, sim.Describe(resp))
		}
		total = append(total, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(total)
	b.ReportMetric(float64(total[len(total)/2].Microseconds())/1000, "total-p50-ms")
	b.ReportMetric(float64(total[len(total)*99/100].Microseconds())/1000, "total-p99-ms")
	_, charges := w.PPaaS.Transactions()
	if charges[w.Agent.Serial()] != b.N {
		b.Fatalf("charges %d, want %d", charges[w.Agent.Serial()], b.N)
	}
}

func startWorldB(b *testing.B) (*sim.World, *sim.POS) {
	b.Helper()
	return simtest.Start(b, func(cfg *sim.WorldConfig) {
		cfg.PPaaS.Payments.Provider = sim.ProviderApprove
		// The figure is for a durable agent: fsync on unless asked otherwise.
		cfg.AgentOptions.StoreOptions = store.Options{NoSync: os.Getenv("BENCH_NOSYNC") != ""}
		cfg.AgentOptions.Forwarder = agent.ForwarderConfig{}
		simtest.Agent(func(c *agent.Config) { c.LogLevel = "error" })(cfg)
	})
}

func finalEventAt(w *sim.World, id string) time.Time {
	txs, _ := w.PPaaS.Transactions()
	for _, tx := range txs {
		if tx.TransactionID == id {
			return tx.FinalEventAt
		}
	}
	return time.Time{}
}
