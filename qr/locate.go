package qr

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/termagent/termagent/ppaas"
)

// A merchantscan (consumer-presented) create is decided at once: PPaaS charges
// the code the consumer's wallet showed. Replaying it to learn where a payment
// stands — harmless for a consumerscan, where it only makes a transaction
// nobody has paid — would charge the consumer now, possibly long after they
// left. So a merchantscan payment whose PPaaS id is unknown is never created
// again (Where refuses to): Locate finds the transaction its own create made
// in the device's transaction listing (List), or shows that none was made.

var (
	// ErrNeverCreated: the listing has no transaction for the payment and its
	// create can no longer reach PPaaS: nothing was charged.
	ErrNeverCreated = errors.New("no PPaaS transaction was created for the payment")
	// ErrWouldCharge: Where was asked to replay a merchantscan create.
	ErrWouldCharge = errors.New("replaying a merchantscan create would charge the consumer's code")
)

// NeverCreated is the state a reversal reports for a payment whose create
// never reached PPaaS (see Locate): nothing to cancel, nothing charged.
const NeverCreated ppaas.State = "never created"

// maxLocatePages bounds the listing pages one Locate reads (200 each).
const maxLocatePages = 50

// locateSkew widens the listing's window on both sides: the window's ends
// are the terminal's clock, PPaaS's createdAt its own, and a terminal's clock
// can be off by hours (a reset real-time clock before time is synchronised,
// or a clock set right between the crash and the restart). A transaction
// outside the window would be taken for one never created, so the window is
// wide; the clientTransactionId picks the payment's own.
const locateSkew = 24 * time.Hour

// CreateSentBy is the latest a payment that began at started can have sent
// its create: after the wait for a scanned code (Config.Timeout) and the
// create's own bound, retries included (Config.CreateTimeout).
func (e *Engine) CreateSentBy(started time.Time) time.Time {
	return started.Add(e.cfg.Timeout + e.cfg.CreateTimeout)
}

// Locate finds payment ctid's PPaaS transaction without creating one, among
// the device's transactions created from started (the payment began; its
// create was sent later) to sentBy (its create cannot have been sent after),
// both widened by locateSkew for the clocks. The clientTransactionId is the payment's own, so the
// transaction found is the one its create made. Not found, the answer is
// ErrNeverCreated once sentBy plus Config.LocateMargin (the platform's
// processing) has passed, else an error
// wrapping ErrNotSettled (a create may still be taken: ask again later). A
// listing that fails is an error too: never a conclusion.
func (e *Engine) Locate(ctx context.Context, ctid string, started, sentBy time.Time) (ppaas.Transaction, error) {
	if ctid == "" || started.IsZero() || sentBy.IsZero() {
		return ppaas.Transaction{}, fmt.Errorf("qr locate %q: clientTransactionId and its create's window are required", ctid)
	}
	// Read before listing: a listing that began after the window closed
	// shows every transaction the create can have made.
	closed := time.Now().After(sentBy.Add(e.cfg.LocateMargin))
	from, to := started.Add(-locateSkew), sentBy.Add(locateSkew)
	after := ""
	for page := 0; ; page++ {
		if page == maxLocatePages {
			return ppaas.Transaction{}, fmt.Errorf("qr locate %s: more than %d pages of transactions from %s to %s", ctid, maxLocatePages, from.Format(time.RFC3339), to.Format(time.RFC3339))
		}
		pg, err := e.client.List(ctx, from, to, after, 200)
		if err != nil {
			return ppaas.Transaction{}, fmt.Errorf("qr locate %s: %w", ctid, err)
		}
		for _, t := range pg.Transactions {
			if t.ClientTransactionID == ctid {
				return t, nil
			}
		}
		if pg.Next == "" {
			break
		}
		after = pg.Next
	}
	if !closed {
		return ppaas.Transaction{}, fmt.Errorf("qr locate %s: not listed, but its create may still reach PPaaS until %s: %w", ctid, sentBy.Add(e.cfg.LocateMargin).Format(time.RFC3339), ErrNotSettled)
	}
	return ppaas.Transaction{}, fmt.Errorf("qr locate %s: %w", ctid, ErrNeverCreated)
}
