package qr_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/certs"
	"github.com/termagent/termagent/mtls"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/sim"
)

// Fakes of the consumer-defined interfaces: the agent backs them with the
// journal, the outbox and the terminal display.

type recorder struct {
	mu sync.Mutex
	ts []qr.Transition
}

func (r *recorder) Record(_ context.Context, t qr.Transition) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ts = append(r.ts, t)
	return nil
}

func (r *recorder) of(ctid string) []qr.Transition {
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

type advisor struct {
	mu sync.Mutex
	as []qr.Advice
}

func (a *advisor) Advise(_ context.Context, x qr.Advice) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.as = append(a.as, x)
	return nil
}

type display struct {
	mu      sync.Mutex
	screens []qr.Screen
}

func (d *display) Show(_ context.Context, s qr.Screen) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.screens = append(d.screens, s)
	return nil
}

func (d *display) qrShown(ctid string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.screens {
		if s.ClientTransactionID != ctid || s.QR == nil {
			continue
		}
		png, err := s.QR.PNG()
		text, _ := s.QR.Text()
		return err == nil && len(png) > 0 && text != ""
	}
	return false
}

// countingLog counts duplicates the de-dup caught.
type countingLog struct {
	qr.MemoryEventLog
	dups atomic.Int64
}

func (l *countingLog) SeenEvent(ctx context.Context, id string) (bool, error) {
	seen, err := l.MemoryEventLog.SeenEvent(ctx, id)
	if seen {
		l.dups.Add(1)
	}
	return seen, err
}

// handler forwards events to the engine of the running subtest.
type handler struct{ eng atomic.Pointer[qr.Engine] }

func (h *handler) HandleEvent(ctx context.Context, ev ppaas.Event) error {
	if e := h.eng.Load(); e != nil {
		return e.HandleEvent(ctx, ev)
	}
	return nil
}

// countingCreds counts token requests made by the MQTT subscriber.
type countingCreds struct {
	src   qr.Credentials
	calls atomic.Int64
	bad   atomic.Bool
}

func (c *countingCreds) Invalidate(tok string) {
	if inv, ok := c.src.(interface{ Invalidate(string) }); ok {
		inv.Invalidate(tok)
	}
}

func (c *countingCreds) Token(ctx context.Context) (string, error) {
	c.calls.Add(1)
	if c.bad.Load() {
		return "not-a-jwt", nil
	}
	return c.src.Token(ctx)
}

type world struct {
	t      *testing.T
	sim    *sim.PPaaS
	dir    string
	serial string
	client *qr.Client
	rec    *recorder
	adv    *advisor
	disp   *display
	events *countingLog
	h      *handler
	creds  *countingCreds
	sub    *qr.Subscriber
	dev    *mtls.DeviceTLS
	broker string
	mosq   *mosquitto
}

type worldOpts struct {
	mosquitto bool
	provider  sim.ProviderMode
}

func newWorld(t *testing.T, o worldOpts) *world {
	t.Helper()
	w := &world{t: t, dir: t.TempDir(), rec: &recorder{}, adv: &advisor{}, disp: &display{}, events: &countingLog{}, h: &handler{}}
	res, err := certs.Generate(certs.Options{Dir: w.dir})
	require.NoError(t, err)
	w.serial = res.Serial
	pc := sim.PaymentsConfig{Provider: o.provider, MQTTAddr: "127.0.0.1:0"}
	if o.mosquitto {
		w.mosq = startMosquitto(t, w.dir, 0)
		pc.ExternalMQTTURL = w.mosq.url()
	}
	s, err := sim.New(sim.Config{Addr: "127.0.0.1:0", CertsDir: w.dir, Payments: pc})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, s.Start(ctx))
	w.sim = s
	w.broker = s.MQTTURL()

	w.dev, err = mtls.LoadDeviceTLS(mtls.TLSFiles{
		Cert: filepath.Join(w.dir, certs.ClientCertFile), Key: filepath.Join(w.dir, certs.ClientKeyFile), CA: filepath.Join(w.dir, certs.BundleFile),
	}, nil)
	require.NoError(t, err)
	auth, err := mtls.NewAuthenticator(mtls.AuthConfig{BaseURL: s.URL(), Serial: w.serial, Client: mtls.NewHTTPClient(w.dev, nil, nil, 10*time.Second)})
	require.NoError(t, err)
	w.client = qr.NewClient(mtls.NewHTTPClient(w.dev, auth, nil, 10*time.Second), s.URL(),
		qr.Retry{Attempts: 5, BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond, PerAttempt: 5 * time.Second})
	w.creds = &countingCreds{src: auth}
	w.sub, err = qr.NewSubscriber(qr.SubscriberConfig{
		BrokerURL: w.broker, Serial: w.serial, TLS: w.dev.Config(), Credentials: w.creds, Events: w.events, Handler: w.h,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, DeniedBackoff: time.Minute, Timeout: 5 * time.Second,
	})
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = w.sub.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		sctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		_ = s.Close(sctx)
	})
	w.waitSubscribed()
	return w
}

