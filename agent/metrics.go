package agent

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/termagent/termagent/internal/memtrim"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/qr"
)

// metrics are the agent's own Prometheus metrics, in its own registry (never the
// global one: several agents share a process in the simulator's fleet mode).
//
// Every label value comes from a closed set: what a POS (or a provider) sends
// is never a label as is, or one peer could grow the registry, and every
// scrape, without bound. A value outside its set is counted as "other".
type metrics struct {
	reg          *prometheus.Registry
	nexoRequests *prometheus.CounterVec
	nexoLatency  *prometheus.HistogramVec
	apmOutcomes  *prometheus.CounterVec
	afterSale    *prometheus.CounterVec // agent/aftersale.go
	sweep        *prometheus.CounterVec // agent/aftersale_sweep.go
	activity     atomic.Uint64          // Nexo and admin requests answered: the memory trimmer's measure of work
	// paymentTypes are the configured APM methods' payment types, the
	// payment_type label's set.
	paymentTypes map[string]bool
}

// labelOther is the label value of anything outside a label's closed set.
const labelOther = "other"

var (
	nexoCategories = closedSet(nexo.CategoryLogin, nexo.CategoryLogout, nexo.CategoryPayment, nexo.CategoryReversal,
		nexo.CategoryAbort, nexo.CategoryTransactionStatus, nexo.CategoryDiagnosis, nexo.CategoryDisplay, nexo.CategoryEvent)
	nexoResults    = closedSet(nexo.Success, nexo.Failure, nexo.Partial, "Reject")
	nexoConditions = closedSet("", nexo.Aborted, nexo.Busy, nexo.Cancel, nexo.DeviceOut, nexo.InsertedCard, nexo.InProgress,
		nexo.LoggedOut, nexo.MessageFormat, nexo.NotAllowed, nexo.NotFound, nexo.PaymentRestriction, nexo.Refusal,
		nexo.UnavailableDevice, nexo.UnavailableService, nexo.UnreachableHost, nexo.WrongPIN)
	apmResults = closedSet(qr.ResultApproved, qr.ResultDeclined, qr.ResultCancelled, qr.ResultExpired, qr.ResultAborted, qr.ResultUnknown)
)

func closedSet[T ~string](vs ...T) map[string]bool {
	m := make(map[string]bool, len(vs))
	for _, v := range vs {
		m[string(v)] = true
	}
	return m
}

// label returns v if it is in set, else "other".
func label[T ~string](set map[string]bool, v T) string {
	if set[string(v)] {
		return string(v)
	}
	return labelOther
}

// knowMethods sets the payment_type label's set from the configured brands.
func (m *metrics) knowMethods(brands map[string]qr.Method) {
	m.paymentTypes = map[string]bool{}
	for _, b := range brands {
		m.paymentTypes[b.PaymentType] = true
	}
}

// paymentTypeLabel bounds the APM payment type label: the configured
// methods' types (a small operator-controlled set), else "other".
func paymentTypeLabel(known map[string]bool, pt string) string {
	if known[pt] {
		return pt
	}
	return labelOther
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		nexoRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "termagent", Name: "nexo_requests_total", Help: "Nexo requests answered, by category, result and error condition (values outside the Nexo code lists count as other).",
		}, []string{"category", "result", "condition"}),
		nexoLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "termagent", Name: "nexo_request_duration_seconds", Help: "Time to answer a Nexo request, by category (payments include the consumer's time).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"category"}),
		apmOutcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "termagent", Name: "apm_transactions_total", Help: "QR APM payments by outcome and payment type.",
		}, []string{"outcome", "payment_type"}),
	}
	m.afterSale = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "termagent", Name: "aftersale_updates_total",
		Help: "Payments whose truth changed after the POS was answered (refunded, charged_back, refund_completed, refund_owed, settled), journaled and notified to the POS.",
	}, []string{"kind"})
	m.sweep = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "termagent", Name: "aftersale_sweep_total",
		Help: "The after-sale sweep's outcomes: sweep (sweeps run), list_failed (listings that failed, retried at the next interval), update (updates it found and journaled), unknown (refunded transactions the journal does not know), failed (updates not handled, retried), undecodable (listed transactions the agent could not decode, left out).",
	}, []string{"outcome"})
	m.reg.MustRegister(m.nexoRequests, m.nexoLatency, m.apmOutcomes, m.afterSale, m.sweep,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveRequest implements nexo.Observer.
func (m *metrics) ObserveRequest(c nexo.MessageCategory, r nexo.Result, cond nexo.ErrorCondition, d time.Duration) {
	cat := label(nexoCategories, c)
	m.nexoRequests.WithLabelValues(cat, label(nexoResults, r), label(nexoConditions, cond)).Inc()
	m.nexoLatency.WithLabelValues(cat).Observe(d.Seconds())
	m.activity.Add(1)
}

func (m *metrics) apmOutcome(outcome, paymentType string) {
	if m != nil {
		m.apmOutcomes.WithLabelValues(label(apmResults, outcome), paymentTypeLabel(m.paymentTypes, paymentType)).Inc()
	}
}

// nexoStats is what the Nexo server reports about its bounded state.
type nexoStats interface{ Stats() nexo.Stats }

// watchNexo exports the Nexo server's caps: how full they are and how often
// a peer ran into them.
func (m *metrics) watchNexo(srv nexoStats) {
	gauge := func(name, help string, f func(nexo.Stats) float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "termagent", Name: name, Help: help}, func() float64 { return f(srv.Stats()) }))
	}
	counter := func(name, help string, f func(nexo.Stats) float64) {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "termagent", Name: name, Help: help}, func() float64 { return f(srv.Stats()) }))
	}
	gauge("nexo_logged_in", "SaleIDs logged in to the Nexo server.", func(s nexo.Stats) float64 { return float64(s.LoggedIn) })
	counter("nexo_logins_evicted_total", "SaleIDs logged out because too many were logged in.", func(s nexo.Stats) float64 { return float64(s.LoginsEvicted) })
	gauge("nexo_connections", "Connections open to the Nexo server.", func(s nexo.Stats) float64 { return float64(s.Conns) })
	counter("nexo_connections_refused_total", "Connections closed at once because too many were open, each busy with a request.", func(s nexo.Stats) float64 { return float64(s.ConnsRefused) })
	counter("nexo_connections_evicted_total", "Idle connections closed to make room for a new one.", func(s nexo.Stats) float64 { return float64(s.ConnsEvicted) })
	gauge("nexo_replay_nonces", "Nonces of protected messages remembered to refuse replays.", func(s nexo.Stats) float64 { return float64(s.Nonces) })
}

// watchTrims exports how often the agent handed memory back after a burst.
func (m *metrics) watchTrims(t *memtrim.Trimmer) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "termagent", Name: "memory_trims_total",
		Help: "Times the agent returned the memory a burst of traffic left behind to the OS, once quiet for memory_trim_after."},
		func() float64 { return float64(t.Trims()) }))
}

// afterSaleUpdate counts one after-sale update by kind (a closed set).
func (m *metrics) afterSaleUpdate(kind string) {
	m.afterSale.WithLabelValues(label(afterSaleKinds, kind)).Inc()
}

// sweepOutcome counts one outcome of the after-sale sweep (a closed set).
func (m *metrics) sweepOutcome(outcome string) {
	m.sweep.WithLabelValues(label(sweepOutcomes, outcome)).Inc()
}
