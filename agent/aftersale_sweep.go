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
	// maxSweepMemory bounds the event ids (and unknown transactions) one
	// run remembers; past it they are forgotten, and rechecked against the
	// journal, which journals an update once whatever the repeats.
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

	cursor  string              // the after of the next page; "": the window's start
	done    map[string]struct{} // sweep event ids the desk handled this run
	unknown map[string]struct{} // transactions logged as unknown this run

	sweeps, listFailures, updates, unknowns, failures atomic.Int64
}

func newSweeper(list transactionLister, engine paymentsInFlight, after *afterSale, fg Foreground, interval, window time.Duration, timing SweepTiming,
	now func() time.Time, log *slog.Logger, count func(string)) *sweeper {
	s := &sweeper{list: list, engine: engine, after: after, fg: fg, now: now, log: log, count: count,
		interval: interval, window: window, pageSize: sweepPageSize, maxPages: sweepMaxPages,
		done: map[string]struct{}{}, unknown: map[string]struct{}{}}
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
// sweep stopped, and hands each refunded transaction to the desk.
func (s *sweeper) sweep(ctx context.Context) error {
	began := time.Now()
	now := s.now()
	from, to := now.Add(-s.window), now.Add(sweepMargin)
	var listed, refunded int
	for range s.maxPages {
		if err := s.idle(ctx); err != nil {
			return nil // stopping
		}
		lctx, cancel := context.WithTimeout(ctx, sweepListTimeout)
		pg, err := s.list.List(lctx, from, to, s.cursor, s.pageSize)
		cancel()
		if err != nil {
			return fmt.Errorf("list transactions after %q: %w", s.cursor, err)
		}
		listed += len(pg.Transactions)
		for _, t := range pg.Transactions {
			if ev, ok := sweepEvent(t); ok {
				refunded++
				if err := s.handle(ctx, ev); err != nil {
					return nil // stopping
				}
			}
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
	if has(s.done, ev.EventID) {
		return nil
	}
	if ctid, _ := s.engine.Payment(ev); ctid != "" {
		return nil // the engine's, and then the desk's through its events: a later sweep sees it final
	}
	if err := s.idle(ctx); err != nil {
		return err
	}
	handled, journaled, err := s.after.news(ctx, ev, false)
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		s.failures.Add(1)
		s.count(sweepFailed)
		s.log.Warn("after-sale sweep: update not handled; retried at the next sweep", "transaction_id", ev.TransactionID,
			"client_transaction_id", ev.ClientTransactionID, "status", ev.RawStatus, "err", err)
	case !handled:
		// Unknown to the journal (evicted, or never this agent's), or a
		// payment restart recovery settles: nothing is invented into the
		// journal. Logged and counted once; checked again each sweep.
		if k := ev.TransactionID + "/" + ev.ClientTransactionID; !has(s.unknown, k) {
			remember(s.unknown, k)
			s.unknowns.Add(1)
			s.count(sweepUnknown)
			s.log.Info("after-sale sweep: PPaaS reports a refunded transaction the journal does not know (or restart recovery settles); not journaled",
				"transaction_id", ev.TransactionID, "client_transaction_id", ev.ClientTransactionID, "status", ev.RawStatus)
		}
	default:
		remember(s.done, ev.EventID)
		if journaled {
			s.updates.Add(1)
			s.count(sweepUpdate)
			s.log.Info("after-sale sweep: update found", "poi_transaction_id", ev.ClientTransactionID, "transaction_id", ev.TransactionID, "status", ev.RawStatus)
		}
	}
	return nil
}

func has(m map[string]struct{}, k string) bool { _, ok := m[k]; return ok }

// remember adds k to m, forgetting everything once m holds maxSweepMemory.
func remember(m map[string]struct{}, k string) {
	if len(m) >= maxSweepMemory {
		clear(m)
	}
	m[k] = struct{}{}
}

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
