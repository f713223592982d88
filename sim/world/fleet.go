package world

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/mtls"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim"
	"github.com/termagent/termagent/store"
)

// FleetConfig configures a fleet run: N simulated terminals, each an
// in-process agent with its own serial number, device certificate, data
// directory and Nexo listener, against one simulated PPaaS and broker whose
// providers approve at once.
type FleetConfig struct {
	Terminals int    // N, at least 1
	Payments  int    // payments per terminal (default 1)
	Dir       string // certificates (Dir/certs), devices (Dir/devices/{serial})
	// Concurrency is how many POS clients pay at once (default: one per
	// terminal, all at once); each terminal takes one payment at a time.
	Concurrency int
	// StartConcurrency is how many agents start (authenticate, subscribe) at
	// once (default 32).
	StartConcurrency int
	Brand            string // default KB
	Amount           int64  // minor units, default 100
	Currency         string // default EUR
	// MQTTURL, when set, is an external broker (e.g. Mosquitto) presenting a
	// certificate from Dir/certs's CA; the simulator publishes to it with
	// MQTTUsername and MQTTPassword.
	MQTTURL, MQTTUsername, MQTTPassword string
	// NoSync makes the agents' stores skip fsync. By default they fsync, as a
	// terminal does; one disk then stands in for N terminals' flash, so the
	// figure is bounded by that disk (make bench reports both).
	NoSync   bool
	Logger   *slog.Logger // default: discarded
	Progress io.Writer    // phase lines (nil: none)
}