func (w *world) waitSubscribed() {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(w.t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(w.t, w.sub.WaitSubscribed(ctx))
}

// engine builds an engine for one subtest; events go to it.
func (w *world) engine(cfg qr.Config) *qr.Engine {
	w.t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.PollAfter == 0 {
		// Long enough that only MQTT events can finish a payment in time.
		cfg.PollAfter = 30 * time.Second
	}
	cfg.CancelTimeout = 5 * time.Second
	e, err := qr.NewEngine(cfg, w.client, w.rec, w.adv, w.disp)
	require.NoError(w.t, err)
	w.h.eng.Store(e)
	return e
}

type payResult struct {
	o   qr.Outcome
	err error
}

func (w *world) payAsync(ctx context.Context, e *qr.Engine, ctid string) <-chan payResult {
	ch := make(chan payResult, 1)
	go func() {
		o, err := e.Pay(ctx, qr.PaymentRequest{Brand: "KB", Amount: ppaas.Amount{Amount: 2000, Currency: "EUR"},
			OrderDescription: "e2e", ClientTransactionID: ctid})
		ch <- payResult{o, err}
	}()
	return ch
}

func (w *world) await(ch <-chan payResult) payResult {
	w.t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(20 * time.Second):
		w.t.Fatal("payment did not finish")
		return payResult{}
	}
}

// simTx waits until the simulator knows the transaction and returns it.
func (w *world) simTx(ctid string) sim.SimTransaction {
	w.t.Helper()
	var found sim.SimTransaction
	waitFor(w.t, func() bool {
		txs, _ := w.sim.Transactions()
		for _, tx := range txs {
			if tx.ClientTransactionID == ctid {
				found = tx
				return true
			}
		}
		return false
	})
	return found
}

func (w *world) charges() int {
	_, c := w.sim.Transactions()
	return c[w.serial]
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(2 * time.Millisecond) // polling a condition, not waiting for time to pass
	}
}

func states(ts []qr.Transition) []ppaas.State {
	out := make([]ppaas.State, len(ts))
	for i, t := range ts {
		out[i] = t.To
	}
	return out
}

func TestE2EEmbeddedBroker(t *testing.T) {
	w := newWorld(t, worldOpts{})
	runScenarios(t, w)

	t.Run("token expires mid-transaction", func(t *testing.T) {
		e := w.engine(qr.Config{PollAfter: 50 * time.Millisecond})
		ctid := uuid.NewString()
		ch := w.payAsync(t.Context(), e, ctid)
		tx := w.simTx(ctid)
		before := w.creds.calls.Load()
		w.sim.ExpireTokens()
		// The broker drops the device; it must come back with a fresh token, the
		// expired one would be refused. Polls meanwhile get 401 and re-authenticate.
		require.NoError(t, w.sim.KickDevice(w.serial))
		waitFor(t, func() bool { return w.creds.calls.Load() > before })
		w.waitSubscribed()
		_, err := w.sim.Act(tx.TransactionID, "pay")
		require.NoError(t, err)
		r := w.await(ch)
		require.NoError(t, r.err)
		require.Equal(t, qr.ResultApproved, r.o.Result)
	})

	t.Run("not authorized is not hammered", func(t *testing.T) {
		// A second subscriber with a token the broker refuses.
		creds := &countingCreds{}
		creds.bad.Store(true)
		sub, err := qr.NewSubscriber(qr.SubscriberConfig{
			BrokerURL: w.broker, Serial: w.serial, TLS: w.dev.Config(), Credentials: creds, Events: &qr.MemoryEventLog{}, Handler: w.h,
			MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, DeniedBackoff: time.Hour,
		})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = sub.Run(ctx)
		}()
		waitFor(t, func() bool { return creds.calls.Load() >= 2 })
		// With a 1 ms reconnect backoff a hammering client would make hundreds
		// of attempts in this window.
		wctx, wcancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		require.Error(t, sub.WaitSubscribed(wctx))
		wcancel()
		// One retry with a fresh token, then the long denial backoff.
		require.Equal(t, int64(2), creds.calls.Load())
		cancel()
		<-done
		w.waitSubscribed() // the real device is still fine
	})

	t.Run("outcome unknown then reversed", func(t *testing.T) {
		e := w.engine(qr.Config{})
		w.sim.AddFault(sim.Fault{Path: "/qrcode-payment/v1/transactions", Method: "POST", Reset: true})
		ctid := uuid.NewString()
		o, err := e.Pay(t.Context(), qr.PaymentRequest{Brand: "KB", Amount: ppaas.Amount{Amount: 500, Currency: "EUR"}, ClientTransactionID: ctid})
		require.NoError(t, err)
		require.Equal(t, qr.ResultUnknown, o.Result)
		w.adv.mu.Lock()
		require.NotEmpty(t, w.adv.as)
		a := w.adv.as[len(w.adv.as)-1]
		w.adv.mu.Unlock()
		require.Equal(t, ctid, a.ClientTransactionID)
		clearFaults(t, w.sim)
		o, err = e.ResolveAdvice(t.Context(), a)
		require.NoError(t, err)
		require.Equal(t, ppaas.Cancelled, o.State)
		require.Equal(t, ppaas.Cancelled, w.simTx(ctid).Status)
	})
}

