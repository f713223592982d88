// Package agent is the termagent orchestrator: it wires the configuration, the
// device authentication to PPaaS, the POS-facing Nexo server, the QR payment engine,
// the MQTT event subscriber, the durable store and the outbox forwarder, and owns
// their lifecycle from start to a clean shutdown.
package agent

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/termagent/termagent/internal/memtrim"
	"github.com/termagent/termagent/mtls"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// Build identifies the binary (stamped at link time).
type Build struct {
	Version string
	Commit  string
	Date    time.Time
}

// Options are the agent's optional collaborators.
type Options struct {
	// Display receives the terminal's screens besides the log (and the remote
	// display when display_url is set): the simulator passes its virtual
	// terminal here when it runs agents in-process.
	Display Screens
	// StoreOptions tune the durable store (tests shorten its clocks).
	StoreOptions store.Options
	// Forwarder tunes the outbox forwarder's backoff (tests use milliseconds).
	Forwarder ForwarderConfig
	// Now is the agent's local wall clock (nil: time.Now); the simulator's
	// clock-jump fault replaces it.
	Now func() time.Time
	// Refunds tunes the refund desk (agent/refund.go; tests use milliseconds).
	Refunds RefundTiming
	// Recover tunes how recovery asks again about the merchantscan payments
	// it could not locate (agent/recover_locate.go; tests use milliseconds).
	Recover RecoverTiming
	// Sweep tunes the after-sale sweep (agent/aftersale_sweep.go; tests use
	// milliseconds).
	Sweep SweepTiming
	// Steps bounds the QR engine's create and cancel calls (zero: 30 s and
	// 10 s); the Nexo server's wait for a payment past its deadline or an
	// abort is derived from them (serverGrace). Tests shorten them.
	Steps StepTiming
}

// StepTiming bounds a payment's create and cancel calls to PPaaS.
type StepTiming struct{ Create, Cancel time.Duration }

// Agent is a configured agent. Run starts it.
type Agent struct {
	cfg   Config
	build Build
	opts  Options
	log   *slog.Logger

	clock    *mtls.Clock
	dev      *mtls.DeviceTLS // nil in the demo custom-token mode
	platform *tls.Config     // TLS towards PPaaS (with the device certificate, if any)
	serial   string
	model    string
	poiid    string
	auth     *mtls.Authenticator
	authHTTP *http.Client
	api      *http.Client

	ready     chan struct{}
	readyOnce sync.Once
	mqttReady chan struct{} // closed at the first event subscription
	mqttOnce  sync.Once
	recovered chan struct{} // closed once restart recovery has run
	mu        sync.Mutex
	nexoAddr  net.Addr
	adminAddr net.Addr
	mqttUp    bool
	st        *store.Store
	after     *afterSale // after-sale updates (agent/aftersale.go); set in Run
	fwd       *Forwarder
	statuses  *ppaas.Statuses
	cloud     *CloudConnector // issue 16: nil when cloud_url is empty
	desk      *refundDesk     // refunds: agent/refund.go (read by degraded)
	sweep     *sweeper        // the after-sale sweep: agent/aftersale_sweep.go; nil when off
	scanner   *qr.Engine      // takes the terminal scanner's codes (agent/scan.go); set by Run

	unlocated atomic.Int64 // merchantscan payments recovery is still locating (agent/recover_locate.go)
}

