package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
)

// The after-sale sweep. A provider refund or a chargeback reaches the agent
// as a provider event (MQTT) only: with polling, nothing polls a payment
// already answered, and a broker that restarts may drop the event. Every
// aftersale_sweep_interval the sweep lists the device's transactions created
// within aftersale_sweep_window (qr.Client.List, the listing endpoint
// reconciliation uses: our assumption, the PPaaS document has none) and
// hands each one PPaaS says is refunded — a chargeback decodes as refunded
// too (ppaas.Statuses) — to the after-sale desk as the event it would have
// been (sweepEvent): the same afterSale.event path, its dedup, its
// explanation of the POS's own refunds and reversals, its waits and its
// deference to restart recovery.

// SweepTiming tunes the after-sale sweep (tests use milliseconds). Zero
// fields take the configuration's values or the defaults named.
type SweepTiming struct {
	// Interval overrides aftersale_sweep_interval when positive.
	Interval time.Duration
	// PageSize is the listing's page (default and maximum 200); MaxPages
	// bounds the pages one sweep reads (default 10: 2,000 transactions),
	// the next sweep resuming where it stopped.
	PageSize, MaxPages int
}

const (
	sweepPageSize    = 200
	sweepMaxPages    = 10
	sweepListTimeout = 30 * time.Second
	// sweepMargin widens the window's end: the platform's clock may be a
	// little ahead of the agent's.
	sweepMargin = 5 * time.Minute
	// maxSweepMemory bounds the updates (and unknown transactions) one pass
	// over the window remembers, as 16-byte digests whatever the ids' length;
	// past it they are forgotten, and rechecked against the journal, which
	// journals an update once whatever the repeats.
	maxSweepMemory = 20000
)

// Outcomes of the sweep: the termagent_aftersale_sweep_total label's closed
// set.
const (
	sweepRun        = "sweep"       // a sweep that read its pages
	sweepListFailed = "list_failed" // a sweep whose listing failed: retried at the next interval
	sweepUpdate     = "update"      // an update the sweep journaled (and queued for the POS)
	sweepUnknown    = "unknown"     // a refunded transaction the journal does not know (counted once per run)
	sweepFailed     = "failed"      // a transaction the desk could not handle: retried at the next sweep
)

var sweepOutcomes = closedSet(sweepRun, sweepListFailed, sweepUpdate, sweepUnknown, sweepFailed)

// SweepStats counts the sweep's outcomes since start.
type SweepStats struct {
	Sweeps, ListFailures, Updates, Unknown, Failures int64
}

// transactionLister lists the device's transactions (qr.Client.List).
type transactionLister interface {
	List(ctx context.Context, from, to time.Time, after string, limit int) (qr.TransactionPage, error)
}

// paymentsInFlight tells a payment the QR engine is running (qr.Engine.Payment):
// its events are the engine's, the sweep leaves it for a later sweep.
type paymentsInFlight interface {
	Payment(ev ppaas.Event) (ctid string, decided bool)
}

// sweeper is the after-sale sweep. One goroutine (run) owns it.
type sweeper struct {
	list     transactionLister
	engine   paymentsInFlight
	after    *afterSale
	fg       Foreground // nil: never waits
	now      func() time.Time
	log      *slog.Logger
	count    func(outcome string)
	interval time.Duration
	window   time.Duration
	pageSize int
	maxPages int

	cursor   string                // the after of the next page; "": the window's start
	failedAt string                // the cursor whose listing failed last, if the last one failed
	done     map[[16]byte]struct{} // updates the desk handled this pass over the window
	unknown  map[[16]byte]struct{} // transactions logged as unknown this pass

	sweeps, listFailures, updates, unknowns, failures atomic.Int64
}

func newSweeper(list transactionLister, engine paymentsInFlight, after *afterSale, fg Foreground, interval, window time.Duration, timing SweepTiming,
	now func() time.Time, log *slog.Logger, count func(string)) *sweeper {
	s := &sweeper{list: list, engine: engine, after: after, fg: fg, now: now, log: log, count: count,
		interval: interval, window: window, pageSize: sweepPageSize, maxPages: sweepMaxPages,
		done: map[[16]byte]struct{}{}, unknown: map[[16]byte]struct{}{}}
	if timing.Interval > 0 {
		s.interval = timing.Interval
	}
	if timing.PageSize > 0 && timing.PageSize < sweepPageSize {
		s.pageSize = timing.PageSize
	}
	if timing.MaxPages > 0 {
		s.maxPages = timing.MaxPages
	}
	if s.count == nil {
		s.count = func(string) {}
	}
	return s
}

