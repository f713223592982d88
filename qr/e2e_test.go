package qr_test

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/display"
	"github.com/termagent/termagent/internal/fake"
	"github.com/termagent/termagent/internal/testrig"
	"github.com/termagent/termagent/internal/testrig/enginerig"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/sim"
	simworld "github.com/termagent/termagent/sim/world"
)

// screenLog keeps the screens the engine shows (the agent's terminal display).
type screenLog struct {
	mu      sync.Mutex
	screens []display.Screen
}

func (d *screenLog) Show(_ context.Context, s display.Screen) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.screens = append(d.screens, s)
	return nil
}

func (d *screenLog) qrShown(ctid string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.screens {
		if s.ClientTransactionID != ctid || s.QR == nil {
			continue
		}
		png, err := s.QR.PNG()
		text, _ := s.QR.(*qr.QRImage).Text()
		return err == nil && len(png) > 0 && text != ""
	}
	return false
}

// countingCreds counts token requests made by the MQTT subscriber.
type countingCreds struct {
	src   qr.Credentials
	calls atomic.Int64
	bad   atomic.Bool
}

func (c *countingCreds) Invalidate(tok string) {
	if c.src != nil {
		c.src.Invalidate(tok)
	}
}

func (c *countingCreds) Token(ctx context.Context) (string, error) {
	c.calls.Add(1)
	if c.bad.Load() {
		return "not-a-jwt", nil
	}
	return c.src.Token(ctx)
}

// world is the engine rig with the display and the token counter these
// tests look at.
type world struct {
	*enginerig.Rig
	t     *testing.T
	disp  *screenLog
	creds *countingCreds
}

func newWorld(t *testing.T, o enginerig.Options) *world {
	t.Helper()
	w := &world{t: t, disp: &screenLog{}}
	o.Credentials = func(c qr.Credentials) qr.Credentials { w.creds = &countingCreds{src: c}; return w.creds }
	o.DeniedBackoff = time.Minute
	w.Rig = enginerig.Start(t, o)
	return w
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

func (w *world) lastAdvice() qr.Advice {
	w.t.Helper()
	as := w.Adv.Advices()
	require.NotEmpty(w.t, as)
	return as[len(as)-1]
}

func TestE2EEmbeddedBroker(t *testing.T) {
	w := newWorld(t, enginerig.Options{})
	runScenarios(t, w)

	t.Run("token expires mid-transaction", func(t *testing.T) {
		e := w.Engine(qr.Config{PollAfter: 50 * time.Millisecond}, w.disp)
		ctid := uuid.NewString()
		ch := w.payAsync(t.Context(), e, ctid)
		tx := w.WaitTx(ctid)
		before := w.creds.calls.Load()
		w.Sim.ExpireTokens()
		// The broker drops the device; it must come back with a fresh token, the
		// expired one would be refused. Polls meanwhile get 401 and re-authenticate.
		require.NoError(t, w.Sim.KickDevice(w.Serial))
		testrig.WaitFor(t, 10*time.Second, "a fresh token", func() bool { return w.creds.calls.Load() > before })
		w.WaitSubscribed()
		_, err := w.Sim.Act(tx.TransactionID, "pay")
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
			BrokerURL: w.Sim.MQTTURL(), Serial: w.Serial, TLS: w.Device.TLS.Config(), Credentials: creds, Events: &fake.EventLog{}, Handler: w.Handler,
			MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, DeniedBackoff: time.Hour,
		})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = sub.Run(ctx)
		}()
		testrig.WaitFor(t, 10*time.Second, "a retry with a fresh token", func() bool { return creds.calls.Load() >= 2 })
		// With a 1 ms reconnect backoff a hammering client would make hundreds
		// of attempts in this window.
		wctx, wcancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		require.Error(t, sub.WaitSubscribed(wctx))
		wcancel()
		// One retry with a fresh token, then the long denial backoff.
		require.Equal(t, int64(2), creds.calls.Load())
		cancel()
		<-done
		w.WaitSubscribed() // the real device is still fine
	})

	t.Run("outcome unknown then reversed", func(t *testing.T) {
		e := w.Engine(qr.Config{}, w.disp)
		w.Sim.AddFault(sim.Fault{Path: "/qrcode-payment/v1/transactions", Method: "POST", Reset: true})
		ctid := uuid.NewString()
		o, err := e.Pay(t.Context(), qr.PaymentRequest{Brand: "KB", Amount: ppaas.Amount{Amount: 500, Currency: "EUR"}, ClientTransactionID: ctid})
		require.NoError(t, err)
		require.Equal(t, qr.ResultUnknown, o.Result)
		a := w.lastAdvice()
		require.Equal(t, ctid, a.ClientTransactionID)
		w.Sim.ClearFaults()
		o, err = e.ResolveAdvice(t.Context(), a)
		require.NoError(t, err)
		require.Equal(t, ppaas.Cancelled, o.State)
		require.Equal(t, ppaas.Cancelled, w.WaitTx(ctid).Status)
	})
}