// New validates the configuration and loads the device identity. Nothing touches
// the network or the data directory until Run. A nil log logs nothing.
func New(cfg Config, build Build, log *slog.Logger, opts Options) (*Agent, error) {
	cfg = cfg.Resolve()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler) // nil logs nothing, as everywhere in termagent
	}
	clock := mtls.NewClock(build.Date, opts.Now)
	a := &Agent{cfg: cfg, build: build, opts: opts, log: log, clock: clock, serial: cfg.Serial, model: cfg.Model, ready: make(chan struct{}), mqttReady: make(chan struct{})}
	a.recovered = make(chan struct{})
	tlsConfig, err := a.platformTLS()
	if err != nil {
		return nil, err
	}
	a.platform = tlsConfig
	a.poiid = cfg.poiidFor(a.model, a.serial)
	if p := poiidProblem(a.poiid, cfg.POIID == ""); p != "" {
		return nil, &FieldError{Field: "poiid", Msg: p}
	}
	if cfg.AuthURL != "" {
		log.Warn("auth_url is deprecated: set credentials_url and token_url (or -env)", "credentials_url", cfg.CredentialsURL, "token_url", cfg.TokenURL)
	}
	a.authHTTP = mtls.NewHTTPClientTLS(tlsConfig, nil, clock, 30*time.Second)
	grant := mtls.Grant{Password: cfg.Grant == GrantPassword, Username: cfg.Username, Secret: cfg.Password, UserDomain: cfg.UserDomain}
	if cfg.Grant == GrantDemoCustomToken {
		grant.CustomToken = &mtls.CustomToken{
			MerchantTokenURL: cfg.MerchantTokenURL,
			ClientID:         cfg.MerchantClientID,
			URL:              cfg.CustomTokenURL,
			DeviceModel:      a.model,
			DeviceID:         mtls.DeviceID(a.model, a.serial),
			Method:           cfg.DeviceMethod,
		}
	}
	a.auth, err = mtls.NewAuthenticator(mtls.AuthConfig{
		CredentialsURL: cfg.CredentialsURL,
		TokenURL:       cfg.TokenURL,
		Serial:         a.serial,
		Client:         a.authHTTP,
		Grant:          grant,
		Clock:          clock,
		Logger:         log.With("component", "auth"),
	})
	if err != nil {
		return nil, err
	}
	a.api = mtls.NewHTTPClientTLS(tlsConfig, a.auth, clock, 60*time.Second)
	return a, nil
}

// platformTLS is the TLS configuration towards PPaaS. With a device certificate
// it also sets the serial and model (config values win); the demo custom-token
// mode has none (the document's custom-token and API calls present none), and
// verifies PPaaS against the ca bundle, or the system roots when ca is empty.
func (a *Agent) platformTLS() (*tls.Config, error) {
	cfg := a.cfg
	if !cfg.usesClientCertificate() {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13}
		if cfg.CA != "" {
			pool, err := mtls.LoadCAPool(cfg.CA)
			if err != nil {
				return nil, fmt.Errorf("load CA bundle (grant %s: set ca to empty to use the system roots): %w", cfg.Grant, err)
			}
			tc.RootCAs = pool
		}
		return tc, nil
	}
	dev, err := mtls.LoadDeviceTLS(mtls.TLSFiles{Cert: cfg.Cert, Key: cfg.Key, CA: cfg.CA}, a.clock.Now)
	if err != nil {
		return nil, fmt.Errorf("load device identity: %w", err)
	}
	serial, model, err := mtls.Serial(dev.Leaf())
	if err != nil && cfg.Serial == "" {
		return nil, fmt.Errorf("load device identity: %w", err)
	}
	if cfg.Serial == "" {
		a.serial = serial
	}
	if cfg.Model == "" {
		a.model = model
	}
	if left := dev.ExpiresIn(); left < 30*24*time.Hour {
		a.log.Warn("device certificate expires soon", "in", left.Round(time.Hour), "not_after", dev.Leaf().NotAfter)
	}
	a.dev = dev
	return dev.Config(), nil
}

// Serial is the device serial number in use.
func (a *Agent) Serial() string { return a.serial }

// POIID is the identity the POS addresses.
func (a *Agent) POIID() string { return a.poiid }

// Ready is closed once the agent is authenticated and its Nexo server listens.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Recovered is closed once restart recovery has settled (or given to the
// outbox) what a previous run left unfinished; payments the POS starts
// meanwhile are this run's and never part of it.
func (a *Agent) Recovered() <-chan struct{} { return a.recovered }

