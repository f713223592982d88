package world_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
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

// The provider end-to-end tests run the device side for real: the qr Engine
// (as the agent wires it) with its MQTT subscriber and event de-dup, against
// the simulated PPaaS, its embedded broker and the modelled providers.

// pvRecorder keeps the transitions the engine records (the agent's journal).
type pvRecorder struct {
	mu sync.Mutex
	ts []qr.Transition
}

func (r *pvRecorder) Record(_ context.Context, t qr.Transition) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ts = append(r.ts, t)
	return nil
}

func (r *pvRecorder) states(ctid string) []ppaas.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []ppaas.State
	for _, t := range r.ts {
		if t.ClientTransactionID == ctid {
			out = append(out, t.To)
		}
	}
	return out
}

type pvAdvisor struct{}

func (pvAdvisor) Advise(context.Context, qr.Advice) error { return nil }

// pvEvents is the de-dup log; it counts the duplicates it caught.
type pvEvents struct {
	qr.MemoryEventLog
	dups atomic.Int64
}

func (l *pvEvents) SeenEvent(ctx context.Context, id string) (bool, error) {
	seen, err := l.MemoryEventLog.SeenEvent(ctx, id)
	if seen {
		l.dups.Add(1)
	}
	return seen, err
}

// pvHandler feeds the engine and keeps every event that got past the de-dup.
type pvHandler struct {
	eng *qr.Engine
	mu  sync.Mutex
	evs []ppaas.Event
}

func (h *pvHandler) HandleEvent(ctx context.Context, ev ppaas.Event) error {
	h.mu.Lock()
	h.evs = append(h.evs, ev)
	h.mu.Unlock()
	return h.eng.HandleEvent(ctx, ev)
}

// events returns the events of a transaction the device applied or ignored.
func (h *pvHandler) events(ctid string) []ppaas.Event {
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

// rawStatuses lists the provider's raw statuses carried by a transaction's events.
func (h *pvHandler) rawStatuses(ctid string) []string {
	var out []string
	for _, e := range h.events(ctid) {
		out = append(out, e.Provider["status"])
	}
	return out
}

type pvWorld struct {
	t      *testing.T
	sim    *sim.PPaaS
	http   *http.Client // the device's API client
	closed bool
	serial string
	rec    *pvRecorder
	events *pvEvents
	h      *pvHandler
	eng    *qr.Engine
}

func pvBrands() map[string]qr.Method {
	return map[string]qr.Method{
		"KB":         {PaymentType: "KB", Scenario: ppaas.ConsumerScan},
		"PENNYMATIC": {PaymentType: "PENNYMATIC", Scenario: ppaas.ConsumerScan},
		"PLEDG":      {PaymentType: "PLEDG", Scenario: ppaas.ConsumerScan},
		"KTWIDGET":   {PaymentType: "KTWIDGET", Scenario: ppaas.ConsumerScan},
		"PTI":        {PaymentType: "PTI", Scenario: ppaas.ConsumerScan},
		"BITCOIN":    {PaymentType: "BITCOIN", Scenario: ppaas.ConsumerScan},
	}
}

// pvProviders are settings that keep every provider story in milliseconds.
func pvProviders() sim.ProvidersConfig {
	return sim.ProvidersConfig{
		Pennymatic: sim.PennymaticConfig{ConfirmDelay: 100 * time.Millisecond},
		Pledg:      sim.PledgConfig{Shares: 2, Deadline: 1500 * time.Millisecond},
		KTWidget:   sim.KTWidgetConfig{RetryScale: 0.0001, LostAcks: 3, ClearingDelay: 20 * time.Millisecond},
	}
}

func newPVWorld(t *testing.T, pc sim.ProvidersConfig) *pvWorld {
	t.Helper()
	dir := t.TempDir()
	res, err := certs.Generate(certs.Options{Dir: dir})
	require.NoError(t, err)
	s, err := sim.New(sim.Config{Addr: "127.0.0.1:0", CertsDir: dir, Payments: sim.PaymentsConfig{Providers: pc}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, s.Start(ctx))
	w := &pvWorld{t: t, sim: s, serial: res.Serial, rec: &pvRecorder{}, events: &pvEvents{}}

	dev, err := mtls.LoadDeviceTLS(mtls.TLSFiles{
		Cert: filepath.Join(dir, certs.ClientCertFile), Key: filepath.Join(dir, certs.ClientKeyFile), CA: filepath.Join(dir, certs.BundleFile),
	}, nil)
	require.NoError(t, err)
	auth, err := mtls.NewAuthenticator(mtls.AuthConfig{BaseURL: s.URL(), Serial: w.serial, Client: mtls.NewHTTPClient(dev, nil, nil, 10*time.Second)})
	require.NoError(t, err)
	w.http = mtls.NewHTTPClient(dev, auth, nil, 10*time.Second)
	client := qr.NewClient(w.http, s.URL(),
		qr.Retry{Attempts: 5, BaseDelay: 5 * time.Millisecond, MaxDelay: 50 * time.Millisecond, PerAttempt: 5 * time.Second})
	// PollAfter is long: outcomes must arrive as events, as the device
	// normally gets them.
	w.eng, err = qr.NewEngine(qr.Config{Brands: pvBrands(), Timeout: 15 * time.Second, PollAfter: 30 * time.Second, CancelTimeout: 5 * time.Second},
		client, w.rec, pvAdvisor{}, nil)
	require.NoError(t, err)
	w.h = &pvHandler{eng: w.eng}
	sub, err := qr.NewSubscriber(qr.SubscriberConfig{
		BrokerURL: s.MQTTURL(), Serial: w.serial, TLS: dev.Config(), Credentials: auth, Events: w.events, Handler: w.h,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Timeout: 5 * time.Second,
	})
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = sub.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		w.close()
	})
	sctx, stop := context.WithTimeout(t.Context(), 10*time.Second)
	defer stop()
	require.NoError(t, sub.WaitSubscribed(sctx))
	return w
}

