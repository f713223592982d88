// Package sim is the fake PPaaS platform the agent is tested against on
// loopback: the device authorization server and APIs on mutual TLS (port 9021
// by default), the qrcode-payment API with modelled payment providers, an MQTT
// broker that pushes provider events to devices, the Retail API and its
// websocket relay, fault injection, and a plain-HTTP control API for tests,
// the virtual terminal page and integrators' scripts. It speaks the wire of
// package ppaas and knows nothing of the device side (agent, store, nexo, qr;
// TestFakeImportsNoDeviceSide keeps it so): the harness that runs an agent
// against it is package sim/world.
package sim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/mtls"
)

// Config configures the simulated PPaaS.
type Config struct {
	// Addr is the mTLS listener for auth and APIs (default 127.0.0.1:9021).
	Addr string
	// ControlAddr is the plain-HTTP loopback listener of the control API
	// (default 127.0.0.1:0).
	ControlAddr string
	// ControlInsecure lets the control API listen on a non-loopback address
	// (anyone who reaches it can inject faults and pay transactions).
	ControlInsecure bool
	// CertsDir holds ca.pem, server.pem and server.key (see package certs).
	CertsDir string
	// TokenTTL is the life of issued access tokens (default 300 s, as PPaaS).
	TokenTTL time.Duration
	// Users are the end users accepted by the password grant (username → password);
	// default: the seed's generic merchant account.
	Users  map[string]string
	Logger *slog.Logger
	// Now is the simulator's clock (default time.Now); tests skew it.
	Now func() time.Time
	// Payments configures the qrcode-payment API, its provider and the MQTT broker.
	Payments PaymentsConfig
	// Retail configures the Retail API (issue 16: the cloud path).
	Retail RetailConfig
}

// PPaaS is a running simulated platform.
type PPaaS struct {
	cfg       Config
	log       *slog.Logger
	tls       *tls.Config
	mux       *http.ServeMux // mTLS API
	control   *http.ServeMux // plain-HTTP control API
	issuer    *issuer
	clock     *clock // cfg.Now plus the skew set at run time
	faults    *faults
	pay       *payments // qrcode-payment API and generic provider
	broker    broker    // where device events are published
	terminals *Terminals
	closing   chan struct{} // closed at Close: ends streams that Shutdown would wait for
	ingest    ingest        // device events received (outbox deliveries)

	mu       sync.Mutex
	rejected int                 // API requests refused for a bad or expired token
	merchant map[string]merchant // serial → credentials handed out
	clientID map[string]string   // clientId → serial

	// issue 13 (under mu): grants by kind; further merchant credentials per serial.
	authCount authCounters
	moreCreds map[string][]merchant

	apiLn, ctlLn net.Listener
	api, ctl     *http.Server
	wg           sync.WaitGroup
	closeOnce    sync.Once
	closeAll     sync.Once // Close runs once; a second call returns the first's error
	closeErr     error
	apiNanos     atomic.Int64 // time spent in API handlers and publishing events, for benchmarks
	ingestNanos  atomic.Int64 // of which in the device events ingest (the agent's forwarder)
	apiCalls     atomic.Int64 // API requests answered, device events ingest excluded
	paymentBusy  busyTime     // wall time in the payment's own API calls and event publishing

	// agentClock is the in-process agent's clock (control API), if any.
	agentClock atomic.Pointer[AgentClock]

	retail *retail // issue 16: the Retail API and its device relay
}

// timed accumulates the time the simulated platform spends answering, so a
// benchmark can tell the agent's share of a payment from the platform's.
func (p *PPaaS) timed(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ingest := r.URL.Path == EventsPath
		if !ingest {
			p.paymentBusy.enter()
		}
		start := time.Now()
		h.ServeHTTP(w, r)
		d := int64(time.Since(start))
		p.apiNanos.Add(d)
		if ingest {
			p.ingestNanos.Add(d)
		} else {
			p.paymentBusy.exit()
			p.apiCalls.Add(1)
		}
	})
}