// Subscribed is closed once the agent has subscribed to its provider events for
// the first time (never, when no MQTT broker is configured).
func (a *Agent) Subscribed() <-chan struct{} { return a.mqttReady }

// NexoURL is the POS endpoint (valid once Ready).
func (a *Agent) NexoURL() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.nexoAddr == nil {
		return ""
	}
	scheme := "https"
	if a.cfg.NexoPlainHTTP {
		scheme = "http"
	}
	return scheme + "://" + a.nexoAddr.String() + "/nexo"
}

// AdminURL is the admin listener's base URL (valid once Ready; empty if disabled).
func (a *Agent) AdminURL() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.adminAddr == nil {
		return ""
	}
	return "http://" + a.adminAddr.String()
}

// Run opens the store, authenticates, serves the POS and runs payments until ctx
// ends; then it stops accepting requests, lets the payment in flight finish (or
// parks it in the journal), stops every component and closes the store.
// The Nexo server's bounds on a terminal: a POI serves a few POS, each with
// a connection or two; 4,096 sealed messages an hour is more than one a
// second for the whole replay window (README, "Hostile input").
const (
	terminalMaxConns  = 16
	terminalMaxNonces = 4096
)

func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("termagent starting", "version", a.build.Version, "serial", a.serial, "model", a.model, "poiid", a.poiid,
		"env", a.cfg.Env, "grant", a.cfg.Grant, "credentials_url", a.cfg.CredentialsURL, "token_url", a.cfg.TokenURL, "api_url", a.cfg.APIURL)
	if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	sopts := a.opts.StoreOptions
	sopts.Logger = a.log.With("component", "store")
	if sopts.JournalMaxBytes == 0 {
		sopts.JournalMaxBytes = int64(a.cfg.JournalMaxBytes)
	}
	sopts.AdviceTxnID = adviceTxnID
	sopts.DependsOn = refundOriginal // refunds: agent/refund.go
	if sopts.Now == nil {
		sopts.Now = a.clock.Now // expiries and retention on the corrected clock
	}
	st, err := store.Open(ctx, a.cfg.DBPath(), sopts)
	if err != nil {
		if ce := (*store.CorruptError)(nil); errors.As(err, &ce) {
			return &corruptStoreError{ce: ce, dataDir: a.cfg.DataDir}
		}
		return fmt.Errorf("open store: %w", err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			a.log.Error("close store", "err", err)
		}
	}()
	a.st = st
	held := newHeldAdvices()
	after := newAfterSale(st, a.log.With("component", "aftersale")) // agent/aftersale.go
	a.after = after
	journaled := newJournaledEvents() // events applied in flight: journaled, not marked (agent/payments.go)
	j := journal{st: st, held: held, after: after, receipts: a.cfg.DigitalReceipts, restarted: time.Now(), last: newLastEntries(), journaled: journaled}
	// What a previous run left unfinished, listed before the POS can start a
	// payment: recovery must not take this run's payments for interrupted ones.
	unfinished, err := st.UnfinishedTxns(ctx)
	if err != nil {
		a.log.Error("list unfinished transactions", "err", err)
	}
	after.useRecovery(unfinished, err == nil, j.restarted) // their events are recovery's (agent/aftersale.go)

	screens := []Screens{logDisplay{log: a.log.With("component", "display")}}
	if a.cfg.DisplayURL != "" {
		screens = append(screens, RemoteDisplay{URL: a.cfg.DisplayURL, Client: &http.Client{Timeout: 5 * time.Second}})
	}
	if a.opts.Display != nil {
		screens = append(screens, a.opts.Display)
	}
	disp := displayAdapter{out: multiDisplay{outs: screens, log: a.log}, now: time.Now}
	screen := newAsyncDisplay(disp, a.log.With("component", "display"))

	statuses, _ := ppaas.ParseStatuses(a.cfg.PPaaSStatuses) // validated in New
	qlog := a.log.With("component", "qr")
	statuses.OnUnknown = func(raw string) {
		qlog.Warn("PPaaS sent a status this agent does not know; taken as pending (map it with ppaas_statuses)", "status", clip(raw))
	}
	a.statuses = statuses
	reasons, _ := ppaas.ParseChargebackReasons(a.cfg.PPaaSChargebackReasons) // validated in New
	statuses.SetChargebackReasons(reasons)
	after.useStatuses(statuses) // chargeback spellings (agent/aftersale.go)
	qc := qr.NewClient(a.api, a.cfg.APIURL, qr.Retry{}).WithStatuses(statuses)
	brands, _ := a.cfg.Brands() // validated in New
	confirmDefault, confirmPer, _ := a.cfg.ConfirmTimeouts()
	// The engine's steps after an abort or its timeout are bounded (the create
	// under way, then the cancel); the Nexo server waits them out, so the POS
	// is answered with the engine's outcome, never a guess (an "Aborted"
	// for a payment the consumer paid while the cancel was on its way).
	createTimeout, cancelTimeout := cmp.Or(a.opts.Steps.Create, 30*time.Second), cmp.Or(a.opts.Steps.Cancel, 10*time.Second)
	engineGrace := createTimeout + cancelTimeout + 5*time.Second
	engine, err := qr.NewEngine(qr.Config{
		Brands:        brands,
		Timeout:       a.cfg.PaymentTimeout,
		PollAfter:     a.cfg.EventWait,
		CreateTimeout: createTimeout,
		CancelTimeout: cancelTimeout,
		Logger:        a.log.With("component", "qr"),
		// Polling is the event source whenever no broker pushes events: none
		// configured, not yet subscribed, or down.
		PushEvents: a.mqttSubscribed,
		PollFirst:  a.cfg.PollFirst,
		PollCap:    a.cfg.PollMax,
		// issue 10: a paid payment waits for its provider's confirmation.
		ConfirmTimeout:  confirmDefault,
		ConfirmTimeouts: confirmPer,
	}, qc, j, advisor{st: st, held: held}, screen)
	if err != nil {
		return err
	}
	j.methods = apmEngine{qr: engine}.method
	j.qr = engine
	a.mu.Lock()
	a.scanner = engine // the terminal's scanner input (agent/scan.go)
	a.mu.Unlock()

	nexoTLS, err := a.nexoTLS()
	if err != nil {
		return err
	}
	var key *nexo.Key
	if a.cfg.NexoPassphrase != "" {
		if key, err = nexo.NewKey(a.cfg.NexoKeyIdentifier, a.cfg.NexoKeyVersion, a.cfg.NexoPassphrase); err != nil {
			return err
		}
	}
	m := newMetrics()
	m.knowMethods(brands)
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "termagent", Name: "ppaas_unknown_status_total",
		Help: "PPaaS answers and events with a status spelling the agent does not know (taken as pending; the spelling is logged once).",
	}, func() float64 { return float64(statuses.UnknownCount()) }))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "termagent", Name: "ppaas_oversized_total",
		Help: "PPaaS events and transactions refused for an id longer than 128 bytes (an event is logged, acked and not stored).",
	}, func() float64 { return float64(statuses.OversizedCount()) }))
	posClient := &http.Client{Timeout: 10 * time.Second}
	desk := a.opts.refundDesk() // refunds: agent/refund.go
	a.mu.Lock()
	a.desk = desk
	a.mu.Unlock()
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "termagent", Name: "refunds_manual",
		Help: "Refunds the refund desk gave up (PPaaS's answer cannot settle them): manual action needed.",
	}, func() float64 { return float64(desk.manual.Load()) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "termagent", Name: "recovery_unlocated",
		Help: "Merchantscan payments interrupted by a restart that recovery has not located at PPaaS yet (never charged again; given up to a person after a bound).",
	}, func() float64 { return float64(a.unlocated.Load()) }))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "termagent", Name: "refunds_given_up_total",
		Help: "Refunds the refund desk gave up to a person since start.",
	}, func() float64 { return float64(desk.gaveUp.Load()) }))
	// pos counts the POS requests being served; the forwarder waits for
	// them (issue 17).
	pos := &foreground{}
	srv, err := nexo.NewServer(nexo.ServerConfig{
		POIID:           a.poiid,
		POISerialNumber: a.serial,
		Strict:          a.cfg.Strict,
		TLSConfig:       nexoTLS,
		AllowPlainHTTP:  a.cfg.NexoPlainHTTP,
		Key:             key,
		EventURL:        a.cfg.POSEventURL,
		EventClient:     posClient,
		PaymentTimeout:  a.cfg.PaymentTimeout + engineGrace,
		AbortGrace:      serverGrace(engineGrace, engine.LongestConfirm()),
		// Sized for a terminal serving a few POS (issue 11): what a flood of
		// connections or sealed messages can hold is bounded by these.
		MaxConns:  terminalMaxConns,
		MaxNonces: terminalMaxNonces,
	}, nexo.Deps{
		Engine:       nexo.NewRouter(apmEngine{qr: engine, journal: j, metrics: m, refunds: desk}),
		Journal:      j,
		Display:      nexoDisplay(disp),
		Diagnoser:    diagnoser{a: a},
		Outbox:       posEvents{st: st},
		Observer:     m,
		InFlight:     pos,
		Ledger:       ledger{st: st},
		Synchroniser: platformSync{qc: qc},
	}, a.log.With("component", "nexo"))
	if err != nil {
		return err
	}
	m.watchNexo(srv)
	if a.cfg.POSEventURL != "" {
		after.connect(srv.SealEvent, m.afterSaleUpdate)
	} else {
		after.connect(nil, m.afterSaleUpdate)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", a.cfg.NexoListen)
	if err != nil {
		return fmt.Errorf("listen for the POS on %s: %w", a.cfg.NexoListen, err)
	}
	a.mu.Lock()
	a.nexoAddr = ln.Addr()
	a.mu.Unlock()

	fcfg := a.opts.Forwarder
	if fcfg.Now == nil {
		fcfg.Now = a.clock.Now
	}
	if fcfg.Foreground == nil {
		fcfg.Foreground = pos
	}
	snd := sender{api: a.api, apiURL: a.cfg.APIURL, pos: posClient, engine: engine, journal: j, logger: a.log.With("component", "forwarder")}
	a.fwd = NewForwarder(st, snd, fcfg, a.log)
	if n, err := snd.retellDeadLetters(ctx); err != nil {
		a.log.Error("dead-lettered reversals not checked against the journal", "err", err)
	} else if n > 0 {
		a.log.Warn("dead-lettered reversals told in their journal entries after a restart", "entries", n)
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return a.auth.Run(gctx) })
	g.Go(func() error { return a.fwd.Run(gctx) })
	g.Go(func() error { return screen.Run(gctx) })
	trim := &memtrim.Trimmer{Quiet: a.cfg.MemoryTrimAfter, Log: a.log,
		Activity: func() uint64 {
			return m.activity.Load() + uint64(srv.Stats().ConnsRefused) + uint64(a.fwd.Stats().Sent)
		}}
	m.watchTrims(trim)
	g.Go(func() error { return trim.Run(gctx) })
	// refunds: agent/refund_desk.go
	g.Go(func() error { return a.runRefundDesk(gctx, st, engine, desk, unfinished) })
	if every, _ := a.cfg.SweepInterval(); every > 0 || a.opts.Sweep.Interval > 0 { // validated in New
		sw := newSweeper(skippingLister{qc}, engine, after, pos, every, a.cfg.AfterSaleSweepWindow, a.opts.Sweep, a.clock.Now,
			a.log.With("component", "aftersale-sweep"), m.sweepOutcome)
		a.mu.Lock()
		a.sweep = sw
		a.mu.Unlock()
		g.Go(func() error { return sw.run(gctx) })
	}
	a.startCloud(gctx, g, srv.Exchange, srv.Busy) // issue 16
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("nexo server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		// Stop taking requests; a payment in flight is answered (or, past the
		// grace period, left InProgress in the journal for recovery at start).
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		a.notifyPOS(sctx, srv, "Shutdown", "termagent stopping")
		return srv.Shutdown(sctx)
	})
	if a.cfg.MQTTURL != "" {
		sub, err := qr.NewSubscriber(qr.SubscriberConfig{
			BrokerURL:   a.cfg.MQTTURL,
			Serial:      a.serial,
			TLS:         a.platform.Clone(),
			Credentials: a.auth,
			Events:      events{st: st, journaled: journaled},
			Handler:     eventRouter{engine: engine, after: after},
			Logger:      a.log.With("component", "mqtt"),
			Statuses:    statuses,
		})
		if err != nil {
			stop()
			_ = g.Wait()
			return err
		}
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "termagent", Name: "mqtt_oversized_events_total",
			Help: "MQTT events over 256 KiB, acknowledged and dropped unread (logged with their topic and size).",
		}, func() float64 { return float64(sub.Stats().OversizedEvents) }))
		g.Go(func() error { return sub.Run(gctx) })
		g.Go(func() error { a.watchMQTT(gctx, sub); return nil })
	}
	if a.cfg.AdminListen != "" {
		if err := a.startAdmin(gctx, g, m); err != nil {
			stop()
			_ = g.Wait()
			return err
		}
	}
	g.Go(func() error {
		if ok, err := a.waitAuthenticated(gctx); !ok {
			return err
		}
		a.readyOnce.Do(func() { close(a.ready) })
		a.log.Info("termagent ready", "pos", a.NexoURL(), "poiid", a.poiid)
		a.notifyPOS(gctx, srv, "Initialised", "termagent "+a.build.Version+" ready")
		a.fwd.Wake()
		left := a.recover(gctx, j, unfinished)
		close(a.recovered)
		a.relocate(gctx, j, left) // merchantscan payments not located yet: agent/recover_locate.go
		return nil
	})
	err = g.Wait()
	// Leave no connection behind: the platform's server would wait for it.
	for _, c := range []*http.Client{a.api, a.authHTTP, posClient} {
		c.CloseIdleConnections()
	}
	a.log.Info("termagent stopped")
	return err
}

