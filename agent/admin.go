package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/termagent/termagent/store"
)

// degraded says what needs a person's attention, "" when nothing does: records
// the outbox gave up on (a reversal that failed, a result PPaaS never took).
func (a *Agent) degraded() string {
	if n := a.st.Stats().Dead; n > 0 {
		return fmt.Sprintf("%d outbox record(s) given up (dead letters): see `agent queue dead`, then `agent queue retry`", n)
	}
	a.mu.Lock()
	desk := a.desk
	a.mu.Unlock()
	if desk != nil { // refunds: agent/refund_desk.go
		if n := desk.manual.Load(); n > 0 {
			return fmt.Sprintf("%d refund(s) given up by the refund desk, manual action needed: see the ERROR log and TransactionStatus of each", n)
		}
	}
	return ""
}

// startAdmin serves /healthz, /readyz and /metrics on the loopback admin
// listener. Metrics live in the agent's own registry, not a global one.
func (a *Agent) startAdmin(ctx context.Context, g *errgroup.Group, m *metrics) error {
	reg := m.reg
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "termagent", Name: name, Help: help}, f))
	}
	counter := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "termagent", Name: name, Help: help}, f))
	}
	counter("token_refreshes_total", "Device tokens obtained from PPaaS.", func() float64 { n, _ := a.auth.Stats(); return float64(n) })
	gauge("token_consecutive_failures", "Device authentication failures since the last success.", func() float64 { _, n := a.auth.Stats(); return float64(n) })
	gauge("outbox_depth", "Events waiting in the outbox.", func() float64 { return float64(a.st.Stats().Depth) })
	gauge("outbox_bytes", "Bytes waiting in the outbox.", func() float64 { return float64(a.st.Stats().Bytes) })
	gauge("outbox_oldest_age_seconds", "Age of the oldest event waiting in the outbox.", func() float64 { return a.st.Stats().OldestAge.Seconds() })
	gauge("outbox_dead", "Events in the dead-letter bucket.", func() float64 { return float64(a.st.Stats().Dead) })
	counter("outbox_sent_total", "Events delivered by the forwarder.", func() float64 { return float64(a.fwd.Stats().Sent) })
	for k := store.KindTransactionResult; k <= store.KindNexoEvent; k++ {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "termagent", Name: "outbox_dead_total", Help: "Outbox records given up and moved to dead letters since start, by kind.",
			ConstLabels: prometheus.Labels{"kind": k.String()},
		}, func() float64 { return float64(a.fwd.Stats().DeadByKind[k]) }))
	}
	counter("outbox_retries_total", "Failed delivery attempts (retried later).", func() float64 { return float64(a.fwd.Stats().Failures) })
	counter("outbox_escalated_total", "Records still retried that were told to a person (a reversal PPaaS has not settled 30 min after it was queued; once per record and run).", func() float64 { return float64(a.fwd.Stats().Escalated) })
	gauge("mqtt_connected", "1 while the provider event subscription is up.", func() float64 {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.mqttUp {
			return 1
		}
		return 0
	})
	// issue 11: the journal's disk budget
	gauge("journal_bytes", "Size of the transaction journal.", func() float64 { return float64(a.st.JournalStats().Bytes) })
	gauge("journal_max_bytes", "Disk budget of the transaction journal (journal_max_bytes).", func() float64 { return float64(a.st.JournalStats().MaxBytes) })
	counter("journal_evicted_total", "Finished transactions evicted to keep the journal within its budget.", func() float64 { return float64(a.st.JournalStats().Evicted) })
	gauge("ready", "1 once authenticated and serving the POS.", func() float64 {
		select {
		case <-a.ready:
			return 1
		default:
			return 0
		}
	})

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("POST /scan", a.handleScan) // the terminal's scanner (agent/scan.go)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-a.ready:
		default:
			http.Error(w, "not ready: not yet authenticated to PPaaS", http.StatusServiceUnavailable)
			return
		}
		if why := a.degraded(); why != "" {
			http.Error(w, "degraded: "+why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
		if warn := journalWarning(a.st.JournalStats()); warn != "" {
			fmt.Fprintln(w, warn)
		}
	})
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", a.cfg.AdminListen)
	if err != nil {
		return fmt.Errorf("admin listener %s: %w", a.cfg.AdminListen, err)
	}
	a.mu.Lock()
	a.adminAddr = ln.Addr()
	a.mu.Unlock()
	a.log.Info("admin listening", "admin", "http://"+ln.Addr().String())
	// A scrape is work too: the memory trimmer hands its garbage back once
	// the agent is quiet again.
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r)
		m.activity.Add(1)
	})
	srv := &http.Server{Handler: counted, ReadHeaderTimeout: 5 * time.Second}
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return nil
}

// journalWarning is /readyz's warning when the journal is at 90% of its
// budget or more: still ready, but the oldest finished transactions are (or
// soon will be) evicted, so TransactionStatus forgets them sooner than the
// retention says.
func journalWarning(st store.JournalStats) string {
	if st.MaxBytes <= 0 || st.Bytes < st.MaxBytes*9/10 {
		return ""
	}
	return fmt.Sprintf("warning: journal at %d%% of journal_max_bytes (%d of %d bytes); the oldest finished transactions are evicted", st.Bytes*100/st.MaxBytes, st.Bytes, st.MaxBytes)
}