func clearFaults(t *testing.T, s *sim.PPaaS) {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodDelete, s.ControlURL()+"/control/faults", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
}

func TestE2EMosquitto(t *testing.T) {
	if _, err := exec.LookPath("mosquitto"); err != nil {
		t.Skip("mosquitto binary not found (apt-get install mosquitto); the external-broker end-to-end test needs it")
	}
	w := newWorld(t, worldOpts{mosquitto: true})
	runScenarios(t, w)
}

// runScenarios are the payment stories both brokers must pass.
func runScenarios(t *testing.T, w *world) {
	t.Run("approve", func(t *testing.T) {
		e := w.engine(qr.Config{})
		ctid := uuid.NewString()
		before := w.charges()
		ch := w.payAsync(t.Context(), e, ctid)
		tx := w.simTx(ctid)
		waitFor(t, func() bool { return w.disp.qrShown(ctid) })
		_, err := w.sim.Act(tx.TransactionID, "pay")
		require.NoError(t, err)
		r := w.await(ch)
		require.NoError(t, r.err)
		require.Equal(t, qr.ResultApproved, r.o.Result)
		require.Equal(t, tx.TransactionID, r.o.TransactionID)
		require.Equal(t, tx.ProviderReference, r.o.ProviderReference)
		require.Equal(t, []ppaas.State{ppaas.Created, ppaas.AwaitingConsumer, ppaas.Pending, ppaas.Approved}, states(w.rec.of(ctid)))
		require.Equal(t, "event", w.rec.of(ctid)[3].Source)
		require.Equal(t, before+1, w.charges())
	})

	t.Run("decline", func(t *testing.T) {
		e := w.engine(qr.Config{})
		ctid := uuid.NewString()
		before := w.charges()
		ch := w.payAsync(t.Context(), e, ctid)
		_, err := w.sim.Act(w.simTx(ctid).TransactionID, "decline")
		require.NoError(t, err)
		r := w.await(ch)
		require.NoError(t, r.err)
		require.Equal(t, qr.ResultDeclined, r.o.Result)
		require.Equal(t, before, w.charges())
	})

	t.Run("consumer abandons", func(t *testing.T) {
		e := w.engine(qr.Config{Timeout: 300 * time.Millisecond})
		ctid := uuid.NewString()
		ch := w.payAsync(t.Context(), e, ctid)
		_, err := w.sim.Act(w.simTx(ctid).TransactionID, "abandon")
		require.NoError(t, err)
		r := w.await(ch)
		require.NoError(t, r.err)
		require.Equal(t, qr.ResultExpired, r.o.Result)
		require.Equal(t, ppaas.Cancelled, w.simTx(ctid).Status, "the agent cancelled at PPaaS")
	})

	t.Run("abort from the POS", func(t *testing.T) {
		e := w.engine(qr.Config{})
		ctid := uuid.NewString()
		ctx, cancel := context.WithCancelCause(t.Context())
		ch := w.payAsync(ctx, e, ctid)
		tx := w.simTx(ctid)
		waitFor(t, func() bool { return w.disp.qrShown(ctid) })
		cancel(errors.New("nexo abort"))
		r := w.await(ch)
		require.NoError(t, r.err)
		require.Equal(t, qr.ResultAborted, r.o.Result)
		require.Equal(t, ppaas.Cancelled, w.simTx(ctid).Status)
		_, err := w.sim.Act(tx.TransactionID, "pay")
		require.Error(t, err, "a cancelled transaction cannot be paid")
	})

	t.Run("duplicate and out-of-order events", func(t *testing.T) {
		e := w.engine(qr.Config{})
		ctid := uuid.NewString()
		before := w.events.dups.Load()
		ch := w.payAsync(t.Context(), e, ctid)
		tx := w.simTx(ctid)
		// pending is held back and sent after approved; approved is sent twice.
		w.sim.SetPaymentFaults(sim.PaymentFaults{ReorderEvents: 1, DuplicateEvents: 1})
		_, err := w.sim.Act(tx.TransactionID, "pay")
		require.NoError(t, err)
		r := w.await(ch)
		require.NoError(t, r.err)
		require.Equal(t, qr.ResultApproved, r.o.Result)
		waitFor(t, func() bool { return w.events.dups.Load() > before })
		got := states(w.rec.of(ctid))
		require.Equal(t, ppaas.Approved, got[len(got)-1])
		require.NotContains(t, got, ppaas.Pending, "the late pending event was not applied")
	})

	t.Run("API 5xx on create", func(t *testing.T) {
		e := w.engine(qr.Config{})
		require.NoError(t, w.sim.SetProviderMode(sim.ProviderApprove))
		defer func() { require.NoError(t, w.sim.SetProviderMode(sim.ProviderManual)) }()
		w.sim.SetPaymentFaults(sim.PaymentFaults{CreateErrors: 2})
		before := w.charges()
		ctid := uuid.NewString()
		r := w.await(w.payAsync(t.Context(), e, ctid))
		require.NoError(t, r.err)
		require.Equal(t, qr.ResultApproved, r.o.Result)
		tx := w.simTx(ctid)
		require.Equal(t, 3, tx.CreateCalls, "two lost responses, then success")
		require.Equal(t, before+1, w.charges(), "exactly one charge")
		n := 0
		txs, _ := w.sim.Transactions()
		for _, x := range txs {
			if x.ClientTransactionID == ctid {
				n++
			}
		}
		require.Equal(t, 1, n)
	})

	t.Run("broker down during the payment", func(t *testing.T) {
		e := w.engine(qr.Config{PollAfter: 50 * time.Millisecond, PollMax: 200 * time.Millisecond})
		ctid := uuid.NewString()
		ch := w.payAsync(t.Context(), e, ctid)
		tx := w.simTx(ctid)
		w.stopBroker()
		_, err := w.sim.Act(tx.TransactionID, "pay")
		require.NoError(t, err)
		r := w.await(ch)
		require.NoError(t, r.err)
		require.Equal(t, qr.ResultApproved, r.o.Result)
		ts := w.rec.of(ctid)
		require.Equal(t, "poll", ts[len(ts)-1].Source)
		w.startBroker()
		w.waitSubscribed()
	})
}

