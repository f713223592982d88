package qr_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/display"
	"github.com/termagent/termagent/internal/syncbuf"
	"github.com/termagent/termagent/internal/testrig"
	"github.com/termagent/termagent/internal/testrig/enginerig"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/sim"
)

const seedCode = "281666027690188713769014" // the PPaaS document's scannedPaymentId

func (d *screenLog) shown(state string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.screens {
		if s.State == state {
			return true
		}
	}
	return false
}

// TestMerchantScan: a consumer-presented payment takes its code from the
// request or waits for the terminal's scanner (display "scan the customer's
// code") up to the payment timeout; a malformed code is refused and the wait
// goes on; the platform's enrichment reaches the outcome.
func TestMerchantScan(t *testing.T) {
	w := newWorld(t, enginerig.Options{})
	brands := map[string]qr.Method{"KBSCAN": {PaymentType: "KB", Scenario: ppaas.MerchantScan}}
	e := w.Engine(qr.Config{Brands: brands, Timeout: 5 * time.Second}, w.disp)
	pay := func(ctx context.Context, code string) <-chan payResult {
		ch := make(chan payResult, 1)
		go func() {
			o, err := e.Pay(ctx, qr.PaymentRequest{Brand: "KBSCAN", Amount: ppaas.Amount{Amount: 2000, Currency: "EUR"},
				ScannedPaymentID: code, ClientTransactionID: uuid.NewString()})
			ch <- payResult{o, err}
		}()
		return ch
	}

	t.Run("code with the request", func(t *testing.T) {
		r := w.await(pay(t.Context(), "1111222233334444"))
		require.NoError(t, r.err)
		require.Equal(t, qr.ResultApproved, r.o.Result)
		_, journaled := w.Rec.Scanned(r.o.ClientTransactionID)
		require.False(t, journaled, "the code is journaled with the request: no second write")
		require.Equal(t, sim.SimAcquirerID, r.o.Enrichment.AcquirerID)
		require.Equal(t, "TID-"+w.Serial, r.o.Enrichment.AcquirerPOIID)
		require.NotEmpty(t, r.o.Enrichment.MerchantID)
	})

	t.Run("code from the terminal's scanner", func(t *testing.T) {
		_, err := e.Scan(seedCode)
		require.ErrorIs(t, err, qr.ErrNoScanWaiting)
		ch := pay(t.Context(), "")
		testrig.WaitFor(t, 5*time.Second, "payment waiting for a scan", e.WaitingForScan)
		require.True(t, w.disp.shown(display.AwaitingScan))
		_, err = e.Scan("2816 6602")
		require.ErrorIs(t, err, ppaas.ErrScannedPaymentID)
		require.True(t, e.WaitingForScan(), "a malformed code leaves the payment waiting")
		got, err := e.Scan(seedCode)
		require.NoError(t, err)
		r := w.await(ch)
		require.NoError(t, r.err)
		require.Equal(t, got.ClientTransactionID, r.o.ClientTransactionID)
		require.Equal(t, qr.ResultApproved, r.o.Result)
		code, journaled := w.Rec.Scanned(r.o.ClientTransactionID)
		require.True(t, journaled, "the terminal's code is journaled for a replay of the create")
		require.Equal(t, seedCode, code)
		tx := w.WaitTx(r.o.ClientTransactionID)
		require.Equal(t, ppaas.MerchantScan, tx.PaymentScenario)
	})

	t.Run("a used code is declined by the provider", func(t *testing.T) {
		r := w.await(pay(t.Context(), seedCode))
		require.NoError(t, r.err)
		require.Equal(t, qr.ResultDeclined, r.o.Result)
		require.Contains(t, r.o.Reason, "already used")
	})

	t.Run("no scan within the timeout", func(t *testing.T) {
		short := w.Engine(qr.Config{Brands: brands, Timeout: 200 * time.Millisecond}, w.disp)
		start := time.Now()
		_, err := short.Pay(t.Context(), qr.PaymentRequest{Brand: "KBSCAN", Amount: ppaas.Amount{Amount: 100, Currency: "EUR"}})
		require.ErrorIs(t, err, qr.ErrNoScan)
		require.Less(t, time.Since(start), 3*time.Second)
		require.False(t, short.WaitingForScan())
	})

	t.Run("abort while waiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		ch := pay(ctx, "")
		testrig.WaitFor(t, 5*time.Second, "payment waiting for a scan", e.WaitingForScan)
		cancel()
		r := w.await(ch)
		require.ErrorIs(t, r.err, qr.ErrScanAborted)
		require.False(t, e.WaitingForScan())
		_, err := e.Scan(seedCode)
		require.ErrorIs(t, err, qr.ErrNoScanWaiting)
	})

	t.Run("a code the provider does not know is refused", func(t *testing.T) {
		r := w.await(pay(t.Context(), "NOT-A-KB-CODE"))
		require.Error(t, r.err)
		var ae *qr.APIError
		require.ErrorAs(t, r.err, &ae)
	})
}