// close closes the simulated PPaaS (once), failing the test if that takes
// long: Close must stop the providers' timers, not wait for them.
func (w *pvWorld) close() {
	w.t.Helper()
	if w.closed {
		return
	}
	w.closed = true
	// A connection the client dialled but never used looks new, not idle, to
	// the server, whose Shutdown would wait 5 s for it.
	w.http.CloseIdleConnections()
	done := make(chan error, 1)
	go func() {
		ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		done <- w.sim.Close(ctx)
	}()
	select {
	case err := <-done:
		require.NoError(w.t, err)
	case <-time.After(5 * time.Second):
		w.t.Fatal("simulated PPaaS Close did not return: provider timers not stopped")
	}
}

type pvResult struct {
	o   qr.Outcome
	err error
}

// pay starts a payment and returns its result channel and, once the device
// shows the QR, the transaction. One request at a time, so the device keeps a
// single connection.
func (w *pvWorld) pay(ctx context.Context, brand, description string) (<-chan pvResult, sim.SimTransaction) {
	w.t.Helper()
	ctid := uuid.NewString()
	ch := make(chan pvResult, 1)
	go func() {
		o, err := w.eng.Pay(ctx, qr.PaymentRequest{Brand: brand, Amount: ppaas.Amount{Amount: 2000, Currency: "EUR"},
			OrderDescription: description, ClientTransactionID: ctid})
		ch <- pvResult{o, err}
	}()
	var tx sim.SimTransaction
	pvWait(w.t, func() bool {
		var ok bool
		tx, ok = w.tx(ctid)
		return ok
	})
	// The consumer scans the QR once the terminal shows it: the device has
	// applied the create's answer (or, in auto mode, the provider's decision).
	pvWait(w.t, func() bool { return len(w.rec.states(ctid)) >= 2 })
	return ch, tx
}

func (w *pvWorld) tx(ctid string) (sim.SimTransaction, bool) {
	txs, _ := w.sim.Transactions()
	for _, tx := range txs {
		if tx.ClientTransactionID == ctid {
			return tx, true
		}
	}
	return sim.SimTransaction{}, false
}