// busyTime is the wall time during which at least one of its spans was open:
// the union of the spans, not their sum. The simulator publishes a payment's
// events while the API call that decided them is still answering; summing
// both would count that time twice and flatter the agent's share.
type busyTime struct {
	now   func() time.Time // nil: time.Now
	mu    sync.Mutex
	open  int
	since time.Time
	total time.Duration
}

func (b *busyTime) clock() time.Time {
	if b.now != nil {
		return b.now()
	}
	return time.Now()
}

// enter opens a span; on a nil busyTime (nothing measured) it does nothing,
// as exit does.
func (b *busyTime) enter() {
	if b == nil {
		return
	}
	b.mu.Lock()
	if b.open == 0 {
		b.since = b.clock()
	}
	b.open++
	b.mu.Unlock()
}

func (b *busyTime) exit() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.open--
	if b.open == 0 {
		b.total += b.clock().Sub(b.since)
	}
	b.mu.Unlock()
}

// get is the union so far, a span still open counting up to now.
func (b *busyTime) get() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.total
	if b.open > 0 {
		t += b.clock().Sub(b.since)
	}
	return t
}

// APITime is the total time the simulated platform has spent answering API calls
// and publishing provider events so far.
func (p *PPaaS) APITime() time.Duration { return time.Duration(p.apiNanos.Load()) }

// PaymentAPITime is the wall time the simulated platform has spent answering
// API calls and publishing provider events (each from its publishing
// goroutine taking it until its broker has), without the device events
// ingest: the agent's forwarder delivers transaction results asynchronously,
// off a payment's path, so a benchmark subtracting the platform's time from a
// payment's must not subtract those deliveries. Spans that overlap (an event
// published while its API call is still answering) count once.
func (p *PPaaS) PaymentAPITime() time.Duration { return p.paymentBusy.get() }

// EventQueueWait is the total time provider events waited in the simulator
// between their decision and their publishing goroutine taking them. It is
// not in PaymentAPITime: on a shared machine the wait may be the device's
// own work holding the CPU, so a benchmark leaves it in the device's share
// and shows its size.
func (p *PPaaS) EventQueueWait() time.Duration { return time.Duration(p.pay.queueWait.Load()) }

// PaymentAPICalls counts the API requests PaymentAPITime covers (round trips
// an agent made to the platform, its result deliveries excluded).
func (p *PPaaS) PaymentAPICalls() int64 { return p.apiCalls.Load() }

type merchant struct {
	MerchantName string `json:"merchantName"`
	UserDomain   string `json:"userDomain"`
	ClientID     string `json:"clientId"`
	ClientSecret string `json:"clientSecret"`
	Revoked      bool   `json:"-"`
}

// Device is the authenticated caller of an API request.
type Device struct {
	Serial   string
	Model    string
	ClientID string
}

type deviceKey struct{}

// DeviceFrom returns the device that a request's bearer token belongs to.
func DeviceFrom(ctx context.Context) (Device, bool) {
	d, ok := ctx.Value(deviceKey{}).(Device)
	return d, ok
}

// New loads the server certificate and CA and prepares the handlers. Nothing
// listens until Start.
func New(cfg Config) (*PPaaS, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:9021"
	}
	if cfg.ControlAddr == "" {
		cfg.ControlAddr = "127.0.0.1:0"
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 300 * time.Second
	}
	if cfg.Users == nil {
		cfg.Users = map[string]string{"merchant": "@Welcome123"}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	clk := &clock{base: cfg.Now}
	cfg.Now = clk.now
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pool, err := mtls.LoadCAPool(filepath.Join(cfg.CertsDir, certs.CAFile))
	if err != nil {
		return nil, fmt.Errorf("simulated PPaaS: %w", err)
	}
	pair, err := mtls.LoadKeyPair(filepath.Join(cfg.CertsDir, certs.ServerCertFile), filepath.Join(cfg.CertsDir, certs.ServerKeyFile))
	if err != nil {
		return nil, fmt.Errorf("simulated PPaaS: %w", err)
	}
	iss, err := newIssuer(cfg.TokenTTL, cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("simulated PPaaS: %w", err)
	}
	p := &PPaaS{
		cfg: cfg,
		log: log,
		tls: mtls.HardenServerTLS(&tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{pair},
			ClientCAs:    pool,
			ClientAuth:   tls.VerifyClientCertIfGiven,
		}),
		mux:       http.NewServeMux(),
		control:   http.NewServeMux(),
		issuer:    iss,
		clock:     clk,
		faults:    newFaults(clk),
		terminals: newTerminals(cfg.Now),
		closing:   make(chan struct{}),
		merchant:  map[string]merchant{},
		clientID:  map[string]string{},
	}
	if err := p.initPayments(); err != nil {
		return nil, err
	}
	p.routes()
	return p, nil
}