func (a *Agent) nexoTLS() (*tls.Config, error) {
	if a.cfg.NexoPlainHTTP {
		return nil, nil
	}
	pair, err := mtls.LoadKeyPair(a.cfg.NexoCert, a.cfg.NexoKey)
	if err != nil {
		return nil, fmt.Errorf("nexo server certificate: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}, nil
}

// waitAuthenticated blocks until the first device token; the refresher retries with
// backoff, so a platform outage delays readiness rather than failing the agent. A
// configuration the platform's answer proves wrong (several merchant credentials
// and no user_domain choosing one) fails the start: retrying cannot fix it.
func (a *Agent) waitAuthenticated(ctx context.Context) (bool, error) {
	for {
		tok, err := a.auth.Current(ctx)
		if err == nil {
			a.log.Info("authenticated to PPaaS", "expires", tok.Expiry.Format(time.RFC3339), "lifetime", tok.Lifetime)
			return true, nil
		}
		if ctx.Err() != nil {
			return false, nil
		}
		if ce := (*mtls.CredentialsChoiceError)(nil); errors.As(err, &ce) {
			return false, fmt.Errorf("authenticate to PPaaS: %w", ce)
		}
		if !errors.Is(err, mtls.ErrBackoff) {
			a.log.Warn("not yet authenticated", "err", err)
		}
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, nil
		case <-t.C:
		}
	}
}

// watchMQTT tracks the broker connection for Diagnosis and wakes the forwarder
// when connectivity comes back.
func (a *Agent) watchMQTT(ctx context.Context, sub *qr.Subscriber) {
	for {
		if err := sub.WaitSubscribed(ctx); err != nil {
			return
		}
		a.setMQTT(true)
		a.mqttOnce.Do(func() { close(a.mqttReady) })
		a.fwd.Wake()
		if err := sub.WaitDown(ctx); err != nil {
			return
		}
		a.setMQTT(false)
	}
}

// mqttSubscribed reports whether provider events are being pushed now.
func (a *Agent) mqttSubscribed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mqttUp
}

