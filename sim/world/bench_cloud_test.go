package world_test

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/internal/testrig"
	"github.com/termagent/termagent/internal/testrig/worldrig"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim"
	"github.com/termagent/termagent/sim/world"
	"github.com/termagent/termagent/store"
)

// BenchmarkCloudPayment measures a whole QR payment (instant-approve
// provider) from a local 3.x POS on the agent's /nexo and from a cloud v5 POS
// through the Retail API and the agent's websocket, alternating in the same
// run on the same agent: the cloud path's added latency and its ratio.
func BenchmarkCloudPayment(b *testing.B) {
	w, local := worldrig.Start(b, func(cfg *world.WorldConfig) {
		cfg.Cloud = true
		cfg.PPaaS.Payments.Provider = sim.ProviderApprove
		cfg.AgentOptions.StoreOptions = store.Options{NoSync: os.Getenv("BENCH_NOSYNC") != ""}
		cfg.AgentOptions.Forwarder = agent.ForwarderConfig{}
		worldrig.Agent(func(c *agent.Config) { c.LogLevel = "error" })(cfg)
	})
	ctx := b.Context()
	if err := w.Agent.Cloud().WaitConnected(ctx); err != nil {
		b.Fatal(err)
	}
	rc := &world.RetailClient{BaseURL: w.PPaaS.RetailURL(), HTTP: local.Client.HTTP}
	var devs []sim.RetailDevice
	testrig.WaitFor(b, 10*time.Second, "the device on the relay", func() bool {
		var err error
		devs, err = rc.Devices(ctx)
		return err == nil && len(devs) == 1 && devs[0].Connected
	})
	sess, err := rc.Open(ctx, devs[0].DeviceID, "CLOUD1", "")
	if err != nil {
		b.Fatal(err)
	}
	cloud := rc.POS(sess)
	var lt, ct []time.Duration
	b.ResetTimer()
	for i := range b.N {
		pos, into := local, &lt
		if i%2 == 1 {
			pos, into = cloud, &ct
		}
		start := time.Now()
		resp, err := pos.Pay(ctx, "", 1250, "EUR", "KB")
		if err != nil || resp.Status.Result != nexo.Success {
			b.Fatalf("payment: %v %s", err, world.Describe(resp))
		}
		*into = append(*into, time.Since(start))
	}
	b.StopTimer()
	if len(lt) == 0 || len(ct) == 0 {
		return
	}
	slices.Sort(lt)
	slices.Sort(ct)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lt[len(lt)/2]), "local-p50-ms")
	b.ReportMetric(ms(lt[len(lt)*99/100]), "local-p99-ms")
	b.ReportMetric(ms(ct[len(ct)/2]), "cloud-p50-ms")
	b.ReportMetric(ms(ct[len(ct)*99/100]), "cloud-p99-ms")
	b.ReportMetric(ms(ct[len(ct)/2]-lt[len(lt)/2]), "added-p50-ms")
	_, charges := w.PPaaS.Transactions()
	if charges[w.Agent.Serial()] != b.N {
		b.Fatalf("charges %d, want %d", charges[w.Agent.Serial()], b.N)
	}
}