func (w *pvWorld) mustTx(ctid string) sim.SimTransaction {
	w.t.Helper()
	tx, ok := w.tx(ctid)
	require.True(w.t, ok)
	return tx
}

func (w *pvWorld) charges() int {
	_, c := w.sim.Transactions()
	return c[w.serial]
}

func (w *pvWorld) act(tx sim.SimTransaction, action string, args ...string) sim.SimTransaction {
	w.t.Helper()
	v := url.Values{}
	for i := 0; i+1 < len(args); i += 2 {
		v.Set(args[i], args[i+1])
	}
	got, err := w.sim.ActArgs(tx.TransactionID, action, v)
	require.NoError(w.t, err, action)
	return got
}

func pvAwait(t *testing.T, ch <-chan pvResult) qr.Outcome {
	t.Helper()
	select {
	case r := <-ch:
		require.NoError(t, r.err)
		return r.o
	case <-time.After(20 * time.Second):
		t.Fatal("payment did not finish")
		return qr.Outcome{}
	}
}

func pvWait(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(2 * time.Millisecond) // polling a condition, not waiting for time to pass
	}
}

// requireChargedOnce checks the outcome left exactly one charge and one
// transaction at the simulated PPaaS.
func (w *pvWorld) requireChargedOnce(ctid string, before int) {
	w.t.Helper()
	require.Equal(w.t, before+1, w.charges(), "exactly one charge for the device")
	require.Equal(w.t, 1, w.mustTx(ctid).Charges, "the transaction was approved once")
	n := 0
	txs, _ := w.sim.Transactions()
	for _, tx := range txs {
		if tx.ClientTransactionID == ctid {
			n++
		}
	}
	require.Equal(w.t, 1, n)
}

func TestProviderPennymatic(t *testing.T) {
	w := newPVWorld(t, pvProviders())

	t.Run("paid, unconfirmed, then confirmed", func(t *testing.T) {
		before := w.charges()
		ch, tx := w.pay(t.Context(), "PENNYMATIC", "coffee")
		require.True(t, strings.HasPrefix(tx.QRCode.Payload, "https://wallet.pennymatic.sim.ppaas.test/#/authorizeApp?appId="), tx.QRCode.Payload)
		require.Contains(t, tx.QRCode.Payload, "sessionid="+tx.ProviderReference)
		w.act(tx, "connect")
		got := w.act(tx, "pay")
		require.Equal(t, ppaas.Confirming, got.Status)
		require.Equal(t, "false", got.Provider["isconfirmed"])
		o := pvAwait(t, ch)
		require.Equal(t, qr.ResultApproved, o.Result)
		require.Equal(t, []ppaas.State{ppaas.Created, ppaas.AwaitingConsumer, ppaas.Confirming, ppaas.Approved}, w.rec.states(tx.ClientTransactionID))

		var confirmed []string
		for _, e := range w.h.events(tx.ClientTransactionID) {
			confirmed = append(confirmed, string(e.Status)+"/"+e.Provider["isconfirmed"])
			require.Equal(t, "PENNYMATIC", e.Provider["paymentType"])
		}
		require.Equal(t, []string{"awaiting_consumer/", "confirming/false", "approved/true"}, confirmed)
		require.NotEmpty(t, w.mustTx(tx.ClientTransactionID).Provider["txhash"])
		w.requireChargedOnce(tx.ClientTransactionID, before)

		_, err := w.sim.Act(tx.TransactionID, "pay")
		require.Error(t, err, "a confirmed payment cannot be paid again")
	})

	t.Run("aborted while unconfirmed waits for the confirmation", func(t *testing.T) {
		// Issue 10 item 7: a blockchain payment cannot be undone, so an abort
		// (or the timeout) does not cancel a paid, unconfirmed payment: it
		// waits for the confirmation and the outcome is the real one.
		pc := pvProviders()
		pc.Pennymatic.ConfirmDelay = -1 // confirmed only by the control API
		w := newPVWorld(t, pc)
		before := w.charges()
		ctx, cancel := context.WithCancel(t.Context())
		ch, tx := w.pay(ctx, "PENNYMATIC", "")
		require.Equal(t, ppaas.Confirming, w.act(tx, "pay").Status)
		pvWait(t, func() bool { return len(w.rec.states(tx.ClientTransactionID)) == 3 })
		cancel()
		select {
		case o := <-ch:
			t.Fatalf("a paid payment ended on the abort: %+v", o)
		case <-time.After(100 * time.Millisecond): // the abort had its chance to cancel
		}
		got := w.mustTx(tx.ClientTransactionID)
		require.Equal(t, ppaas.Confirming, got.Status, "not cancelled at PPaaS")
		require.Empty(t, got.Provider["refund"], "no refund owed")
		_, err := w.sim.Act(tx.TransactionID, "confirm")
		require.NoError(t, err)
		o := pvAwait(t, ch)
		require.Equal(t, qr.ResultApproved, o.Result)
		w.requireChargedOnce(tx.ClientTransactionID, before)
	})

	t.Run("payment never confirmed", func(t *testing.T) {
		pc := pvProviders()
		pc.Pennymatic.ConfirmDelay = -1
		w := newPVWorld(t, pc)
		ch, tx := w.pay(t.Context(), "PENNYMATIC", "")
		w.act(tx, "pay")
		w.act(tx, "reject")
		o := pvAwait(t, ch)
		require.Equal(t, qr.ResultDeclined, o.Result)
		require.Equal(t, 0, w.charges())
	})

	tests := []struct {
		name    string
		actions []string
		reason  string
	}{
		{name: "wallet disconnected", actions: []string{"disconnect", "pay"}, reason: "usertoken revoked"},
		{name: "charge refused", actions: []string{"decline"}, reason: "refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := w.charges()
			ch, tx := w.pay(t.Context(), "PENNYMATIC", "")
			for _, a := range tc.actions {
				w.act(tx, a)
			}
			o := pvAwait(t, ch)
			require.Equal(t, qr.ResultDeclined, o.Result)
			require.Contains(t, o.Reason, tc.reason)
			require.Equal(t, before, w.charges())
		})
	}
}