// TestEveryProviderTakesMerchantScan: each simulated provider accepts a
// consumer-presented payment (no QR; it waits for the consumer, or decides
// at once for KB).
func TestEveryProviderTakesMerchantScan(t *testing.T) {
	w := newWorld(t, enginerig.Options{Payments: sim.PaymentsConfig{Provider: sim.ProviderManual}})
	for _, pt := range []string{"PENNYMATIC", "PTI", "KTWIDGET", "PLEDG"} {
		t.Run(pt, func(t *testing.T) {
			e := w.Engine(qr.Config{Brands: map[string]qr.Method{pt: {PaymentType: pt, Scenario: ppaas.MerchantScan}}}, w.disp)
			ctx, cancel := context.WithCancel(t.Context())
			ctid := uuid.NewString()
			ch := make(chan payResult, 1)
			go func() {
				o, err := e.Pay(ctx, qr.PaymentRequest{Brand: pt, Amount: ppaas.Amount{Amount: 1500, Currency: "EUR"}, ScannedPaymentID: "wallet-" + pt, ClientTransactionID: ctid})
				ch <- payResult{o, err}
			}()
			tx := w.WaitTx(ctid)
			require.Equal(t, ppaas.MerchantScan, tx.PaymentScenario)
			require.Nil(t, tx.QRCode, "no QR to show when the terminal scanned the consumer's code")
			require.False(t, tx.Status.Final(), "%s waits for the consumer", pt)
			cancel()
			r := w.await(ch)
			require.NoError(t, r.err)
			require.Equal(t, qr.ResultAborted, r.o.Result)
		})
	}
}

// TestTerminalScanJournaledBeforeCreate: the code the terminal's scanner
// read is journaled (Recorder.RecordScan) before the create is sent. When it
// cannot be, nothing reaches PPaaS: the payment ends with the journal's error
// and the terminal says nothing was charged. A consumerscan payment journals
// no code. The code never reaches the engine's logs, whatever the path.
func TestTerminalScanJournaledBeforeCreate(t *testing.T) {
	w := newWorld(t, enginerig.Options{})
	logs := &syncbuf.Buffer{}
	brands := map[string]qr.Method{"KBSCAN": {PaymentType: "KB", Scenario: ppaas.MerchantScan}, "KB": {PaymentType: "KB", Scenario: ppaas.ConsumerScan}}
	e := w.Engine(qr.Config{Brands: brands, Timeout: 5 * time.Second, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}, w.disp)
	payScanned := func(code string) (string, payResult) {
		ctid := uuid.NewString()
		ch := make(chan payResult, 1)
		go func() {
			o, err := e.Pay(t.Context(), qr.PaymentRequest{Brand: "KBSCAN", Amount: ppaas.Amount{Amount: 700, Currency: "EUR"}, ClientTransactionID: ctid})
			ch <- payResult{o, err}
		}()
		testrig.WaitFor(t, 5*time.Second, "payment waiting for a scan", e.WaitingForScan)
		_, err := e.Scan(code)
		require.NoError(t, err)
		return ctid, w.await(ch)
	}

	diskFull := errors.New("disk full")
	w.Rec.FailScans(diskFull)
	const refused = "1234567890123456789"
	ctid, r := payScanned(refused)
	require.ErrorIs(t, r.err, diskFull)
	_, sent := w.Tx(ctid)
	require.False(t, sent, "nothing reaches PPaaS before the code is journaled")
	require.True(t, w.disp.shown(string(ppaas.Cancelled)))
	require.Empty(t, w.Rec.States(ctid), "no transition recorded")

	w.Rec.FailScans(nil)
	const taken = "9876543210987654321"
	ctid, r = payScanned(taken)
	require.NoError(t, r.err)
	require.Equal(t, qr.ResultApproved, r.o.Result)
	code, journaled := w.Rec.Scanned(ctid)
	require.True(t, journaled)
	require.Equal(t, taken, code)

	short := w.Engine(qr.Config{Brands: brands, Timeout: 300 * time.Millisecond}, w.disp) // nobody pays it
	o, err := short.Pay(t.Context(), qr.PaymentRequest{Brand: "KB", Amount: ppaas.Amount{Amount: 100, Currency: "EUR"}, ClientTransactionID: uuid.NewString()})
	require.NoError(t, err)
	require.Equal(t, qr.ResultExpired, o.Result)
	_, journaled = w.Rec.Scanned(o.ClientTransactionID)
	require.False(t, journaled, "a consumerscan payment makes no extra durable write")

	require.Contains(t, logs.String(), "the scanned code could not be journaled", "the logs are the ones checked below")
	for _, c := range []string{refused, taken} {
		require.NotContains(t, logs.String(), c, "a consumer's code reached the logs")
	}
}
