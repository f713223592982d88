package qr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/termagent/termagent/display"
	"github.com/termagent/termagent/ppaas"
)

// A merchantscan (consumer-presented) payment needs the code the consumer's
// wallet shows. When the POS's scanner read it, it comes with the payment
// request; otherwise the payment waits, with "Scan the customer's code" on the
// display, for the terminal's scanner to deliver it through Scan, up to
// Config.Timeout. Nothing exists at PPaaS while it waits: a timeout or an
// abort ends it with an error, and no money can have moved.

var (
	// ErrNoScan: no code was scanned within the payment timeout.
	ErrNoScan = errors.New("no customer code was scanned in time")
	// ErrScanAborted: the POS aborted the payment while it waited for a code.
	ErrScanAborted = errors.New("aborted while waiting for the customer's code")
	// ErrNoScanWaiting is Scan's answer when no payment waits for a code.
	ErrNoScanWaiting = errors.New("no payment is waiting for a scanned code")
)

// scanWait is one payment waiting for the terminal's scanner.
type scanWait struct {
	ctid string
	code chan string // buffered: Scan never blocks
}

// ScanResult names the payment a scanned code went to.
type ScanResult struct {
	ClientTransactionID string
}

// Scan hands a code the terminal's scanner read to the payment waiting for
// one (the oldest, should several wait). A malformed code is refused
// (ppaas.ErrScannedPaymentID) and the payment keeps waiting; with no payment
// waiting the answer is ErrNoScanWaiting.
func (e *Engine) Scan(code string) (ScanResult, error) {
	if err := ppaas.CheckScannedPaymentID(code); err != nil {
		return ScanResult{}, fmt.Errorf("scan: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.scans) == 0 {
		return ScanResult{}, ErrNoScanWaiting
	}
	w := e.scans[0]
	e.scans = e.scans[1:]
	w.code <- code
	return ScanResult{ClientTransactionID: w.ctid}, nil
}

// WaitingForScan reports whether a payment waits for the terminal's scanner.
func (e *Engine) WaitingForScan() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.scans) > 0
}

// awaitScan waits for the terminal's scanner to deliver a code for req.
func (e *Engine) awaitScan(ctx context.Context, req PaymentRequest) (string, error) {
	w := &scanWait{ctid: req.ClientTransactionID, code: make(chan string, 1)}
	e.mu.Lock()
	e.scans = append(e.scans, w)
	e.mu.Unlock()
	log := e.log.With("client_transaction_id", w.ctid, "brand", req.Brand)
	log.Info("qr merchantscan payment waiting for the terminal's scanner", "timeout", e.cfg.Timeout)
	if e.display != nil {
		s := display.Screen{State: display.AwaitingScan, Message: "Scan the customer's code", ClientTransactionID: w.ctid,
			Amount: req.Amount.Amount, Currency: req.Amount.Currency}
		if err := e.display.Show(ctx, s); err != nil {
			log.Warn("qr display scan prompt", "err", err)
		}
	}
	timeout := time.NewTimer(e.cfg.Timeout)
	defer timeout.Stop()
	var why error
	select {
	case code := <-w.code:
		return code, nil
	case <-ctx.Done():
		why = ErrScanAborted
	case <-timeout.C:
		why = fmt.Errorf("%w (%s)", ErrNoScan, e.cfg.Timeout)
	}
	e.mu.Lock()
	i := slices.Index(e.scans, w)
	if i >= 0 {
		e.scans = slices.Delete(e.scans, i, i+1)
	}
	e.mu.Unlock()
	if i < 0 { // Scan took it as the wait ended: the code is here
		return <-w.code, nil
	}
	log.Info("qr merchantscan payment ended without a scanned code", "why", why)
	if e.display != nil {
		state := ppaas.Expired
		if errors.Is(why, ErrScanAborted) {
			state = ppaas.Cancelled
		}
		s := display.Screen{State: string(state), Message: "No code scanned", ClientTransactionID: w.ctid,
			Amount: req.Amount.Amount, Currency: req.Amount.Currency}
		if err := e.display.Show(context.WithoutCancel(ctx), s); err != nil {
			log.Warn("qr display scan end", "err", err)
		}
	}
	return "", why
}

// recordScan journals the code the terminal's scanner read for req before its
// create is sent (Recorder.RecordScan), so that a create an agent crash
// interrupts can be replayed as it was sent. A code the POS's scanner read came
// with the payment request, journaled with it already. When the code cannot be
// journaled nothing is sent: the payment ends, and nothing is charged.
func (e *Engine) recordScan(ctx context.Context, req PaymentRequest) error {
	// Not cut short by an abort that came with the code: the payment goes on
	// to its create, which an abort then cancels.
	err := e.rec.RecordScan(context.WithoutCancel(ctx), req.ClientTransactionID, req.ScannedPaymentID)
	if err == nil {
		return nil
	}
	log := e.log.With("client_transaction_id", req.ClientTransactionID, "brand", req.Brand)
	log.Error("qr merchantscan payment ended: the scanned code could not be journaled; nothing was sent to PPaaS", "err", err)
	if e.display != nil {
		s := display.Screen{State: string(ppaas.Cancelled), Message: "Payment failed: nothing was charged", ClientTransactionID: req.ClientTransactionID,
			Amount: req.Amount.Amount, Currency: req.Amount.Currency}
		if derr := e.display.Show(context.WithoutCancel(ctx), s); derr != nil {
			log.Warn("qr display scan end", "err", derr)
		}
	}
	return fmt.Errorf("journal the scanned code: %w", err)
}

// Config is the engine's configuration, with the defaults applied.
func (e *Engine) Config() Config { return e.cfg }

// Logger is the engine's logger.
func (e *Engine) Logger() *slog.Logger { return e.log }

// showScanned shows a merchantscan payment PPaaS took and the consumer's
// provider has not decided yet (some wallets ask the consumer to confirm).
func (e *Engine) showScanned(ctx context.Context, t *txn) {
	if e.display == nil {
		return
	}
	s := screen(t.ctid, t.txID(), ppaas.AwaitingConsumer, "Code scanned: confirm in your wallet", t.create.PaymentAmount)
	if err := e.display.Show(ctx, s); err != nil {
		e.log.Warn("qr display scanned", "err", err)
	}
}