func (a *Agent) setMQTT(up bool) {
	a.mu.Lock()
	a.mqttUp = up
	a.mu.Unlock()
}

// diagnoser answers Nexo Diagnosis from state the agent already has: no network
// call, so a Diagnosis is fast and works offline.
type diagnoser struct{ a *Agent }

// Diagnose implements nexo.Diagnoser.
func (d diagnoser) Diagnose(ctx context.Context) (nexo.Health, error) {
	a := d.a
	_, failures := a.auth.Stats()
	authOK := failures == 0
	select {
	case <-a.ready:
	default:
		authOK = false
	}
	a.mu.Lock()
	mqttUp := a.mqttUp
	a.mu.Unlock()
	hosts := []nexo.HostStatus{{AcquirerID: "PPaaS-auth", Reachable: authOK}, {AcquirerID: "PPaaS-API", Reachable: authOK}}
	if a.cfg.MQTTURL != "" {
		hosts = append(hosts, nexo.HostStatus{AcquirerID: "PPaaS-MQTT", Reachable: mqttUp})
	}
	if cc := a.Cloud(); cc != nil { // issue 16
		hosts = append(hosts, nexo.HostStatus{AcquirerID: "PPaaS-cloud", Reachable: cc.Connected()})
	}
	return nexo.Health{Hosts: hosts, OutboxDepth: int(a.st.Stats().Depth), Attention: a.degraded()}, nil
}