func TestE2EMosquitto(t *testing.T) {
	if _, err := exec.LookPath("mosquitto"); err != nil {
		t.Skip("mosquitto binary not found (apt-get install mosquitto); the external-broker end-to-end test needs it")
	}
	w := newWorld(t, enginerig.Options{Mosquitto: true})
	runScenarios(t, w)
}

// runScenarios are the payment stories both brokers must pass.
func runScenarios(t *testing.T, w *world) {
	t.Run("approve", func(t *testing.T) {
		e := w.Engine(qr.Config{}, w.disp)
		ctid := uuid.NewString()
		before := w.Charges()
		ch := w.payAsync(t.Context(), e, ctid)
		tx := w.WaitTx(ctid)
		testrig.WaitFor(t, 10*time.Second, "the QR on the display", func() bool { return w.disp.qrShown(ctid) })
		_, err := w.Sim.Act(tx.TransactionID, "pay")
		require.NoError(t, err)
		r := w.await(ch)
		require.NoError(t, r.err)
		require.Equal(t, qr.ResultApproved, r.o.Result)
		require.Equal(t, tx.TransactionID, r.o.TransactionID)
		require.Equal(t, tx.ProviderReference, r.o.ProviderReference)
		require.Equal(t, []ppaas.State{ppaas.Created, ppaas.AwaitingConsumer, ppaas.Pending, ppaas.Approved}, w.Rec.States(ctid))
		require.Equal(t, "event", w.Rec.Of(ctid)[3].Source)
		require.Equal(t, before+1, w.Charges())
	})

	t.Run("decline", func(t *testing.T) {
		e := w.Engine(qr.Config{}, w.disp)
		ctid := uuid.NewString()
		before := w.Charges()
		ch := w.payAsync(t.Context(), e, ctid)
		_, err := w.Sim.Act(w.WaitTx(ctid).TransactionID, "decline")
		require.NoError(t, err)
		r := w.await(ch)
		require.NoError(t, r.err)
		require.Equal(t, qr.ResultDeclined, r.o.Result)
		require.Equal(t, before, w.Charges())
	})

	t.Run("consumer abandons", func(t *testing.T) {
		e := w.Engine(qr.Config{Timeout: 300 * time.Millisecond}, w.disp)
		ctid := uuid.NewString()
		ch := w.payAsync(t.Context(), e, ctid)
		_, err := w.Sim.Act(w.WaitTx(ctid).TransactionID, "abandon")
		require.NoError(t, err)
		r := w.await(ch)
		require.NoError(t, r.err)
		require.Equal(t, qr.ResultExpired, r.o.Result)
		require.Equal(t, ppaas.Cancelled, w.WaitTx(ctid).Status, "the agent cancelled at PPaaS")
	})

	t.Run("abort from the POS", func(t *testing.T) {
		e := w.Engine(qr.Config{}, w.disp)
		ctid := uuid.NewString()
		ctx, cancel := context.WithCancelCause(t.Context())
		ch := w.payAsync(ctx, e, ctid)
		tx := w.WaitTx(ctid)
		testrig.WaitFor(t, 10*time.Second, "the QR on the display", func() bool { return w.disp.qrShown(ctid) })
		cancel(errors.New("nexo abort"))
		r := w.await(ch)
		require.NoError(t, r.err)
		require.Equal(t, qr.ResultAborted, r.o.Result)
		require.Equal(t, ppaas.Cancelled, w.WaitTx(ctid).Status)
		_, err := w.Sim.Act(tx.TransactionID, "pay")
		require.Error(t, err, "a cancelled transaction cannot be paid")
	})

	t.Run("duplicate and out-of-order events", func(t *testing.T) {
		e := w.Engine(qr.Config{}, w.disp)
		ctid := uuid.NewString()
		before := w.Events.Dups.Load()
		ch := w.payAsync(t.Context(), e, ctid)
		tx := w.WaitTx(ctid)
		// pending is held back and sent after approved; approved is sent twice.
		w.Sim.SetPaymentFaults(sim.PaymentFaults{ReorderEvents: 1, DuplicateEvents: 1})
		_, err := w.Sim.Act(tx.TransactionID, "pay")
		require.NoError(t, err)
		r := w.await(ch)
		require.NoError(t, r.err)
		require.Equal(t, qr.ResultApproved, r.o.Result)
		testrig.WaitFor(t, 10*time.Second, "a duplicate caught", func() bool { return w.Events.Dups.Load() > before })
		got := w.Rec.States(ctid)
		require.Equal(t, ppaas.Approved, got[len(got)-1])
		require.NotContains(t, got, ppaas.Pending, "the late pending event was not applied")
	})

	t.Run("API 5xx on create", func(t *testing.T) {
		e := w.Engine(qr.Config{}, w.disp)
		require.NoError(t, w.Sim.SetProviderMode(sim.ProviderApprove))
		defer func() { require.NoError(t, w.Sim.SetProviderMode(sim.ProviderManual)) }()
		w.Sim.SetPaymentFaults(sim.PaymentFaults{CreateErrors: 2})
		before := w.Charges()
		ctid := uuid.NewString()
		r := w.await(w.payAsync(t.Context(), e, ctid))
		require.NoError(t, r.err)
		require.Equal(t, qr.ResultApproved, r.o.Result)
		tx := w.WaitTx(ctid)
		require.Equal(t, 3, tx.CreateCalls, "two lost responses, then success")
		require.Equal(t, before+1, w.Charges(), "exactly one charge")
		n := 0
		txs, _ := w.Sim.Transactions()
		for _, x := range txs {
			if x.ClientTransactionID == ctid {
				n++
			}
		}
		require.Equal(t, 1, n)
	})

	t.Run("broker down during the payment", func(t *testing.T) {
		e := w.Engine(qr.Config{PollAfter: 50 * time.Millisecond, PollMax: 200 * time.Millisecond}, w.disp)
		ctid := uuid.NewString()
		ch := w.payAsync(t.Context(), e, ctid)
		tx := w.WaitTx(ctid)
		w.stopBroker()
		_, err := w.Sim.Act(tx.TransactionID, "pay")
		require.NoError(t, err)
		r := w.await(ch)
		require.NoError(t, r.err)
		require.Equal(t, qr.ResultApproved, r.o.Result)
		ts := w.Rec.Of(ctid)
		require.Equal(t, "poll", ts[len(ts)-1].Source)
		w.startBroker()
		w.WaitSubscribed()
	})
}

