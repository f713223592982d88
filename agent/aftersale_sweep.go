package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
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
	// sweepRecent is the newest part of the window, walked by a pass of its
	// own that gets half of each sweep's pages: a refund of a recent payment
	// is found within a sweep or two however long the whole window takes.
	sweepRecent = 7 * 24 * time.Hour
	// maxPassPages ends a walk that never reaches its end (a platform whose
	// pages cycle): 200,000 transactions at 200 a page.
	maxPassPages = 1000
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
	sweepUnknown    = "unknown"     // a refunded transaction the journal does not know (counted once a walk of the window)
	sweepFailed     = "failed"      // a transaction the desk could not handle: retried when its walk comes back to it

	sweepSkipped = "undecodable" // a listed transaction the agent could not decode: left out, logged
)

var sweepOutcomes = closedSet(sweepRun, sweepListFailed, sweepUpdate, sweepUnknown, sweepFailed, sweepSkipped)

// SweepStats counts the sweep's outcomes since start.
type SweepStats struct {
	Sweeps, ListFailures, Updates, Unknown, Failures int64
}

// transactionLister lists the device's transactions (skippingLister).
type transactionLister interface {
	List(ctx context.Context, from, to time.Time, after string, limit int) (qr.TransactionPage, error)
}

// skippingLister lists with qr.Client.ListSkipping: a transaction the agent
// cannot decode must not stop a walk at its page.
type skippingLister struct{ qc *qr.Client }

func (l skippingLister) List(ctx context.Context, from, to time.Time, after string, limit int) (qr.TransactionPage, error) {
	return l.qc.ListSkipping(ctx, from, to, after, limit)
}

// paymentsInFlight tells a payment the QR engine is running (qr.Engine.Payment):
// its events are the engine's, the sweep leaves it for a later sweep.
type paymentsInFlight interface {
	Payment(ev ppaas.Event) (ctid string, decided bool)
}

// sweepPass walks a part of the window, oldest first, resumed from sweep to
// sweep until it reaches the part's end; the next walk starts over, and
// checks again what the last one handled (a POS refund pending then may
// have been released since: the desk decides again; it journals and tells
// an update once whatever the repeats).
type sweepPass struct {
	name          string                // for the log: "recent" or "older"
	back, backEnd time.Duration         // it lists what was created from now-back to now-backEnd (0: now, plus sweepMargin)
	cursor        string                // the after of the next page; "": the part's start
	failedAt      string                // the cursor whose listing failed last, while the last one failed
	pages         int                   // pages this walk read
	seen          map[[16]byte]struct{} // the cursors this walk went through: a cycle ends it
	done          map[[16]byte]struct{}
	unknown       map[[16]byte]struct{}
}

func newSweepPass(name string, back, backEnd time.Duration) *sweepPass {
	return &sweepPass{name: name, back: back, backEnd: backEnd,
		seen: map[[16]byte]struct{}{}, done: map[[16]byte]struct{}{}, unknown: map[[16]byte]struct{}{}}
}

// restart makes the next page the part's first.
func (p *sweepPass) restart() {
	p.cursor, p.failedAt, p.pages = "", "", 0
	clear(p.seen)
}

// unreached reports a listing error that says nothing of the page: the
// platform was not reached, or did not answer in time.
func unreached(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded)
}

// refusedCursor reports a listing error that says the platform will not
// take this cursor again (it no longer knows it, or it left the window).
func refusedCursor(err error) bool {
	var ae *qr.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.StatusCode {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusGone, http.StatusUnprocessableEntity:
		return true
	}
	return false
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

	// recent walks the last sweepRecent of the window, older the rest (nil
	// when the window is no longer than sweepRecent).
	recent, older *sweepPass
	turn          bool // with one page a sweep: the older part's turn

	sweeps, listFailures, updates, unknowns, failures atomic.Int64
}