// dataPath is a file in the data dir.
func (a *Agent) dataPath(name string) string { return filepath.Join(a.cfg.DataDir, name) }

// notifyPOS sends an EventNotification to the POS when it gave an event URL; an
// unreachable POS gets it later from the outbox.
func (a *Agent) notifyPOS(ctx context.Context, srv *nexo.Server, event, details string) {
	if a.cfg.POSEventURL == "" {
		return
	}
	nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := srv.Notify(nctx, nexo.EventNotification{EventToNotify: event, EventDetails: details}); err != nil {
		a.log.Warn("POS event notification failed", "event", event, "err", err)
	}
}

// corruptStoreError is the store's CorruptError with the recovery command
// for this agent's data directory, ready to paste.
type corruptStoreError struct {
	ce      *store.CorruptError
	dataDir string
}

func (e *corruptStoreError) Error() string {
	return fmt.Sprintf("%s: %v: %v (refusing to start; `agent queue status -recover -data-dir %s` moves it aside and keeps what can be read)", e.ce.Path, store.ErrCorrupt, e.ce.Err, e.dataDir)
}

func (e *corruptStoreError) Unwrap() error { return e.ce }

// serverGrace is how long the Nexo server waits for a payment's engine once
// the payment's deadline has passed or the POS has aborted it, before it
// answers without the engine: the engine's own bounded steps after either
// (steps: a create under way, then the cancel) plus the longest wait for a
// paid payment's confirmation, which neither cuts short (qr.Engine). Any
// shorter, and a payment the consumer paid could be answered before its
// provider confirms it, then succeed (TestServerWaitsOutAPaidPaymentsConfirmation).
func serverGrace(steps, longestConfirm time.Duration) time.Duration {
	return steps + longestConfirm
}
