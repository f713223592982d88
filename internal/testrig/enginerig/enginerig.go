// Package enginerig runs the device's QR engine for real against the fake
// platform: a simulated PPaaS (package sim) with its broker, the device's
// mTLS link, a qr.Client, an MQTT subscriber with event de-duplication, and
// in-memory fakes of the interfaces the agent backs with its journal and
// outbox. The qr package's end-to-end tests and the simulator's provider
// tests share it.
package enginerig

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/internal/fake"
	"github.com/termagent/termagent/internal/testrig"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/sim"
	"github.com/termagent/termagent/sim/world"
)

// Recorder keeps the transitions an engine records (the agent's journal).
type Recorder struct {
	mu      sync.Mutex
	ts      []qr.Transition
	scans   map[string]string // clientTransactionId → scanned code
	scanErr error             // RecordScan's answer when set
}

// Record implements qr.Recorder.
func (r *Recorder) Record(_ context.Context, t qr.Transition) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ts = append(r.ts, t)
	return nil
}

// RecordScan implements qr.Recorder.
func (r *Recorder) RecordScan(_ context.Context, ctid, code string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.scanErr != nil {
		return r.scanErr
	}
	if r.scans == nil {
		r.scans = map[string]string{}
	}
	r.scans[ctid] = code
	return nil
}

// FailScans makes RecordScan fail with err (nil: succeed again).
func (r *Recorder) FailScans(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.scanErr = err
}

// Scanned is the code RecordScan journaled for a client transaction id.
func (r *Recorder) Scanned(ctid string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.scans[ctid]
	return c, ok
}

// Of is the transitions recorded for a client transaction id, in order.
func (r *Recorder) Of(ctid string) []qr.Transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []qr.Transition
	for _, t := range r.ts {
		if t.ClientTransactionID == ctid {
			out = append(out, t)
		}
	}
	return out
}

// States is the states a client transaction moved to, in order.
func (r *Recorder) States(ctid string) []ppaas.State {
	var out []ppaas.State
	for _, t := range r.Of(ctid) {
		out = append(out, t.To)
	}
	return out
}

// Advisor keeps the advice (reversals to settle) an engine gives.
type Advisor struct {
	mu sync.Mutex
	as []qr.Advice
}

// Advise implements qr.Advisor.
func (a *Advisor) Advise(_ context.Context, x qr.Advice) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.as = append(a.as, x)
	return nil
}

// Advices is the advice given so far.
func (a *Advisor) Advices() []qr.Advice {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]qr.Advice(nil), a.as...)
}

// EventLog is the de-duplication log; Dups counts the duplicates it caught.
type EventLog struct {
	fake.EventLog
	Dups atomic.Int64
}

// SeenEvent implements qr.EventLog.
func (l *EventLog) SeenEvent(ctx context.Context, id string) (bool, error) {
	seen, err := l.EventLog.SeenEvent(ctx, id)
	if seen {
		l.Dups.Add(1)
	}
	return seen, err
}

// Handler keeps every event that got past the de-duplication and hands it
// to the engine in use (Use), if any.
type Handler struct {
	eng   atomic.Pointer[qr.Engine]
	mu    sync.Mutex
	evs   []ppaas.Event
	fail  func(ppaas.Event) bool // Fail
	fails int
}

// Fail makes the handler fail the next n events match picks (a journal
// write that did not commit): the subscriber leaves them unacked.
func (h *Handler) Fail(n int, match func(ppaas.Event) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fail, h.fails = match, n
}

// Use makes e the engine events go to.
func (h *Handler) Use(e *qr.Engine) { h.eng.Store(e) }

// HandleEvent implements qr.EventHandler.
func (h *Handler) HandleEvent(ctx context.Context, ev ppaas.Event) error {
	h.mu.Lock()
	h.evs = append(h.evs, ev)
	fail := h.fails > 0 && h.fail(ev)
	if fail {
		h.fails--
	}
	h.mu.Unlock()
	if fail {
		return errors.New("enginerig: handler told to fail this event")
	}
	if e := h.eng.Load(); e != nil {
		return e.HandleEvent(ctx, ev)
	}
	return nil
}

// Events is the events of a client transaction the device applied or ignored.
func (h *Handler) Events(ctid string) []ppaas.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []ppaas.Event
	for _, e := range h.evs {
		if e.ClientTransactionID == ctid {
			out = append(out, e)
		}
	}
	return out
}

// Options shape a rig; the zero value is the simulated PPaaS with its
// embedded broker and a manual provider.
type Options struct {
	Payments sim.PaymentsConfig
	// Mosquitto runs a real broker (world.StartMosquitto) as the platform's
	// external broker.
	Mosquitto bool
	// Retry is the client's; zero: 5 attempts, 5 ms to 50 ms apart.
	Retry qr.Retry
	// Credentials wraps the subscriber's token source (to count or spoil
	// the tokens it sends).
	Credentials func(qr.Credentials) qr.Credentials
	// DeniedBackoff is the subscriber's wait after the broker refused it.
	DeniedBackoff time.Duration
	// HeldRetry is how long the subscriber's session goes on while it holds
	// an event that keeps failing (qr.SubscriberConfig.HeldRetry).
	HeldRetry time.Duration
}

