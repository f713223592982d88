package world_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/internal/testrig"
	"github.com/termagent/termagent/internal/testrig/enginerig"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/sim"
)

// The provider end-to-end tests run the device side for real: the qr Engine
// (as the agent wires it) with its MQTT subscriber and event de-dup, against
// the simulated PPaaS, its embedded broker and the modelled providers.

// pvWorld is the engine rig with the engine these tests pay with.
type pvWorld struct {
	*enginerig.Rig
	t   *testing.T
	eng *qr.Engine
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
	w := &pvWorld{t: t, Rig: enginerig.Start(t, enginerig.Options{Payments: sim.PaymentsConfig{Providers: pc}})}
	// PollAfter is long (the rig's default): outcomes must arrive as events,
	// as the device normally gets them.
	w.eng = w.Engine(qr.Config{Brands: pvBrands(), Timeout: 15 * time.Second}, nil)
	return w
}

// rawStatuses lists the provider's raw statuses carried by a transaction's events.
func (w *pvWorld) rawStatuses(ctid string) []string {
	var out []string
	for _, e := range w.Handler.Events(ctid) {
		out = append(out, e.Provider["status"])
	}
	return out
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
	tx := w.WaitTx(ctid)
	// The consumer scans the QR once the terminal shows it: the device has
	// applied the create's answer (or, in auto mode, the provider's decision).
	testrig.WaitFor(w.t, 10*time.Second, "len(w.Rec.States(ctid)) >= 2", func() bool { return len(w.Rec.States(ctid)) >= 2 })
	return ch, tx
}

func (w *pvWorld) mustTx(ctid string) sim.SimTransaction {
	w.t.Helper()
	tx, ok := w.Tx(ctid)
	require.True(w.t, ok)
	return tx
}