func (w *world) stopBroker() {
	w.t.Helper()
	if w.mosq != nil {
		w.mosq.stop()
		return
	}
	require.NoError(w.t, w.sim.StopBroker())
}

func (w *world) startBroker() {
	w.t.Helper()
	if w.mosq != nil {
		w.mosq = startMosquitto(w.t, w.dir, w.mosq.port)
		return
	}
	require.NoError(w.t, w.sim.StartBroker())
}

// mosquitto is a real broker run by the test with a generated configuration:
// TLS with the simulator's server certificate, anonymous access (the JWT is
// checked by the embedded broker only).
type mosquitto struct {
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func (m *mosquitto) url() string { return fmt.Sprintf("ssl://127.0.0.1:%d", m.port) }

func (m *mosquitto) stop() {
	if m.cmd.Process != nil {
		_ = m.cmd.Process.Kill()
	}
	<-m.done
}

func startMosquitto(t *testing.T, dir string, port int) *mosquitto {
	t.Helper()
	if port == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		port = l.Addr().(*net.TCPAddr).Port
		require.NoError(t, l.Close())
	}
	conf := fmt.Sprintf("listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nallow_anonymous true\npersistence false\nlog_type error\n",
		port, filepath.Join(dir, certs.CAFile), filepath.Join(dir, certs.ServerCertFile), filepath.Join(dir, certs.ServerKeyFile))
	if os.Geteuid() == 0 {
		conf += "user root\n" // keep access to the 0600 key in the test's temp dir
	}
	path := filepath.Join(dir, fmt.Sprintf("mosquitto-%d.conf", port))
	require.NoError(t, os.WriteFile(path, []byte(conf), 0o600))
	cmd := exec.Command("mosquitto", "-c", path)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	m := &mosquitto{port: port, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(m.done)
	}()
	t.Cleanup(m.stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return m
		}
		select {
		case <-m.done:
			t.Fatalf("mosquitto exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto did not listen on %d: %s", port, out.String())
		}
		time.Sleep(10 * time.Millisecond) // polling the port, not waiting for time to pass
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}