// Rig is a running fake platform and the device side of the QR engine.
type Rig struct {
	T         testing.TB
	Sim       *sim.PPaaS
	Dir       string // the certificates, and the Mosquitto configuration
	Serial    string
	Device    testrig.Device
	Client    *qr.Client
	Rec       *Recorder
	Adv       *Advisor
	Events    *EventLog
	Handler   *Handler
	Sub       *qr.Subscriber
	Mosquitto *world.Mosquitto // with Options.Mosquitto
	closed    bool
}

// Start starts a rig, stopped when the test ends, and returns once the
// subscriber is subscribed.
func Start(t testing.TB, o Options) *Rig {
	t.Helper()
	r := &Rig{T: t, Dir: t.TempDir(), Rec: &Recorder{}, Adv: &Advisor{}, Events: &EventLog{}, Handler: &Handler{}}
	res, err := certs.Generate(certs.Options{Dir: r.Dir})
	require.NoError(t, err)
	r.Serial = res.Serial
	pc := o.Payments
	if pc.MQTTAddr == "" {
		pc.MQTTAddr = "127.0.0.1:0"
	}
	if o.Mosquitto {
		r.Mosquitto, err = world.StartMosquitto(t.Context(), r.Dir, r.Dir)
		require.NoError(t, err)
		t.Cleanup(func() { r.Mosquitto.Close() })
		pc.ExternalMQTTURL = r.Mosquitto.URL()
	}
	r.Sim, err = sim.New(sim.Config{Addr: "127.0.0.1:0", CertsDir: r.Dir, Payments: pc})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, r.Sim.Start(ctx))

	r.Device = testrig.LinkDevice(t, r.Dir, r.Serial, r.Sim.URL())
	retry := o.Retry
	if retry == (qr.Retry{}) {
		retry = qr.Retry{Attempts: 5, BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond, PerAttempt: 5 * time.Second}
	}
	r.Client = qr.NewClient(r.Device.HTTP, r.Sim.URL(), retry)
	var creds qr.Credentials = r.Device.Auth
	if o.Credentials != nil {
		creds = o.Credentials(creds)
	}
	r.Sub, err = qr.NewSubscriber(qr.SubscriberConfig{
		BrokerURL: r.Sim.MQTTURL(), Serial: r.Serial, TLS: r.Device.TLS.Config(), Credentials: creds, Events: r.Events, Handler: r.Handler,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, DeniedBackoff: o.DeniedBackoff, Timeout: 5 * time.Second,
		HeldRetry: o.HeldRetry,
	})
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = r.Sub.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		r.Close()
	})
	r.WaitSubscribed()
	return r
}

// WaitSubscribed waits until the subscriber is subscribed to the device's
// events.
func (r *Rig) WaitSubscribed() {
	r.T.Helper()
	ctx, cancel := context.WithTimeout(r.T.Context(), 10*time.Second)
	defer cancel()
	require.NoError(r.T, r.Sub.WaitSubscribed(ctx))
}

// Engine builds an engine on the rig's client, recorder and advisor, and
// makes it the one events go to. Zero Timeout is 10 s; zero PollAfter is
// 30 s, long enough that only events finish a payment in time; CancelTimeout
// is 5 s.
func (r *Rig) Engine(cfg qr.Config, d qr.Display) *qr.Engine {
	r.T.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.PollAfter == 0 {
		cfg.PollAfter = 30 * time.Second
	}
	cfg.CancelTimeout = 5 * time.Second
	e, err := qr.NewEngine(cfg, r.Client, r.Rec, r.Adv, d)
	require.NoError(r.T, err)
	r.Handler.Use(e)
	return e
}

// Tx is the simulator's record of the transaction with ctid, if any.
func (r *Rig) Tx(ctid string) (sim.SimTransaction, bool) { return r.Sim.Transaction(ctid) }

// WaitTx waits until the simulator knows the transaction and returns it.
func (r *Rig) WaitTx(ctid string) sim.SimTransaction {
	r.T.Helper()
	var tx sim.SimTransaction
	testrig.WaitFor(r.T, 10*time.Second, "transaction "+ctid+" at the simulator", func() bool {
		var ok bool
		tx, ok = r.Tx(ctid)
		return ok
	})
	return tx
}

// Charges is the number of approved charges the simulator made for the device.
func (r *Rig) Charges() int {
	_, c := r.Sim.Transactions()
	return c[r.Serial]
}

// Close closes the simulated PPaaS (once), failing the test if that takes
// 5 s: Close must stop the providers' timers, not wait for them.
func (r *Rig) Close() {
	r.T.Helper()
	if r.closed {
		return
	}
	r.closed = true
	// A connection the client dialled but never used looks new, not idle, to
	// the server, whose Shutdown would wait 5 s for it.
	r.Device.HTTP.CloseIdleConnections()
	done := make(chan error, 1)
	go func() {
		ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		done <- r.Sim.Close(ctx)
	}()
	select {
	case err := <-done:
		require.NoError(r.T, err)
	case <-time.After(5 * time.Second):
		r.T.Fatal("simulated PPaaS Close did not return: provider timers not stopped")
	}
}