func (w *pvWorld) act(tx sim.SimTransaction, action string, args ...string) sim.SimTransaction {
	w.t.Helper()
	v := url.Values{}
	for i := 0; i+1 < len(args); i += 2 {
		v.Set(args[i], args[i+1])
	}
	got, err := w.Sim.ActArgs(tx.TransactionID, action, v)
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

// requireChargedOnce checks the outcome left exactly one charge and one
// transaction at the simulated PPaaS.
func (w *pvWorld) requireChargedOnce(ctid string, before int) {
	w.t.Helper()
	require.Equal(w.t, before+1, w.Charges(), "exactly one charge for the device")
	require.Equal(w.t, 1, w.mustTx(ctid).Charges, "the transaction was approved once")
	n := 0
	txs, _ := w.Sim.Transactions()
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
		before := w.Charges()
		ch, tx := w.pay(t.Context(), "PENNYMATIC", "coffee")
		require.True(t, strings.HasPrefix(tx.QRCode.Payload, "https://wallet.pennymatic.sim.ppaas.test/#/authorizeApp?appId="), tx.QRCode.Payload)
		require.Contains(t, tx.QRCode.Payload, "sessionid="+tx.ProviderReference)
		w.act(tx, "connect")
		got := w.act(tx, "pay")
		require.Equal(t, ppaas.Confirming, got.Status)
		require.Equal(t, "false", got.Provider["isconfirmed"])
		o := pvAwait(t, ch)
		require.Equal(t, qr.ResultApproved, o.Result)
		require.Equal(t, []ppaas.State{ppaas.Created, ppaas.AwaitingConsumer, ppaas.Confirming, ppaas.Approved}, w.Rec.States(tx.ClientTransactionID))

		var confirmed []string
		for _, e := range w.Handler.Events(tx.ClientTransactionID) {
			confirmed = append(confirmed, string(e.Status)+"/"+e.Provider["isconfirmed"])
			require.Equal(t, "PENNYMATIC", e.Provider["paymentType"])
		}
		require.Equal(t, []string{"awaiting_consumer/", "confirming/false", "approved/true"}, confirmed)
		require.NotEmpty(t, w.mustTx(tx.ClientTransactionID).Provider["txhash"])
		w.requireChargedOnce(tx.ClientTransactionID, before)

		_, err := w.Sim.Act(tx.TransactionID, "pay")
		require.Error(t, err, "a confirmed payment cannot be paid again")
	})

	t.Run("aborted while unconfirmed waits for the confirmation", func(t *testing.T) {
		// Issue 10 item 7: a blockchain payment cannot be undone, so an abort
		// (or the timeout) does not cancel a paid, unconfirmed payment: it
		// waits for the confirmation and the outcome is the real one.
		pc := pvProviders()
		pc.Pennymatic.ConfirmDelay = -1 // confirmed only by the control API
		w := newPVWorld(t, pc)
		before := w.Charges()
		ctx, cancel := context.WithCancel(t.Context())
		ch, tx := w.pay(ctx, "PENNYMATIC", "")
		require.Equal(t, ppaas.Confirming, w.act(tx, "pay").Status)
		testrig.WaitFor(t, 10*time.Second, "len(w.Rec.States(tx.ClientTransactionID)) == 3", func() bool { return len(w.Rec.States(tx.ClientTransactionID)) == 3 })
		cancel()
		select {
		case o := <-ch:
			t.Fatalf("a paid payment ended on the abort: %+v", o)
		case <-time.After(100 * time.Millisecond): // the abort had its chance to cancel
		}
		got := w.mustTx(tx.ClientTransactionID)
		require.Equal(t, ppaas.Confirming, got.Status, "not cancelled at PPaaS")
		require.Empty(t, got.Provider["refund"], "no refund owed")
		_, err := w.Sim.Act(tx.TransactionID, "confirm")
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
		require.Equal(t, 0, w.Charges())
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
			before := w.Charges()
			ch, tx := w.pay(t.Context(), "PENNYMATIC", "")
			for _, a := range tc.actions {
				w.act(tx, a)
			}
			o := pvAwait(t, ch)
			require.Equal(t, qr.ResultDeclined, o.Result)
			require.Contains(t, o.Reason, tc.reason)
			require.Equal(t, before, w.Charges())
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
				before := w.Charges()
				ch, tx := w.pay(t.Context(), "PLEDG", "dinner shares=3")
				require.True(t, strings.HasPrefix(tx.QRCode.Payload, "https://front.ecard.pledg.sim.ppaas.test/purchases?signature="))
				require.True(t, strings.HasPrefix(tx.ProviderReference, "PLEDG_"))

				got := w.act(tx, "pay-share")
				require.Equal(t, ppaas.Pending, got.Status)
				require.Equal(t, "1", got.Provider["sharesPaid"])
				require.Equal(t, "3", got.Provider["shares"])
				_, err := w.Sim.ActArgs(tx.TransactionID, "pay-share", url.Values{"share": {"1"}})
				require.Error(t, err, "a co-buyer pays a share once")

				// A forged completion is dropped by PPaaS and counted.
				rejected := w.Sim.RejectedNotifications()
				got = w.act(tx, "forge")
				require.Equal(t, ppaas.Pending, got.Status)
				require.Equal(t, rejected+1, w.Sim.RejectedNotifications())

				w.act(tx, "pay-share", "share", "3")
				w.act(tx, "pay-share")
				o := pvAwait(t, ch)
				require.Equal(t, qr.ResultApproved, o.Result)
				require.Equal(t, []string{"authorized", "authorized", "authorized", "completed"}, w.rawStatuses(tx.ClientTransactionID))
				for _, e := range w.Handler.Events(tx.ClientTransactionID) {
					require.Equal(t, signing, e.Provider["signing"], "verified before forwarding")
				}
				w.requireChargedOnce(tx.ClientTransactionID, before)
				_, err = w.Sim.Act(tx.TransactionID, "pay-share")
				require.Error(t, err)
			})

			t.Run("forged notification over the webhook", func(t *testing.T) {
				ch, tx := w.pay(t.Context(), "PLEDG", "")
				rejected := w.Sim.RejectedNotifications()
				for _, body := range []string{
					`{"created_at":"2024-01-01T00:00:00Z","error":"","id":"x","reference":"` + tx.ProviderReference + `","sandbox":"true","status":"completed","signature":"B1C777835C01CA96AC4C3097FD46A7CA49B92BE157EDE0CB3552880D12A15359"}`,
					`{"signature":"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyZWZlcmVuY2UiOiJwdXJjaGFzZV9yZWZlcmVuY2UifQ.6ZhlvdcPgjwwBfxCrRpzaBGoRxTCoqtWJzFhB8pw4Ys"}`,
				} {
					resp, err := http.Post(w.Sim.ControlURL()+"/control/providers/pledg/notifications", "application/json", strings.NewReader(body))
					require.NoError(t, err)
					resp.Body.Close()
					require.Equal(t, http.StatusBadRequest, resp.StatusCode)
				}
				require.Equal(t, rejected+2, w.Sim.RejectedNotifications())
				require.Equal(t, ppaas.AwaitingConsumer, w.mustTx(tx.ClientTransactionID).Status)
				w.act(tx, "decline")
				o := pvAwait(t, ch)
				require.Equal(t, qr.ResultDeclined, o.Result)
			})
		})
	}

	w := newPVWorld(t, pvProviders())
	t.Run("deadline passes with a share unpaid", func(t *testing.T) {
		before := w.Charges()
		ch, tx := w.pay(t.Context(), "PLEDG", "")
		w.act(tx, "shares", "n", "4")
		got := w.act(tx, "pay-share")
		require.Equal(t, "4", got.Provider["shares"])
		o := pvAwait(t, ch) // the 1.5 s deadline
		require.Equal(t, qr.ResultExpired, o.Result)
		require.Equal(t, ppaas.Expired, o.State)
		require.Equal(t, "direct_confirmation_timeout", w.mustTx(tx.ClientTransactionID).Provider["error"])
		require.Equal(t, before, w.Charges())
	})

	t.Run("payers from the control API and pay all", func(t *testing.T) {
		before := w.Charges()
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
		before := w.Charges()
		dups := w.Events.Dups.Load()
		ch, tx := w.pay(t.Context(), "KTWIDGET", "")
		require.Contains(t, tx.QRCode.Payload, "amount=20.00")
		require.Len(t, tx.ProviderReference, 40, "transaction_hash")
		w.act(tx, "pay")
		o := pvAwait(t, ch)
		require.Equal(t, qr.ResultApproved, o.Result)
		// LostAcks 3: the completed callback arrives four times.
		testrig.WaitFor(t, 10*time.Second, "w.Events.Dups.Load() >= dups+3", func() bool { return w.Events.Dups.Load() >= dups+3 })
		testrig.WaitFor(t, 10*time.Second, "w.mustTx(tx.ClientTransactionID).Events == 6", func() bool { return w.mustTx(tx.ClientTransactionID).Events == 6 })
		require.Equal(t, []string{"authorized", "success", "completed"}, w.rawStatuses(tx.ClientTransactionID), "each event applied once")
		require.Equal(t, []ppaas.State{ppaas.Created, ppaas.AwaitingConsumer, ppaas.Pending, ppaas.Approved}, w.Rec.States(tx.ClientTransactionID))
		w.requireChargedOnce(tx.ClientTransactionID, before)
	})

	t.Run("every retry of the schedule", func(t *testing.T) {
		dups := w.Events.Dups.Load()
		ch, tx := w.pay(t.Context(), "KTWIDGET", "")
		w.act(tx, "lose-acks", "n", "6")
		w.act(tx, "authorize")
		w.act(tx, "complete")
		require.Equal(t, qr.ResultApproved, pvAwait(t, ch).Result)
		testrig.WaitFor(t, 10*time.Second, "w.Events.Dups.Load() >= dups+6", func() bool { return w.Events.Dups.Load() >= dups+6 })
	})

	tests := []struct {
		action, status, errType string
	}{
		{"decline", "denied", "ERROR_PAYMENT"},
		{"error", "error", "ERROR_SYSTEM"},
	}
	for _, tc := range tests {
		t.Run(tc.status, func(t *testing.T) {
			before := w.Charges()
			ch, tx := w.pay(t.Context(), "KTWIDGET", "")
			w.act(tx, tc.action)
			o := pvAwait(t, ch)
			require.Equal(t, qr.ResultDeclined, o.Result)
			evs := w.Handler.Events(tx.ClientTransactionID)
			require.Len(t, evs, 1)
			require.Equal(t, tc.status, evs[0].Provider["status"])
			require.Equal(t, tc.errType, evs[0].Provider["error_type"])
			require.Equal(t, before, w.Charges())
		})
	}
}