// Stats returns the sweep's counters.
func (s *sweeper) Stats() SweepStats {
	return SweepStats{Sweeps: s.sweeps.Load(), ListFailures: s.listFailures.Load(), Updates: s.updates.Load(),
		Unknown: s.unknowns.Load(), Failures: s.failures.Load()}
}

// run sweeps every interval (±10%, so a fleet restarted together does not
// list together) until ctx ends. Sweeps never overlap: this goroutine runs
// them one after the other.
func (s *sweeper) run(ctx context.Context) error {
	s.log.Info("after-sale sweep on", "interval", s.interval, "window", s.window)
	for {
		d := s.interval - s.interval/10 + rand.N(s.interval/5+1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if err := s.sweep(ctx); err != nil && ctx.Err() == nil {
			s.listFailures.Add(1)
			s.count(sweepListFailed)
			s.log.Warn("after-sale sweep: listing failed; retried at the next interval", "err", err, "next_in", s.interval)
		}
	}
}

// sweep reads at most maxPages pages of the window from where the previous
// sweep stopped, and hands each refunded transaction to the desk. A pass
// over the window starts with the cursor empty: what the previous pass
// handled is then checked once more (a POS refund pending then may have
// been released since: the desk decides again).
func (s *sweeper) sweep(ctx context.Context) error {
	began := time.Now()
	now := s.now()
	from, to := now.Add(-s.window), now.Add(sweepMargin)
	if s.cursor == "" {
		clear(s.done)
		clear(s.unknown)
	}
	var listed, refunded int
	for range s.maxPages {
		if err := s.idle(ctx); err != nil {
			return nil // stopping
		}
		lctx, cancel := context.WithTimeout(ctx, sweepListTimeout)
		pg, err := s.list.List(lctx, from, to, s.cursor, s.pageSize)
		cancel()
		if err != nil {
			// Retried from the same place at the next sweep; failing there
			// again, the platform may no longer take this cursor (aged out
			// of the window, expired): the sweep after starts a new pass.
			after := s.cursor
			if s.failedAt == after {
				s.cursor, s.failedAt = "", ""
			} else {
				s.failedAt = after
			}
			return fmt.Errorf("list transactions after %q: %w", clip(after), err)
		}
		s.failedAt = ""
		listed += len(pg.Transactions)
		for _, t := range pg.Transactions {
			if ev, ok := sweepEvent(t); ok {
				refunded++
				if err := s.handle(ctx, ev); err != nil {
					return nil // stopping
				}
			}
		}
		if pg.Next == s.cursor {
			// A platform naming the page it was asked for as the next one
			// would be read for ever: the pass ends here.
			s.log.Warn("after-sale sweep: the listing's next page is the one just read; starting a new pass", "after", s.cursor)
			pg.Next = ""
		}
		s.cursor = pg.Next
		if pg.Next == "" {
			break // the window read to its end: the next sweep starts over
		}
	}
	s.sweeps.Add(1)
	s.count(sweepRun)
	s.log.Debug("after-sale sweep done", "listed", listed, "refunded", refunded, "resume_after", s.cursor, "took", time.Since(began))
	return nil
}

// handle gives the desk one listed update, unless it handled it already this
// run or the engine is running its payment. It returns an error only when ctx
// ends.
func (s *sweeper) handle(ctx context.Context, ev ppaas.Event) error {
	if ev.ClientTransactionID == "" {
		// Every payment of this agent is created with its journal id as
		// clientTransactionId: one listed without it is not one of ours to
		// tell (looking it up by its PPaaS id would commit the journal's
		// pending index for each, every sweep).
		s.unknownOnce(ev)
		return nil
	}
	if has(s.done, ev.EventID) {
		return nil
	}
	if ctid, _ := s.engine.Payment(ev); ctid != "" {
		return nil // the engine's, and then the desk's through its events: a later sweep sees it final
	}
	if err := s.idle(ctx); err != nil {
		return err
	}
	handled, journaled, err := s.after.news(ctx, ev, false, true)
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		s.failures.Add(1)
		s.count(sweepFailed)
		s.log.Warn("after-sale sweep: update not handled; retried at the next sweep", "transaction_id", clip(ev.TransactionID),
			"client_transaction_id", clip(ev.ClientTransactionID), "status", clip(ev.RawStatus), "err", err)
	case !handled:
		// Unknown to the journal (evicted, or never this agent's), or a
		// payment restart recovery settles: nothing is invented into the
		// journal. Logged and counted once a pass; checked again each sweep.
		s.unknownOnce(ev)
	default:
		remember(s.done, ev.EventID)
		if journaled {
			s.updates.Add(1)
			s.count(sweepUpdate)
			s.log.Info("after-sale sweep: update found", "poi_transaction_id", clip(ev.ClientTransactionID), "transaction_id", clip(ev.TransactionID), "status", clip(ev.RawStatus))
		}
	}
	return nil
}