func TestProviderPledg(t *testing.T) {
	for _, signing := range []string{"sha256", "jwt"} {
		t.Run(signing, func(t *testing.T) {
			pc := pvProviders()
			pc.Pledg.Signing = signing
			w := newPVWorld(t, pc)

			t.Run("every share paid", func(t *testing.T) {
				before := w.charges()
				ch, tx := w.pay(t.Context(), "PLEDG", "dinner shares=3")
				require.True(t, strings.HasPrefix(tx.QRCode.Payload, "https://front.ecard.pledg.sim.ppaas.test/purchases?signature="))
				require.True(t, strings.HasPrefix(tx.ProviderReference, "PLEDG_"))

				got := w.act(tx, "pay-share")
				require.Equal(t, ppaas.Pending, got.Status)
				require.Equal(t, "1", got.Provider["sharesPaid"])
				require.Equal(t, "3", got.Provider["shares"])
				_, err := w.sim.ActArgs(tx.TransactionID, "pay-share", url.Values{"share": {"1"}})
				require.Error(t, err, "a co-buyer pays a share once")

				// A forged completion is dropped by PPaaS and counted.
				rejected := w.sim.RejectedNotifications()
				got = w.act(tx, "forge")
				require.Equal(t, ppaas.Pending, got.Status)
				require.Equal(t, rejected+1, w.sim.RejectedNotifications())

				w.act(tx, "pay-share", "share", "3")
				w.act(tx, "pay-share")
				o := pvAwait(t, ch)
				require.Equal(t, qr.ResultApproved, o.Result)
				require.Equal(t, []string{"authorized", "authorized", "authorized", "completed"}, w.h.rawStatuses(tx.ClientTransactionID))
				for _, e := range w.h.events(tx.ClientTransactionID) {
					require.Equal(t, signing, e.Provider["signing"], "verified before forwarding")
				}
				w.requireChargedOnce(tx.ClientTransactionID, before)
				_, err = w.sim.Act(tx.TransactionID, "pay-share")
				require.Error(t, err)
			})

			t.Run("forged notification over the webhook", func(t *testing.T) {
				ch, tx := w.pay(t.Context(), "PLEDG", "")
				rejected := w.sim.RejectedNotifications()
				for _, body := range []string{
					`{"created_at":"2024-01-01T00:00:00Z","error":"","id":"x","reference":"` + tx.ProviderReference + `","sandbox":"true","status":"completed","signature":"B1C777835C01CA96AC4C3097FD46A7CA49B92BE157EDE0CB3552880D12A15359"}`,
					`{"signature":"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyZWZlcmVuY2UiOiJwdXJjaGFzZV9yZWZlcmVuY2UifQ.6ZhlvdcPgjwwBfxCrRpzaBGoRxTCoqtWJzFhB8pw4Ys"}`,
				} {
					resp, err := http.Post(w.sim.ControlURL()+"/control/providers/pledg/notifications", "application/json", strings.NewReader(body))
					require.NoError(t, err)
					resp.Body.Close()
					require.Equal(t, http.StatusBadRequest, resp.StatusCode)
				}
				require.Equal(t, rejected+2, w.sim.RejectedNotifications())
				require.Equal(t, ppaas.AwaitingConsumer, w.mustTx(tx.ClientTransactionID).Status)
				w.act(tx, "decline")
				o := pvAwait(t, ch)
				require.Equal(t, qr.ResultDeclined, o.Result)
			})
		})
	}

	w := newPVWorld(t, pvProviders())
	t.Run("deadline passes with a share unpaid", func(t *testing.T) {
		before := w.charges()
		ch, tx := w.pay(t.Context(), "PLEDG", "")
		w.act(tx, "shares", "n", "4")
		got := w.act(tx, "pay-share")
		require.Equal(t, "4", got.Provider["shares"])
		o := pvAwait(t, ch) // the 1.5 s deadline
		require.Equal(t, qr.ResultExpired, o.Result)
		require.Equal(t, ppaas.Expired, o.State)
		require.Equal(t, "direct_confirmation_timeout", w.mustTx(tx.ClientTransactionID).Provider["error"])
		require.Equal(t, before, w.charges())
	})

	t.Run("payers from the control API and pay all", func(t *testing.T) {
		before := w.charges()
		ch, tx := w.pay(t.Context(), "PLEDG", "")
		w.act(tx, "shares", "n", "5")
		w.act(tx, "pay")
		o := pvAwait(t, ch)
		require.Equal(t, qr.ResultApproved, o.Result)
		require.Equal(t, "5", w.mustTx(tx.ClientTransactionID).Provider["sharesPaid"])
		w.requireChargedOnce(tx.ClientTransactionID, before)
	})

	t.Run("too many payers refused at create", func(t *testing.T) {
		o, err := w.eng.Pay(t.Context(), qr.PaymentRequest{Brand: "PLEDG", Amount: ppaas.Amount{Amount: 2000, Currency: "EUR"}, OrderDescription: "shares=11"})
		require.Error(t, err)
		require.Equal(t, qr.ResultDeclined, o.Result)
	})
}

