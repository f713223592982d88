package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/termagent/termagent/nexo"
)

// metrics are the agent's own Prometheus metrics, in its own registry (never the
// global one: several agents share a process in the simulator's fleet mode).
type metrics struct {
	reg          *prometheus.Registry
	nexoRequests *prometheus.CounterVec
	nexoLatency  *prometheus.HistogramVec
	apmOutcomes  *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		nexoRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "termagent", Name: "nexo_requests_total", Help: "Nexo requests answered, by category, result and error condition.",
		}, []string{"category", "result", "condition"}),
		nexoLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "termagent", Name: "nexo_request_duration_seconds", Help: "Time to answer a Nexo request, by category (payments include the consumer's time).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"category"}),
		apmOutcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "termagent", Name: "apm_transactions_total", Help: "QR APM payments by outcome and payment type.",
		}, []string{"outcome", "payment_type"}),
	}
	m.reg.MustRegister(m.nexoRequests, m.nexoLatency, m.apmOutcomes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveRequest implements nexo.Observer.
func (m *metrics) ObserveRequest(c nexo.MessageCategory, r nexo.Result, cond nexo.ErrorCondition, d time.Duration) {
	m.nexoRequests.WithLabelValues(string(c), string(r), string(cond)).Inc()
	m.nexoLatency.WithLabelValues(string(c)).Observe(d.Seconds())
}

func (m *metrics) apmOutcome(outcome, paymentType string) {
	if m != nil {
		m.apmOutcomes.WithLabelValues(outcome, paymentType).Inc()
	}
}