// TLSConfig is the server side TLS configuration (also used by the broker).
func (p *PPaaS) TLSConfig() *tls.Config { return p.tls.Clone() }

// routes registers every handler of the simulated platform.
func (p *PPaaS) routes() {
	p.mux.HandleFunc("GET /oauth2-mtls/v1/merchants-credentials", p.withCert(p.handleCredentials))
	p.mux.HandleFunc("POST /oauth2-mtls/v1/token", p.withCert(p.handleToken))
	p.mux.HandleFunc("GET /oauth2-mtls/v1/certs", p.handleJWKS)
	p.mux.HandleFunc("GET /resources/v1/countries", p.device(p.handleCountries))
	p.authRoutes()

	p.control.HandleFunc("GET /control/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	p.control.HandleFunc("POST /control/auth/expire-tokens", p.handleExpireTokens)
	p.control.HandleFunc("POST /control/auth/revoke/{serial}", p.handleRevoke)
	p.control.HandleFunc("POST /control/faults", p.faults.handleSet)
	p.control.HandleFunc("DELETE /control/faults", p.faults.handleClear)
	p.control.HandleFunc("GET /control/faults", p.faults.handleList)
	p.control.HandleFunc("GET /control/stats", p.handleStats)
	p.control.HandleFunc("GET /control/clock", p.handleClock)
	p.control.HandleFunc("POST /control/clock", p.handleClock)
	p.paymentsRoutes()
	p.terminalRoutes()
	p.eventRoutes()
	p.retailRoutes() // issue 16
}

// Start listens on both addresses and serves until Close.
func (p *PPaaS) Start(ctx context.Context) error {
	if err := checkControlAddr(p.cfg.ControlAddr, p.cfg.ControlInsecure); err != nil {
		return err
	}
	var lc net.ListenConfig
	apiLn, err := lc.Listen(ctx, "tcp", p.cfg.Addr)
	if err != nil {
		return fmt.Errorf("simulated PPaaS: listen %s: %w", p.cfg.Addr, err)
	}
	ctlLn, err := lc.Listen(ctx, "tcp", p.cfg.ControlAddr)
	if err != nil {
		apiLn.Close()
		return fmt.Errorf("simulated PPaaS: listen control %s: %w", p.cfg.ControlAddr, err)
	}
	if err := p.startPayments(); err != nil {
		apiLn.Close()
		ctlLn.Close()
		return err
	}
	p.apiLn, p.ctlLn = apiLn, ctlLn
	errLog := slog.NewLogLogger(p.log.Handler(), slog.LevelDebug)
	p.api = &http.Server{
		Handler:           p.timed(p.faults.wrap(p.mux)),
		TLSConfig:         p.tls,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          errLog,
	}
	p.ctl = &http.Server{Handler: guardControl(p.control), ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		if err := p.api.Serve(tls.NewListener(apiLn, p.tls)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("simulated PPaaS API stopped", "err", err)
		}
	}()
	go func() {
		defer p.wg.Done()
		if err := p.ctl.Serve(ctlLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("simulated PPaaS control API stopped", "err", err)
		}
	}()
	p.log.Info("simulated PPaaS listening", "api", p.URL(), "control", p.ControlURL())
	return nil
}

// URL is the base URL of the mTLS API, e.g. https://127.0.0.1:9021.
func (p *PPaaS) URL() string { return "https://" + p.apiLn.Addr().String() }

// ControlURL is the base URL of the control API.
func (p *PPaaS) ControlURL() string { return "http://" + p.ctlLn.Addr().String() }

// Close stops the listeners and waits for the servers to finish. It may be
// called more than once: later calls return the first's result.
func (p *PPaaS) Close(ctx context.Context) error {
	p.closeAll.Do(func() { p.closeErr = p.close(ctx) })
	return p.closeErr
}

func (p *PPaaS) close(ctx context.Context) error {
	p.closeOnce.Do(func() { close(p.closing) })
	var errs []error
	if p.api != nil {
		errs = append(errs, p.api.Shutdown(ctx))
	}
	if p.ctl != nil {
		errs = append(errs, p.ctl.Shutdown(ctx))
	}
	p.wg.Wait()
	p.closeRetail() // issue 16
	errs = append(errs, p.closePayments())
	return errors.Join(errs...)
}

// peerDevice is the identity in the client certificate of the connection.
func peerDevice(r *http.Request) (Device, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return Device{}, errors.New("no verified client certificate")
	}
	leaf := r.TLS.VerifiedChains[0][0]
	if !hasClientAuth(leaf) {
		return Device{}, errors.New("certificate is not for client authentication")
	}
	serial, model, err := mtls.Serial(leaf)
	if err != nil {
		return Device{}, err
	}
	return Device{Serial: serial, Model: model}, nil
}