func TestProviderKTWidget(t *testing.T) {
	w := newPVWorld(t, pvProviders())

	t.Run("completed callback retried, duplicates de-duplicated", func(t *testing.T) {
		before := w.charges()
		dups := w.events.dups.Load()
		ch, tx := w.pay(t.Context(), "KTWIDGET", "")
		require.Contains(t, tx.QRCode.Payload, "amount=20.00")
		require.Len(t, tx.ProviderReference, 40, "transaction_hash")
		w.act(tx, "pay")
		o := pvAwait(t, ch)
		require.Equal(t, qr.ResultApproved, o.Result)
		// LostAcks 3: the completed callback arrives four times.
		pvWait(t, func() bool { return w.events.dups.Load() >= dups+3 })
		pvWait(t, func() bool { return w.mustTx(tx.ClientTransactionID).Events == 6 })
		require.Equal(t, []string{"authorized", "success", "completed"}, w.h.rawStatuses(tx.ClientTransactionID), "each event applied once")
		require.Equal(t, []ppaas.State{ppaas.Created, ppaas.AwaitingConsumer, ppaas.Pending, ppaas.Approved}, w.rec.states(tx.ClientTransactionID))
		w.requireChargedOnce(tx.ClientTransactionID, before)
	})

	t.Run("every retry of the schedule", func(t *testing.T) {
		dups := w.events.dups.Load()
		ch, tx := w.pay(t.Context(), "KTWIDGET", "")
		w.act(tx, "lose-acks", "n", "6")
		w.act(tx, "authorize")
		w.act(tx, "complete")
		require.Equal(t, qr.ResultApproved, pvAwait(t, ch).Result)
		pvWait(t, func() bool { return w.events.dups.Load() >= dups+6 })
	})

	tests := []struct {
		action, status, errType string
	}{
		{"decline", "denied", "ERROR_PAYMENT"},
		{"error", "error", "ERROR_SYSTEM"},
	}
	for _, tc := range tests {
		t.Run(tc.status, func(t *testing.T) {
			before := w.charges()
			ch, tx := w.pay(t.Context(), "KTWIDGET", "")
			w.act(tx, tc.action)
			o := pvAwait(t, ch)
			require.Equal(t, qr.ResultDeclined, o.Result)
			evs := w.h.events(tx.ClientTransactionID)
			require.Len(t, evs, 1)
			require.Equal(t, tc.status, evs[0].Provider["status"])
			require.Equal(t, tc.errType, evs[0].Provider["error_type"])
			require.Equal(t, before, w.charges())
		})
	}
}