func newSweeper(list transactionLister, engine paymentsInFlight, after *afterSale, fg Foreground, interval, window time.Duration, timing SweepTiming,
	now func() time.Time, log *slog.Logger, count func(string)) *sweeper {
	s := &sweeper{list: list, engine: engine, after: after, fg: fg, now: now, log: log, count: count,
		interval: interval, window: window, pageSize: sweepPageSize, maxPages: sweepMaxPages,
		recent: newSweepPass("recent", min(window, sweepRecent), 0)}
	if window > sweepRecent {
		s.older = newSweepPass("older", window, sweepRecent)
	}
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

// sweep reads at most maxPages pages: half of them for the recent part of
// the window, the rest for the older part (with one page a sweep, the two
// take turns), each from where the previous sweep stopped, and hands each
// refunded transaction to the desk. Pages one part leaves unread (it
// reached its end) go to the other. A walk's failed listing does not keep
// the other from its pages; the errors are returned together.
func (s *sweeper) sweep(ctx context.Context) error {
	began := time.Now()
	var listed, refunded int
	if s.older == nil {
		read, err := s.walk(ctx, s.recent, s.maxPages, &listed, &refunded)
		return s.swept(ctx, began, read, listed, refunded, err)
	}
	first, second := s.recent, s.older
	share := s.maxPages / 2
	if s.maxPages == 1 {
		share = 1
		if s.turn {
			first, second = s.older, s.recent
		}
		s.turn = !s.turn
	}
	used, err1 := s.walk(ctx, first, share, &listed, &refunded)
	if ctx.Err() != nil {
		return nil
	}
	used2, err2 := s.walk(ctx, second, s.maxPages-used, &listed, &refunded)
	read := used + used2
	if left := s.maxPages - read; left > 0 && err1 == nil && first.cursor != "" && ctx.Err() == nil {
		more, err := s.walk(ctx, first, left, &listed, &refunded)
		read, err1 = read+more, err
	}
	return s.swept(ctx, began, read, listed, refunded, errors.Join(err1, err2))
}

// swept counts and logs a sweep that read pages pages and ended with err
// (returned: the run counts it as a failed listing). A sweep that read a
// page counts as run, even if a walk's listing failed.
func (s *sweeper) swept(ctx context.Context, began time.Time, pages, listed, refunded int, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	if pages == 0 {
		return err
	}
	s.sweeps.Add(1)
	s.count(sweepRun)
	older := ""
	if s.older != nil {
		older = s.older.cursor
	}
	s.log.Debug("after-sale sweep done", "listed", listed, "refunded", refunded, "recent_after", clip(s.recent.cursor), "older_after", clip(older), "took", time.Since(began))
	return err
}

// walk reads at most pages pages of p and reports how many it read. It
// returns an error for a failed listing: the same page is asked for again at
// the next sweep. A second answer refusing it there, or a cursor the
// platform refuses (refusedCursor), starts the walk over; a failure to reach
// the platform (the network, a timeout) only waits for the next sweep, so a
// link down for a while does not throw a long walk's progress away. A
// transaction it cannot decode is left out of its page (skippingLister),
// counted and logged.
func (s *sweeper) walk(ctx context.Context, p *sweepPass, pages int, listed, refunded *int) (int, error) {
	if p.cursor == "" {
		clear(p.done)
		clear(p.unknown)
	}
	now := s.now()
	from, to := now.Add(-p.back), now.Add(-p.backEnd)
	if p.backEnd == 0 {
		to = now.Add(sweepMargin)
	}
	read := 0
	for read < pages {
		if err := s.idle(ctx); err != nil {
			return read, nil // stopping
		}
		lctx, cancel := context.WithTimeout(ctx, sweepListTimeout)
		pg, err := s.list.List(lctx, from, to, p.cursor, s.pageSize)
		cancel()
		if err != nil {
			after := p.cursor
			switch {
			case after == "" || unreached(err):
			case p.failedAt == after || refusedCursor(err):
				p.restart()
			default:
				p.failedAt = after
			}
			return read, fmt.Errorf("list %s transactions after %q: %w", p.name, clip(after), err)
		}
		p.failedAt = ""
		if pg.Skipped > 0 {
			for range pg.Skipped {
				s.count(sweepSkipped)
			}
			s.log.Warn("after-sale sweep: listed transactions the agent cannot decode left out", "part", p.name, "count", pg.Skipped, "after", clip(p.cursor))
		}
		read++
		p.pages++
		*listed += len(pg.Transactions)
		for _, t := range pg.Transactions {
			if ev, ok := sweepEvent(t); ok {
				*refunded++
				if err := s.handle(ctx, p, ev); err != nil {
					return read, nil // stopping
				}
			}
		}
		switch {
		case pg.Next == "":
			p.restart() // the part read to its end: the next sweep starts over
			return read, nil
		case pg.Next == p.cursor || has(p.seen, pg.Next) || p.pages >= maxPassPages:
			// A platform naming a page this walk read already as the next
			// one would be read for ever.
			s.log.Warn("after-sale sweep: the listing does not end; starting the walk over", "part", p.name, "after", clip(p.cursor), "pages", p.pages)
			p.restart()
			return read, nil
		}
		remember(p.seen, p.cursor)
		p.cursor = pg.Next
	}
	return read, nil
}

// handle gives the desk one listed update, unless p's walk handled it already
// or the engine is running its payment. It returns an error only when ctx
// ends.
func (s *sweeper) handle(ctx context.Context, p *sweepPass, ev ppaas.Event) error {
	if ev.ClientTransactionID == "" {
		// Every payment of this agent is created with its journal id as
		// clientTransactionId: one listed without it is not one of ours to
		// tell (looking it up by its PPaaS id would commit the journal's
		// pending index for each, every sweep).
		s.unknownOnce(p, ev)
		return nil
	}
	if has(p.done, ev.EventID) {
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
		s.log.Warn("after-sale sweep: update not handled; retried when its walk comes back to it", "transaction_id", clip(ev.TransactionID),
			"client_transaction_id", clip(ev.ClientTransactionID), "status", clip(ev.RawStatus), "err", err)
	case !handled:
		// Unknown to the journal (evicted, or never this agent's), or a
		// payment restart recovery settles: nothing is invented into the
		// journal. Logged and counted once a walk; checked again each walk.
		s.unknownOnce(p, ev)
	default:
		remember(p.done, ev.EventID)
		if journaled {
			s.updates.Add(1)
			s.count(sweepUpdate)
			s.log.Info("after-sale sweep: update found", "poi_transaction_id", clip(ev.ClientTransactionID), "transaction_id", clip(ev.TransactionID), "status", clip(ev.RawStatus))
		}
	}
	return nil
}

// unknownOnce logs and counts, once a walk of p, a refunded transaction the
// sweep leaves alone.
func (s *sweeper) unknownOnce(p *sweepPass, ev ppaas.Event) {
	k := ev.TransactionID + "\x00" + ev.ClientTransactionID
	if has(p.unknown, k) {
		return
	}
	remember(p.unknown, k)
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
func clip(v string) string { return ppaas.Clip(v, 128) }

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