// BenchmarkPay measures Pay → Outcome with an instant-approve provider over
// sequential payments, and the time from the provider's decision (the final
// event handed to the broker) to the outcome.
func BenchmarkPay(b *testing.B) {
	bw := newBenchWorld(b)
	b.Run("display=none", func(b *testing.B) { benchPay(b, bw, nil) })
	// With a display the engine renders the QR to PNG and text on every payment.
	b.Run("display=qr", func(b *testing.B) { benchPay(b, bw, discard{}) })
}

type discard struct{}

func (discard) Show(context.Context, qr.Screen) error { return nil }

func benchPay(b *testing.B, bw *benchWorld, d qr.Display) {
	e, err := qr.NewEngine(qr.Config{Timeout: 10 * time.Second, PollAfter: 30 * time.Second}, bw.client, bw.rec, bw.adv, d)
	require.NoError(b, err)
	bw.h.eng.Store(e)
	totals := make([]time.Duration, 0, b.N)
	evToOut := make([]time.Duration, 0, b.N)
	ctx := b.Context()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		o, err := e.Pay(ctx, qr.PaymentRequest{Brand: "KB", Amount: ppaas.Amount{Amount: 100, Currency: "EUR"}})
		end := time.Now()
		if err != nil || o.Result != qr.ResultApproved {
			b.Fatalf("payment %d: %v %+v", i, err, o)
		}
		totals = append(totals, end.Sub(start))
		if at := bw.finalEventAt(o.TransactionID); !at.IsZero() {
			evToOut = append(evToOut, end.Sub(at))
		}
	}
	b.StopTimer()
	report(b, totals, "pay")
	report(b, evToOut, "event-to-outcome")
}

func report(b *testing.B, ds []time.Duration, name string) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	p := func(q float64) float64 { return float64(ds[int(q*float64(len(ds)-1))].Microseconds()) / 1000 }
	b.ReportMetric(p(0.50), name+"-p50-ms")
	b.ReportMetric(p(0.99), name+"-p99-ms")
}

type benchWorld struct {
	sim    *sim.PPaaS
	client *qr.Client
	rec    *recorder
	adv    *advisor
	h      *handler
}

func (bw *benchWorld) finalEventAt(id string) time.Time {
	txs, _ := bw.sim.Transactions()
	for _, tx := range txs {
		if tx.TransactionID == id {
			return tx.FinalEventAt
		}
	}
	return time.Time{}
}

func newBenchWorld(b *testing.B) *benchWorld {
	dir := b.TempDir()
	res, err := certs.Generate(certs.Options{Dir: dir})
	require.NoError(b, err)
	s, err := sim.New(sim.Config{Addr: "127.0.0.1:0", CertsDir: dir, Payments: sim.PaymentsConfig{Provider: sim.ProviderApprove, MQTTAddr: "127.0.0.1:0"}})
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(b, s.Start(ctx))
	dev, err := mtls.LoadDeviceTLS(mtls.TLSFiles{Cert: filepath.Join(dir, certs.ClientCertFile), Key: filepath.Join(dir, certs.ClientKeyFile), CA: filepath.Join(dir, certs.BundleFile)}, nil)
	require.NoError(b, err)
	auth, err := mtls.NewAuthenticator(mtls.AuthConfig{BaseURL: s.URL(), Serial: res.Serial, Client: mtls.NewHTTPClient(dev, nil, nil, 10*time.Second)})
	require.NoError(b, err)
	bw := &benchWorld{sim: s, rec: &recorder{}, adv: &advisor{}, h: &handler{}}
	bw.client = qr.NewClient(mtls.NewHTTPClient(dev, auth, nil, 10*time.Second), s.URL(), qr.Retry{})
	sub, err := qr.NewSubscriber(qr.SubscriberConfig{BrokerURL: s.MQTTURL(), Serial: res.Serial, TLS: dev.Config(), Credentials: auth, Events: &qr.MemoryEventLog{}, Handler: bw.h})
	require.NoError(b, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = sub.Run(ctx)
	}()
	b.Cleanup(func() {
		cancel()
		wg.Wait()
		sctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		_ = s.Close(sctx)
	})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	require.NoError(b, sub.WaitSubscribed(wctx))
	return bw
}