func TestProviderPTI(t *testing.T) {
	w := newPVWorld(t, pvProviders())

	t.Run("late updates after approval change nothing", func(t *testing.T) {
		before := w.charges()
		ch, tx := w.pay(t.Context(), "PTI", "")
		require.Contains(t, tx.QRCode.Payload, "requestId="+tx.ClientTransactionID)
		w.act(tx, "pay")
		o := pvAwait(t, ch)
		require.Equal(t, qr.ResultApproved, o.Result)
		journal := w.rec.states(tx.ClientTransactionID)
		require.Equal(t, []ppaas.State{ppaas.Created, ppaas.AwaitingConsumer, ppaas.Pending, ppaas.Approved}, journal)

		w.act(tx, "capture")
		got := w.act(tx, "chargeback")
		require.Equal(t, ppaas.Refunded, got.Status)
		pvWait(t, func() bool { return len(w.h.events(tx.ClientTransactionID)) == 4 })
		require.Equal(t, []string{"PENDING", "AUTHORIZED", "CAPTURED", "CHARGED_BACK"}, w.h.rawStatuses(tx.ClientTransactionID))
		require.Equal(t, journal, w.rec.states(tx.ClientTransactionID), "late events do not change the outcome")
		w.requireChargedOnce(tx.ClientTransactionID, before)
		_, err := w.sim.Act(tx.TransactionID, "refund")
		require.Error(t, err, "a charged-back transaction is not refunded again")
	})

	tests := []struct {
		name    string
		actions []string
		raw     []string
		code    string
	}{
		{name: "refused after review", actions: []string{"review", "decline"}, raw: []string{"PENDING", "REFUSED"}, code: "PAYMENT_PROVIDER_DECLINED"},
		{name: "error", actions: []string{"error"}, raw: []string{"ERROR"}, code: "PAYMENT_PROVIDER_TECHNICAL_ERROR"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := w.charges()
			ch, tx := w.pay(t.Context(), "PTI", "")
			for _, a := range tc.actions {
				w.act(tx, a)
			}
			o := pvAwait(t, ch)
			require.Equal(t, qr.ResultDeclined, o.Result)
			pvWait(t, func() bool { return len(w.h.events(tx.ClientTransactionID)) == len(tc.raw) })
			require.Equal(t, tc.raw, w.h.rawStatuses(tx.ClientTransactionID))
			require.Equal(t, tc.code, w.mustTx(tx.ClientTransactionID).Provider["providerResponseCode"])
			require.Equal(t, before, w.charges())
		})
	}
}