func (w *world) stopBroker() {
	w.t.Helper()
	if w.Mosquitto != nil {
		w.Mosquitto.Close()
		return
	}
	require.NoError(w.t, w.Sim.StopBroker())
}

func (w *world) startBroker() {
	w.t.Helper()
	if m := w.Mosquitto; m != nil {
		var err error
		w.Mosquitto, err = simworld.StartMosquittoOn(w.t.Context(), w.Dir, w.Dir, m.Port())
		require.NoError(w.t, err)
		return
	}
	require.NoError(w.t, w.Sim.StartBroker())
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

func (discard) Show(context.Context, display.Screen) error { return nil }

func benchPay(b *testing.B, bw *enginerig.Rig, d qr.Display) {
	e := bw.Engine(qr.Config{}, d)
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
		if at := finalEventAt(bw, o.TransactionID); !at.IsZero() {
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

func newBenchWorld(b *testing.B) *enginerig.Rig {
	return enginerig.Start(b, enginerig.Options{Payments: sim.PaymentsConfig{Provider: sim.ProviderApprove}})
}

func finalEventAt(r *enginerig.Rig, id string) time.Time {
	txs, _ := r.Sim.Transactions()
	for _, tx := range txs {
		if tx.TransactionID == id {
			return tx.FinalEventAt
		}
	}
	return time.Time{}
}