func TestProviderPTI(t *testing.T) {
	w := newPVWorld(t, pvProviders())

	t.Run("late updates after approval change nothing", func(t *testing.T) {
		before := w.Charges()
		ch, tx := w.pay(t.Context(), "PTI", "")
		require.Contains(t, tx.QRCode.Payload, "requestId="+tx.ClientTransactionID)
		w.act(tx, "pay")
		o := pvAwait(t, ch)
		require.Equal(t, qr.ResultApproved, o.Result)
		journal := w.Rec.States(tx.ClientTransactionID)
		require.Equal(t, []ppaas.State{ppaas.Created, ppaas.AwaitingConsumer, ppaas.Pending, ppaas.Approved}, journal)

		w.act(tx, "capture")
		got := w.act(tx, "chargeback")
		require.Equal(t, ppaas.Refunded, got.Status)
		testrig.WaitFor(t, 10*time.Second, "len(w.Handler.Events(tx.ClientTransactionID)) == 4", func() bool { return len(w.Handler.Events(tx.ClientTransactionID)) == 4 })
		require.Equal(t, []string{"PENDING", "AUTHORIZED", "CAPTURED", "CHARGED_BACK"}, w.rawStatuses(tx.ClientTransactionID))
		require.Equal(t, journal, w.Rec.States(tx.ClientTransactionID), "late events do not change the outcome")
		w.requireChargedOnce(tx.ClientTransactionID, before)
		_, err := w.Sim.Act(tx.TransactionID, "refund")
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
			before := w.Charges()
			ch, tx := w.pay(t.Context(), "PTI", "")
			for _, a := range tc.actions {
				w.act(tx, a)
			}
			o := pvAwait(t, ch)
			require.Equal(t, qr.ResultDeclined, o.Result)
			testrig.WaitFor(t, 10*time.Second, "len(w.Handler.Events(tx.ClientTransactionID)) == len(tc.raw)", func() bool { return len(w.Handler.Events(tx.ClientTransactionID)) == len(tc.raw) })
			require.Equal(t, tc.raw, w.rawStatuses(tx.ClientTransactionID))
			require.Equal(t, tc.code, w.mustTx(tx.ClientTransactionID).Provider["providerResponseCode"])
			require.Equal(t, before, w.Charges())
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
		require.NoError(t, w.Sim.SetProviderMode(sim.ProviderApprove))
		defer func() { require.NoError(t, w.Sim.SetProviderMode(sim.ProviderManual)) }()
		for _, brand := range []string{"KB", "PTI", "KTWIDGET", "PLEDG", "PENNYMATIC"} {
			ch, _ := w.pay(t.Context(), brand, "")
			require.Equal(t, qr.ResultApproved, pvAwait(t, ch).Result, brand)
		}
	})

	t.Run("control API lists providers without the secret", func(t *testing.T) {
		resp, err := http.Get(w.Sim.ControlURL() + "/control/providers")
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
		_, err := w.Sim.Act(tx.TransactionID, "confirm")
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
	testrig.WaitFor(t, 10*time.Second, "w.mustTx(txs[2].ClientTransactionID).Provider[\"status\"] == \"completed\"", func() bool { return w.mustTx(txs[2].ClientTransactionID).Provider["status"] == "completed" })
	cancel()
	w.act(txs[0], "reject")
	require.Equal(t, qr.ResultDeclined, pvAwait(t, pays[0]).Result)
	events := map[string]int{}
	for _, tx := range txs {
		events[tx.TransactionID] = w.mustTx(tx.ClientTransactionID).Events
	}
	start := time.Now()
	w.Close()
	require.Less(t, time.Since(start), 2*time.Second)
	got, _ := w.Sim.Transactions()
	for _, tx := range got {
		require.Equal(t, events[tx.TransactionID], tx.Events, "no provider event after Close (%s)", tx.PaymentType)
	}
}