func TestProviderSelection(t *testing.T) {
	w := newPVWorld(t, pvProviders())

	t.Run("unknown paymentType", func(t *testing.T) {
		_, err := w.eng.Pay(t.Context(), qr.PaymentRequest{Brand: "BITCOIN", Amount: ppaas.Amount{Amount: 2000, Currency: "EUR"}})
		require.ErrorContains(t, err, "unsupported_payment_type")
	})

	t.Run("auto approve applies to every provider", func(t *testing.T) {
		require.NoError(t, w.sim.SetProviderMode(sim.ProviderApprove))
		defer func() { require.NoError(t, w.sim.SetProviderMode(sim.ProviderManual)) }()
		for _, brand := range []string{"KB", "PTI", "KTWIDGET", "PLEDG", "PENNYMATIC"} {
			ch, _ := w.pay(t.Context(), brand, "")
			require.Equal(t, qr.ResultApproved, pvAwait(t, ch).Result, brand)
		}
	})

	t.Run("control API lists providers without the secret", func(t *testing.T) {
		resp, err := http.Get(w.sim.ControlURL() + "/control/providers")
		require.NoError(t, err)
		defer resp.Body.Close()
		var got struct {
			Providers []struct {
				PaymentType string   `json:"paymentType"`
				Actions     []string `json:"actions"`
			} `json:"providers"`
			Settings map[string]map[string]string `json:"settings"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
		var types []string
		for _, p := range got.Providers {
			types = append(types, p.PaymentType)
			require.Contains(t, p.Actions, "pay")
		}
		require.Equal(t, []string{"KB", "KTWIDGET", "PENNYMATIC", "PLEDG", "PTI"}, types)
		require.NotContains(t, got.Settings["PLEDG"], "secret")
	})

	t.Run("unknown action", func(t *testing.T) {
		ch, tx := w.pay(t.Context(), "PTI", "")
		_, err := w.sim.Act(tx.TransactionID, "confirm")
		require.ErrorContains(t, err, "offered")
		w.act(tx, "decline")
		require.Equal(t, qr.ResultDeclined, pvAwait(t, ch).Result)
	})
}

func TestProviderTimersStopAtClose(t *testing.T) {
	// Real-life delays: an hour to confirm, the seed's 48 h deadline and 15 s
	// before the first callback retry.
	w := newPVWorld(t, sim.ProvidersConfig{
		Pennymatic: sim.PennymaticConfig{ConfirmDelay: time.Hour},
		KTWidget:   sim.KTWidgetConfig{LostAcks: 6, ClearingDelay: time.Millisecond},
	})
	ctx, cancel := context.WithCancel(t.Context())
	var txs []sim.SimTransaction
	var pays []<-chan pvResult
	for _, brand := range []string{"PENNYMATIC", "PLEDG", "KTWIDGET"} {
		ch, tx := w.pay(ctx, brand, "")
		w.act(tx, "pay")
		txs = append(txs, tx)
		pays = append(pays, ch)
	}
	// Pledg and KTWidget approved (the first callback retry is 15 s away);
	// Pennymatic waits an hour for its confirmation: paid, it is not
	// cancelled by the POS's abort (issue 10), so the blockchain rejects it.
	require.Equal(t, qr.ResultApproved, pvAwait(t, pays[1]).Result)
	require.Equal(t, qr.ResultApproved, pvAwait(t, pays[2]).Result)
	// KTWidget's success approved it; clearing (completed) follows at once.
	pvWait(t, func() bool { return w.mustTx(txs[2].ClientTransactionID).Provider["status"] == "completed" })
	cancel()
	w.act(txs[0], "reject")
	require.Equal(t, qr.ResultDeclined, pvAwait(t, pays[0]).Result)
	events := map[string]int{}
	for _, tx := range txs {
		events[tx.TransactionID] = w.mustTx(tx.ClientTransactionID).Events
	}
	start := time.Now()
	w.close()
	require.Less(t, time.Since(start), 2*time.Second)
	got, _ := w.sim.Transactions()
	for _, tx := range got {
		require.Equal(t, events[tx.TransactionID], tx.Events, "no provider event after Close (%s)", tx.PaymentType)
	}
}