// unknownOnce logs and counts, once a pass, a refunded transaction the sweep
// leaves alone.
func (s *sweeper) unknownOnce(ev ppaas.Event) {
	k := ev.TransactionID + "\x00" + ev.ClientTransactionID
	if has(s.unknown, k) {
		return
	}
	remember(s.unknown, k)
	s.unknowns.Add(1)
	s.count(sweepUnknown)
	s.log.Info("after-sale sweep: PPaaS reports a refunded transaction the journal does not know (or restart recovery settles); not journaled",
		"transaction_id", clip(ev.TransactionID), "client_transaction_id", clip(ev.ClientTransactionID), "status", clip(ev.RawStatus))
}

// digest is what the sweep's memory keeps of k: 16 bytes whatever the
// length of the platform's ids.
func digest(k string) [16]byte {
	sum := sha256.Sum256([]byte(k))
	return [16]byte(sum[:16])
}

func has(m map[[16]byte]struct{}, k string) bool { _, ok := m[digest(k)]; return ok }

// remember adds k to m, forgetting everything once m holds maxSweepMemory.
func remember(m map[[16]byte]struct{}, k string) {
	if len(m) >= maxSweepMemory {
		clear(m)
	}
	m[digest(k)] = struct{}{}
}

// clip bounds a platform-given string for a log line.
func clip(v string) string { return truncate(v, 128) }

// idle waits while the POS is being served: the sweep's reads and writes
// never compete with a payment on the terminal's cores and disk.
func (s *sweeper) idle(ctx context.Context) error {
	if s.fg == nil {
		return ctx.Err()
	}
	for {
		busy := s.fg.Busy()
		if busy == nil {
			return ctx.Err()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-busy:
		}
	}
}

// sweepEvent is the provider event a listed transaction stands for, when its
// status says something after the sale: refunded (a provider refund, or a
// chargeback: its spellings decode as refunded, ppaas.Statuses). Other
// statuses are not the sweep's: a payment's own outcome is its engine's and
// restart recovery's. The event id is derived from what makes the update
// (transaction, status as sent, sequence, refunded amount): a transaction
// listed again unchanged is the same event, one that changed is a new one.
func sweepEvent(t ppaas.Transaction) (ppaas.Event, bool) {
	if t.Status != ppaas.Refunded || (t.TransactionID == "" && t.ClientTransactionID == "") {
		return ppaas.Event{}, false
	}
	h := sha256.New()
	for _, p := range []string{t.TransactionID, t.ClientTransactionID, t.RawStatus, t.StatusReason,
		strconv.FormatInt(t.Sequence, 10), strconv.FormatInt(t.RefundedAmount, 10)} {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return ppaas.Event{
		EventID:             "sweep-" + hex.EncodeToString(h.Sum(nil)[:16]),
		Type:                ppaas.EventTypeStatus,
		TransactionID:       t.TransactionID,
		ClientTransactionID: t.ClientTransactionID,
		Status:              t.Status,
		RawStatus:           t.RawStatus,
		StatusReason:        t.StatusReason,
		Sequence:            t.Sequence,
		Time:                t.UpdatedAt,
		ProviderReference:   t.ProviderReference,
	}, true
}