func hasClientAuth(c *x509.Certificate) bool {
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return len(c.ExtKeyUsage) == 0
}

// withCert requires a device certificate signed by the device CA (port 9021 is
// mTLS-only for devices).
func (p *PPaaS) withCert(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := peerDevice(r)
		if err != nil {
			writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "mutual TLS required: "+err.Error())
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), deviceKey{}, d)))
	}
}

// device requires a valid bearer token issued to the device whose certificate is on
// the connection. A demo custom token is the exception: issued to a merchant for a
// device id, it is used without a certificate (the document's API call has none).
func (p *PPaaS) device(h http.HandlerFunc) http.HandlerFunc {
	checked := p.deviceWithCert(h)
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := peerDevice(r); err != nil {
			if raw, ok := bearer(r); ok {
				if c, err := p.issuer.verify(raw); err == nil && c.Custom {
					h(w, r.WithContext(context.WithValue(r.Context(), deviceKey{}, Device{Serial: c.Serial, Model: c.Model})))
					return
				}
			}
		}
		checked(w, r)
	}
}

func (p *PPaaS) deviceWithCert(h http.HandlerFunc) http.HandlerFunc {
	return p.withCert(func(w http.ResponseWriter, r *http.Request) {
		peer, _ := DeviceFrom(r.Context())
		raw, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ppaas"`)
			writeOAuthError(w, http.StatusUnauthorized, "invalid_token", "missing bearer token")
			return
		}
		d, err := p.VerifyToken(raw)
		if err != nil {
			p.mu.Lock()
			p.rejected++
			p.mu.Unlock()
			w.Header().Set("WWW-Authenticate", `Bearer realm="ppaas", error="invalid_token"`)
			writeOAuthError(w, http.StatusUnauthorized, "invalid_token", err.Error())
			return
		}
		if d.Serial != peer.Serial {
			writeOAuthError(w, http.StatusForbidden, "access_denied", "token was issued to another device")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), deviceKey{}, d)))
	})
}

// VerifyToken checks a device access token (signature, expiry, revocation) and
// returns the device it was issued to.
func (p *PPaaS) VerifyToken(raw string) (Device, error) {
	c, err := p.issuer.verify(raw)
	if err != nil {
		return Device{}, err
	}
	p.mu.Lock()
	m, known := p.merchant[c.Serial]
	p.mu.Unlock()
	if c.ClientID != "" && (!known || m.Revoked) {
		return Device{}, errors.New("device credentials revoked")
	}
	return Device{Serial: c.Serial, Model: c.Model, ClientID: c.ClientID}, nil
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !equalFoldASCII(h[:len(prefix)], prefix) {
		return "", false
	}
	return h[len(prefix):], true
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i]|0x20, b[i]|0x20
		if x != y {
			return false
		}
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}