// FleetReport is what a fleet run measured.
type FleetReport struct {
	Terminals int `json:"terminals"`
	Payments  int `json:"payments"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	// Failures counts failed payments by Nexo ErrorCondition (or transport error).
	Failures map[string]int `json:"failures,omitempty"`
	// Lost are payments the POS was told succeeded that PPaaS never charged;
	// Unreported are charges the POS was never told about; Duplicated are
	// charges beyond one per payment.
	Lost       int `json:"lost"`
	Unreported int `json:"unreported"`
	Duplicated int `json:"duplicated"`

	Broker            string        `json:"broker"`
	Fsync             bool          `json:"fsync"`       // the terminals' stores fsync
	StartTime         time.Duration `json:"startTimeNs"` // all agents ready
	PayTime           time.Duration `json:"payTimeNs"`   // first payment sent to last answered
	PaymentsPerSecond float64       `json:"paymentsPerSecond"`
	P50               time.Duration `json:"p50Ns"`
	P99               time.Duration `json:"p99Ns"`
	Max               time.Duration `json:"maxNs"`
	// Memory per terminal: Go heap in use and process RSS growth from before
	// the agents started, divided by N, once all are ready (idle) and after
	// the payments. The simulator's share (its connections, sessions and
	// records for the terminal) is included; an external broker's is not.
	HeapPerTerminalIdle uint64  `json:"heapPerTerminalIdle"`
	HeapPerTerminal     uint64  `json:"heapPerTerminal"`
	RSSPerTerminal      uint64  `json:"rssPerTerminal"`
	GoroutinesPerTerm   float64 `json:"goroutinesPerTerminal"`
}

// String renders the report for people.
func (r FleetReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fleet: %d terminals, broker %s, fsync %t, started in %s\n", r.Terminals, r.Broker, r.Fsync, r.StartTime.Round(time.Millisecond))
	fmt.Fprintf(&b, "payments: %d sent, %d succeeded, %d failed", r.Payments, r.Succeeded, r.Failed)
	if len(r.Failures) > 0 {
		keys := make([]string, 0, len(r.Failures))
		for k := range r.Failures {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %d", k, r.Failures[k]))
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
	}
	fmt.Fprintf(&b, "\nthroughput: %.1f payments/s over %s; latency p50 %s, p99 %s, max %s\n",
		r.PaymentsPerSecond, r.PayTime.Round(time.Millisecond), r.P50.Round(100*time.Microsecond), r.P99.Round(100*time.Microsecond), r.Max.Round(100*time.Microsecond))
	fmt.Fprintf(&b, "memory per terminal: heap %s idle, %s after payments; RSS %s; %.1f goroutines\n",
		kib(r.HeapPerTerminalIdle), kib(r.HeapPerTerminal), kib(r.RSSPerTerminal), r.GoroutinesPerTerm)
	fmt.Fprintf(&b, "lost: %d, duplicated: %d, charged but unreported: %d\n", r.Lost, r.Duplicated, r.Unreported)
	return b.String()
}

func kib(n uint64) string { return fmt.Sprintf("%.1f KiB", float64(n)/1024) }

// OK reports whether every payment succeeded, exactly once.
func (r FleetReport) OK() bool {
	return r.Failed == 0 && r.Lost == 0 && r.Duplicated == 0 && r.Unreported == 0 && r.Succeeded == r.Payments
}

// fleetTerminal is one simulated terminal.
type fleetTerminal struct {
	serial string
	agent  *agent.Agent
	done   chan error
	pos    *POS
}

// RunFleet starts the simulated PPaaS and N agents, drives the payments, stops
// everything and reports. An error means the fleet could not run; payment
// problems are in the report.
func RunFleet(ctx context.Context, cfg FleetConfig) (rep FleetReport, err error) {
	if cfg.Terminals < 1 {
		return rep, errors.New("fleet: at least one terminal")
	}
	if cfg.Payments <= 0 {
		cfg.Payments = 1
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = cfg.Terminals
	}
	if cfg.StartConcurrency <= 0 {
		cfg.StartConcurrency = 32
	}
	if cfg.Brand == "" {
		cfg.Brand = "KB"
	}
	if cfg.Amount <= 0 {
		cfg.Amount = 100
	}
	if cfg.Currency == "" {
		cfg.Currency = "EUR"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	progress := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", args...)
		}
	}
	rep.Terminals = cfg.Terminals

	certsDir := filepath.Join(cfg.Dir, "certs")
	if _, err := certs.Generate(certs.Options{Dir: certsDir}); err != nil {
		return rep, fmt.Errorf("fleet: %w", err)
	}
	p, err := sim.New(sim.Config{
		Addr: "127.0.0.1:0", CertsDir: certsDir, Logger: log.With("component", "sim"),
		Payments: sim.PaymentsConfig{Provider: sim.ProviderApprove, ExternalMQTTURL: cfg.MQTTURL,
			ExternalMQTTUsername: cfg.MQTTUsername, ExternalMQTTPassword: cfg.MQTTPassword},
	})
	if err != nil {
		return rep, fmt.Errorf("fleet: %w", err)
	}
	if err := p.Start(ctx); err != nil {
		return rep, fmt.Errorf("fleet: %w", err)
	}
	rep.Broker = p.MQTTURL()
	rep.Fsync = !cfg.NoSync
	if cfg.MQTTURL == "" {
		rep.Broker = "embedded " + rep.Broker
	}
	pool, err := mtls.LoadCAPool(filepath.Join(certsDir, certs.BundleFile))
	if err != nil {
		_ = p.Close(context.Background())
		return rep, fmt.Errorf("fleet: %w", err)
	}
	posTransport := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConns:    cfg.Terminals, MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute,
	}

	baseHeap, baseRSS := memory()
	baseGoroutines := runtime.NumGoroutine()
	runCtx, stopAgents := context.WithCancel(context.WithoutCancel(ctx))
	var terms []*fleetTerminal
	defer func() {
		// Stop every agent, then the platform.
		stopAt := time.Now()
		stopAgents()
		for _, t := range terms {
			if t.done == nil {
				continue
			}
			if aerr := <-t.done; aerr != nil && err == nil {
				err = fmt.Errorf("fleet: agent %s: %w", t.serial, aerr)
			}
		}
		posTransport.CloseIdleConnections()
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		agentsStopped := time.Since(stopAt)
		if cerr := p.Close(cctx); cerr != nil && err == nil {
			err = fmt.Errorf("fleet: stop the simulated PPaaS: %w", cerr)
		}
		progress("stopped: agents in %s, simulated PPaaS in %s", agentsStopped.Round(time.Millisecond), (time.Since(stopAt) - agentsStopped).Round(time.Millisecond))
	}()

	progress("starting %d terminals (certificates, stores, authentication, MQTT)…", cfg.Terminals)
	start := time.Now()
	terms = make([]*fleetTerminal, cfg.Terminals)
	for i := range terms {
		terms[i] = &fleetTerminal{serial: fleetSerial(i)}
	}
	if err := startTerminals(ctx, runCtx, cfg, p, certsDir, posTransport, terms, log); err != nil {
		return rep, err
	}
	rep.StartTime = time.Since(start)
	idleHeap, _ := memory()
	rep.HeapPerTerminalIdle = perTerminal(idleHeap, baseHeap, cfg.Terminals)
	rep.GoroutinesPerTerm = float64(runtime.NumGoroutine()-baseGoroutines) / float64(cfg.Terminals)
	progress("%d terminals ready in %s; paying %d × %d with %d POS clients at once…", cfg.Terminals, rep.StartTime.Round(time.Millisecond), cfg.Terminals, cfg.Payments, min(cfg.Concurrency, cfg.Terminals))

	payStart := time.Now()
	results := payFleet(ctx, cfg, terms)
	rep.PayTime = time.Since(payStart)
	rep.account(results, p)
	if s := rep.PayTime.Seconds(); s > 0 {
		rep.PaymentsPerSecond = float64(rep.Succeeded) / s
	}
	heap, rss := memory()
	rep.HeapPerTerminal = perTerminal(heap, baseHeap, cfg.Terminals)
	rep.RSSPerTerminal = perTerminal(rss, baseRSS, cfg.Terminals)
	return rep, ctx.Err()
}

// fleetSerial is terminal i's serial number (24 digits, as Ingenico's).
func fleetSerial(i int) string { return fmt.Sprintf("9000000000000000%08d", i+1) }

func startTerminals(ctx, runCtx context.Context, cfg FleetConfig, p *sim.PPaaS, certsDir string, posTransport *http.Transport, terms []*fleetTerminal, log *slog.Logger) error {
	sem := make(chan struct{}, cfg.StartConcurrency)
	errs := make(chan error, len(terms))
	var wg sync.WaitGroup
	for _, t := range terms {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("fleet: start terminals: %w", ctx.Err())
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := startTerminal(ctx, runCtx, cfg, p, certsDir, posTransport, t, log); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for e := range errs {
		all = append(all, e)
	}
	return errors.Join(all...)
}

func startTerminal(ctx, runCtx context.Context, cfg FleetConfig, p *sim.PPaaS, certsDir string, posTransport *http.Transport, t *fleetTerminal, log *slog.Logger) error {
	devDir := filepath.Join(cfg.Dir, "devices", t.serial)
	if err := certs.IssueDevice(certsDir, devDir, certs.DefaultModel, t.serial); err != nil {
		return fmt.Errorf("fleet: terminal %s: %w", t.serial, err)
	}
	ac := agent.DefaultConfig()
	ac.CredentialsURL, ac.TokenURL = p.URL()+mtls.CredentialsPath, p.URL()+mtls.TokenPath
	ac.APIURL, ac.MQTTURL = p.URL(), p.MQTTURL()
	ac.Cert, ac.Key, ac.CA = filepath.Join(devDir, certs.ClientCertFile), filepath.Join(devDir, certs.ClientKeyFile), filepath.Join(devDir, certs.BundleFile)
	ac.NexoCert, ac.NexoKey = filepath.Join(certsDir, certs.AgentCertFile), filepath.Join(certsDir, certs.AgentKeyFile)
	ac.NexoListen = "127.0.0.1:0"
	ac.DataDir = filepath.Join(devDir, "data")
	ac.AdminListen = ""
	ac.PaymentTimeout = 2 * time.Minute
	// Every terminal of the fleet shares one Go runtime: a collection is the
	// process's, so no terminal trims memory on its own.
	ac.MemoryTrimAfter = 0
	a, err := agent.New(ac, agent.Build{Version: "sim-fleet"}, log.With("serial", t.serial), agent.Options{
		Display:      terminalDisplay{t: p.Terminals(), serial: t.serial},
		StoreOptions: store.Options{NoSync: cfg.NoSync},
	})
	if err != nil {
		return fmt.Errorf("fleet: terminal %s: %w", t.serial, err)
	}
	t.agent = a
	t.done = make(chan error, 1)
	go func() { t.done <- a.Run(runCtx) }() // stopped and waited for by RunFleet
	for _, ready := range []<-chan struct{}{a.Ready(), a.Subscribed()} {
		select {
		case <-ready:
		case err := <-t.done:
			t.done <- err
			return fmt.Errorf("fleet: terminal %s stopped before ready: %w", t.serial, err)
		case <-ctx.Done():
			return fmt.Errorf("fleet: terminal %s not ready: %w", t.serial, ctx.Err())
		}
	}
	t.pos = &POS{
		Client: &nexo.Client{URL: a.NexoURL(), HTTP: &http.Client{Timeout: 3 * time.Minute, Transport: posTransport}},
		POIID:  a.POIID(), SaleID: "FLEET-POS",
	}
	return nil
}

type fleetPayment struct {
	serial  string
	latency time.Duration
	resp    *nexo.Response
	err     error
}

// payFleet runs every terminal's payments, one at a time per terminal, with
// at most cfg.Concurrency terminals paying at once.
func payFleet(ctx context.Context, cfg FleetConfig, terms []*fleetTerminal) []fleetPayment {
	results := make([]fleetPayment, 0, len(terms)*cfg.Payments)
	var mu sync.Mutex
	sem := make(chan struct{}, cfg.Concurrency)
	var wg sync.WaitGroup
	for _, t := range terms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			for range cfg.Payments {
				start := time.Now()
				resp, err := t.pos.Pay(ctx, "", cfg.Amount, cfg.Currency, cfg.Brand)
				r := fleetPayment{serial: t.serial, latency: time.Since(start), resp: resp, err: err}
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
				if ctx.Err() != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	return results
}

// account fills the report from the POS's results and the platform's charges.
func (rep *FleetReport) account(results []fleetPayment, p *sim.PPaaS) {
	rep.Payments = len(results)
	rep.Failures = map[string]int{}
	lat := make([]time.Duration, 0, len(results))
	told := map[string]int{} // PPaaS transaction id → POS successes
	for _, r := range results {
		lat = append(lat, r.latency)
		switch {
		case r.err != nil:
			rep.Failed++
			rep.Failures["transport"]++
		case r.resp.Status.Result != nexo.Success || r.resp.Payment == nil || r.resp.Payment.Result == nil:
			rep.Failed++
			rep.Failures[string(r.resp.Status.ErrorCondition)]++
		default:
			rep.Succeeded++
			told[r.resp.Payment.Result.ApprovalCode]++
		}
	}
	txs, _ := p.Transactions()
	charged := map[string]int{}
	for _, tx := range txs {
		charged[tx.TransactionID] = tx.Charges
		rep.Duplicated += max(tx.Charges-1, 0)
		if tx.Charges > 0 && told[tx.TransactionID] == 0 {
			rep.Unreported++
		}
	}
	for id, n := range told {
		if charged[id] == 0 {
			rep.Lost += n
		}
		rep.Duplicated += max(n-1, 0) // two successes for one charge: two sales, one payment
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		rep.P50 = lat[len(lat)/2]
		rep.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
		rep.Max = lat[len(lat)-1]
	}
}

// memory is the Go heap in use after a collection and the process RSS.
func memory() (heap, rss uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, residentSetSize()
}

// residentSetSize reads VmRSS from /proc (0 where there is none).
func residentSetSize() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}

func perTerminal(now, base uint64, n int) uint64 {
	if now < base {
		return 0
	}
	return (now - base) / uint64(n)
}
