package world_test

import (
	"slices"
	"testing"
	"time"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim/world"
)

// BenchmarkWorldRefund measures a referenced refund as a POS sees it (issue
// 14): a PaymentRequest of type Refund over HTTPS → agent (reservation on the
// original payment, PPaaS status read, refund call, journal) → simulated PPaaS
// refunding at once → PaymentResponse, 0.01 EUR at a time of approved 100.00
// EUR payments (a new one, untimed, when one is used up). Diagnosis round
// trips are sampled between refunds on the same agent, for the ratio.
func BenchmarkWorldRefund(b *testing.B) {
	_, pos := startWorldB(b)
	ctx := b.Context()
	var (
		orig    string
		left    int
		refunds = make([]time.Duration, 0, b.N)
		diags   = make([]time.Duration, 0, b.N)
	)
	pay := func() {
		resp, err := pos.Pay(ctx, "", 10000, "EUR", "KB")
		if err != nil || resp.Status.Result != nexo.Success {
			b.Fatalf("payment: %v %s", err, world.Describe(resp))
		}
		orig, left = resp.Payment.POITransactionID.ID, 10000
	}
	b.StopTimer()
	pay()
	for range b.N {
		if left == 0 {
			pay()
		}
		b.StartTimer()
		start := time.Now()
		resp, err := pos.Refund(ctx, "", orig, 1, "EUR")
		d := time.Since(start)
		b.StopTimer()
		if err != nil || resp.Status.Result != nexo.Success {
			b.Fatalf("refund: %v %s", err, world.Describe(resp))
		}
		left--
		refunds = append(refunds, d)
		start = time.Now()
		if _, err := pos.Diagnosis(ctx); err != nil {
			b.Fatalf("diagnosis: %v", err)
		}
		diags = append(diags, time.Since(start))
	}
	slices.Sort(refunds)
	slices.Sort(diags)
	p := func(d []time.Duration, q int) float64 { return float64(d[len(d)*q/100].Microseconds()) / 1000 }
	b.ReportMetric(p(refunds, 50), "refund-p50-ms")
	b.ReportMetric(p(refunds, 99), "refund-p99-ms")
	b.ReportMetric(p(diags, 50), "diagnosis-p50-ms")
	b.ReportMetric(p(refunds, 50)/p(diags, 50), "p50-ratio")
}
