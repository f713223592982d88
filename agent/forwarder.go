package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/termagent/termagent/failpoint"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// Sender delivers one outbox record to PPaaS (events endpoint, MQTT QoS 1
// publish, ...). It must carry r.Key as the idempotency key: the forwarder
// delivers at least once, and the receiver de-duplicates on the key. A nil
// error means the receiver has the record. Wrap errors that retrying cannot
// fix (a 400 for a malformed payload, say) with Permanent.
type Sender interface {
	Send(ctx context.Context, r store.Record) error
}

// PermanentError marks a delivery failure that retrying cannot fix (a record
// that cannot even be decoded); the record goes to the dead-letter bucket at
// once.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }

func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a PermanentError (nil stays nil).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// RejectedError marks a delivery the receiver refused (an HTTP 4xx): it may be
// a transient state of the receiver or a lasting refusal, so it is retried with
// the usual backoff up to ForwarderConfig.MaxRejections attempts, then
// dead-lettered.
type RejectedError struct{ Err error }

func (e *RejectedError) Error() string { return "rejected: " + e.Err.Error() }

func (e *RejectedError) Unwrap() error { return e.Err }

// Rejected wraps err as a RejectedError (nil stays nil).
func Rejected(err error) error {
	if err == nil {
		return nil
	}
	return &RejectedError{Err: err}
}

// DeadLetterer is implemented by a Sender that must act when a record is given
// up (the agent journals that a reversal failed, so TransactionStatus says so).
type DeadLetterer interface {
	DeadLettered(ctx context.Context, r store.Record, reason string)
}

// Escalator is implemented by a Sender that must tell a person when a record
// it keeps retrying has not been settled for ForwarderConfig.EscalateAfter
// (a reversal PPaaS has not answered definitively: 404, 409, a refund still
// pending). The forwarder calls it once per record and run, and logs it.
type Escalator interface {
	Escalate(ctx context.Context, r store.Record, since time.Time)
}

// Foreground tells the forwarder whether the POS is being served (the
// agent's count of Nexo requests in flight), so that a delivery waits for
// the payment on the terminal's few cores (issue 17).
type Foreground interface {
	// Busy returns nil when nothing is being served, else a channel closed
	// once nothing is.
	Busy() <-chan struct{}
}

// ForwarderConfig tunes the forwarder. Zero fields take the defaults named.
type ForwarderConfig struct {
	// BaseDelay is the backoff ceiling after the first failure; each further
	// failure multiplies it by Multiplier, up to MaxDelay. Defaults 15 s,
	// ×3, 60 min: ceilings 15 s, 45 s, 2¼ m, 6¾ m, 20¼ m, 60 m, close to the
	// KTWidget notification schedule (15 s, 60 s, 3 m, 10 m, 30 m, 60 m).
	BaseDelay  time.Duration
	MaxDelay   time.Duration
	Multiplier float64
	// SendTimeout bounds one delivery attempt. Default 30 s.
	SendTimeout time.Duration
	// MaxRejections is how many attempts a record the receiver keeps
	// refusing (RejectedError) gets before it is dead-lettered. Default 8
	// (about 2½ hours with the default backoff).
	MaxRejections uint32
	// Settle is how long the forwarder lets a new outbox record lie before
	// it reads it (issue 17). The commit that queues a payment's result also
	// releases the payment's response to the POS: delivering the result at
	// once (TLS, JSON, the platform's answer) competed with that response
	// for a terminal's few cores, on the payment's path. Default 2 ms; a
	// negative value delivers at once. Wake and an expired backoff are not
	// delayed.
	Settle time.Duration
	// Foreground, when set, makes the first delivery after the forwarder
	// starts or found nothing to send (the outbox empty, or every record
	// waiting out its backoff) wait while the POS is being served, once, for at most
	// MaxYield: the delivery of payment N's result (TLS, JSON, the
	// platform's answer) no longer competes with payment N+1's journal
	// start and engine for the cores. A backlog drains without waiting, so
	// however the POS's requests come, a record waits for the POS at most
	// MaxYield once (TestForwarderDrainsABacklogWithoutWaitingForThePOS).
	// Wake cuts the wait short. Every kind waits, reversal advices
	// included: MaxYield is small against what a reversal's delivery takes
	// anyway (the platform's answer, a backoff of 15 s after a failure), and
	// the advice is durable in the outbox.
	Foreground Foreground
	// MaxYield bounds the wait for the Foreground; default 1 s, negative:
	// never wait.
	MaxYield time.Duration
	// EscalateAfter is how long after it was queued a record the receiver
	// keeps answering "not settled yet" (qr.ErrNotSettled: a reversal
	// answered 404 or 409, a refund pending, a payment awaiting its
	// provider) is retried before a person is told, once per record and
	// run: an ERROR log, the Escalated count and the Sender's Escalator. It
	// is never given up: it stays queued and retried. Default 30 min.
	EscalateAfter time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Rand returns a number in [0, 1) for the jitter; default math/rand/v2.
	Rand func() float64
}

func (c ForwarderConfig) withDefaults() ForwarderConfig {
	if c.BaseDelay <= 0 {
		c.BaseDelay = 15 * time.Second
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = 60 * time.Minute
	}
	if c.Multiplier < 1 {
		c.Multiplier = 3
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = 30 * time.Second
	}
	if c.MaxRejections == 0 {
		c.MaxRejections = 8
	}
	if c.Settle == 0 {
		c.Settle = defaultSettle
	}
	if c.EscalateAfter <= 0 {
		c.EscalateAfter = 30 * time.Minute
	}
	if c.MaxYield == 0 {
		c.MaxYield = time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	return c
}

// Backoff returns the delay before retry number attempt (1 = after the first
// failure) with full jitter: uniform in [0, min(max, base·mult^(attempt-1))].
// Full jitter spreads the retries of many terminals that lost the network
// at the same moment. r is a number in [0, 1).
func Backoff(attempt uint32, base, maxDelay time.Duration, mult, r float64) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	ceil := float64(base) * math.Pow(mult, float64(attempt-1))
	if ceil > float64(maxDelay) || math.IsInf(ceil, 0) || math.IsNaN(ceil) {
		ceil = float64(maxDelay)
	}
	return time.Duration(r * ceil)
}

// ForwarderStats is a snapshot for metrics.
type ForwarderStats struct {
	Sent         int64     // records delivered and acknowledged
	Failures     int64     // failed attempts (retried later)
	DeadLettered int64     // records given up (permanent error, rejections, expiry)
	DeadByKind   [8]int64  // DeadLettered by store.Kind
	Escalated    int64     // records told to a person while still retried (EscalateAfter)
	Wakes        int64     // Wake calls that cut a wait short
	Yields       int64     // waits for the POS (Foreground) before a delivery
	HeadAttempts uint32    // failed attempts of the record at the head
	NextAttempt  time.Time // when the head is retried; zero if not waiting
	LastError    string
	LastSuccess  time.Time
}

// Forwarder drains the store's outbox through a Sender, at least once, with
// exponential backoff and full jitter between failed attempts. Records that
// share a key are delivered in order; records of different keys (different
// transactions) are independent, so a record that keeps failing delays only
// its own. Records given up — a permanent error, too many rejections, the
// expiry of a non-critical kind — go to the dead-letter bucket loudly: an ERROR
// log, a counter by kind, and the Sender's DeadLettered.
type Forwarder struct {
	st     *store.Store
	sender Sender
	cfg    ForwarderConfig
	log    *slog.Logger
	wake   chan struct{}

	mu    sync.Mutex
	stats ForwarderStats
	// escalated are the records told to a person this run (escalate);
	// bounded by maxEscalated.
	escalated map[uint64]struct{}
}

// maxEscalated bounds Forwarder.escalated: past it the set starts again, and
// a record still unsettled is told once more.
const maxEscalated = 4096

// defaultSettle is ForwarderConfig.Settle's default: longer than a payment's
// response takes to leave once its final commit is durable (0.1-0.5 ms here),
// short against anything that waits for a delivery.
const defaultSettle = 2 * time.Millisecond

// NewForwarder returns a forwarder; it does nothing until Run.
func NewForwarder(st *store.Store, sender Sender, cfg ForwarderConfig, log *slog.Logger) *Forwarder {
	if log == nil {
		log = slog.New(slog.DiscardHandler) // nil logs nothing, as everywhere in termagent
	}
	return &Forwarder{
		st:     st,
		sender: sender,
		cfg:    cfg.withDefaults(),
		log:    log.With("component", "forwarder"),
		wake:   make(chan struct{}, 1),
	}
}

// Wake makes the forwarder retry every waiting record now instead of waiting
// out its backoff. Call it when connectivity returns (MQTT reconnected, a PPaaS
// call succeeded). It never blocks.
func (f *Forwarder) Wake() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Stats returns a snapshot of the forwarder's counters.
func (f *Forwarder) Stats() ForwarderStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// Run drains the outbox until ctx is done, then returns nil. It returns an
// error only if the store is closed or corrupt under it.
func (f *Forwarder) Run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	// wait blocks for d (forever if d < 0), until ctx is done, Wake is
	// called, or (if onAppend) the outbox gets a new record. It reports
	// whether Wake cut it short.
	wait := func(d time.Duration, onAppend bool) (woken bool) {
		var tc <-chan time.Time
		if d >= 0 {
			timer.Reset(d)
			tc = timer.C
			defer timer.Stop()
		}
		var appended <-chan struct{}
		if onAppend {
			appended = f.st.Appended()
		}
		select {
		case <-ctx.Done():
		case <-tc:
		case <-appended:
			if f.cfg.Settle > 0 {
				settle := time.NewTimer(f.cfg.Settle)
				defer settle.Stop()
				select {
				case <-ctx.Done():
				case <-settle.C:
				case <-f.wake:
					return true
				}
			}
		case <-f.wake:
			return true
		}
		return false
	}

	// forced: after a Wake (or the end of a pause), every record is due
	// once, whatever its backoff, in outbox order.
	var forced map[uint64]bool
	// A failure that is not the record's own (PPaaS unreachable) says
	// nothing will get through: after a few in a row the forwarder pauses
	// as a whole, probing with the oldest record, instead of costing one
	// attempt (and one write) per record of a long outbox.
	var (
		streak, pauses uint32
		pausedUntil    time.Time
	)
	storeErrors := uint32(0)
	// yieldNext: the forwarder is starting, or found nothing to send and
	// waited; its next delivery first waits for the POS (yield), once. A
	// backlog drains without waiting.
	yieldNext := true
	for ctx.Err() == nil {
		if yieldNext {
			yieldNext = false
			if f.yield(ctx) {
				f.count(func(s *ForwarderStats) { s.Wakes++ })
				forced = map[uint64]bool{}
				pausedUntil = time.Time{} // a Wake means now, a pause included
			}
			if ctx.Err() != nil {
				break
			}
		}
		now := f.cfg.Now()
		if !pausedUntil.IsZero() {
			d := pausedUntil.Sub(now)
			if d > f.cfg.MaxDelay {
				d = 0 // the clock went back: no pause is that long
			}
			if d > 0 {
				f.setWaiting(streak, pausedUntil)
				if wait(d, false) {
					f.count(func(s *ForwarderStats) { s.Wakes++ })
				}
				if ctx.Err() != nil {
					break
				}
			}
			pausedUntil = time.Time{}
			forced = map[uint64]bool{}
			continue
		}
		due := func(r store.Record) bool {
			switch {
			case !r.NextAttempt.After(now):
				return true
			case r.NextAttempt.Sub(now) > f.cfg.MaxDelay:
				// No backoff is that long: the clock went back. Waiting for it
				// would stall the record for as long as the jump.
				return true
			case forced != nil && !forced[r.Seq]:
				return true
			}
			return false
		}
		rec, ok, next, expired, err := f.st.Due(ctx, now, due)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, store.ErrClosed) || errors.Is(err, store.ErrCorrupt) {
				return fmt.Errorf("forward outbox: %w", err)
			}
			storeErrors++
			f.log.Error("read outbox", "err", err)
			wait(f.backoff(storeErrors), false)
			continue
		}
		storeErrors = 0
		for _, r := range expired {
			f.deadLettered(ctx, r, "expired: not delivered within its time to live")
		}
		if !ok {
			forced = nil
			d := time.Duration(-1)
			if !next.IsZero() {
				d = max(0, next.Sub(now))
			}
			f.setWaiting(0, next)
			if wait(d, true) {
				f.count(func(s *ForwarderStats) { s.Wakes++ })
				forced = map[uint64]bool{}
			} else {
				yieldNext = true
			}
			continue
		}
		if forced != nil {
			forced[rec.Seq] = true
		}
		switch f.deliver(ctx, rec) {
		case outcomeUnreachable:
			streak++
			if streak >= pauseAfter {
				pauses++
				pausedUntil = f.cfg.Now().Add(f.backoff(pauses))
			}
		default:
			streak, pauses = 0, 0
		}
	}
	return nil
}

// yield waits while the POS is being served (ForwarderConfig.Foreground),
// for at most MaxYield. It reports whether Wake cut the wait short.
func (f *Forwarder) yield(ctx context.Context) (woken bool) {
	if f.cfg.Foreground == nil || f.cfg.MaxYield < 0 {
		return false
	}
	busy := f.cfg.Foreground.Busy()
	if busy == nil {
		return false
	}
	f.count(func(s *ForwarderStats) { s.Yields++ })
	t := time.NewTimer(f.cfg.MaxYield) // a duration on this machine, not cfg.Now's clock
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-busy:
	case <-t.C:
	case <-f.wake:
		return true
	}
	return false
}

// pauseAfter is how many records in a row must fail for a reason that is not
// their own before the forwarder pauses as a whole.
const pauseAfter = 3

type deliveryOutcome int

const (
	outcomeDone        deliveryOutcome = iota // delivered, or given up
	outcomeOwn                                // failed for a reason of its own (a refusal, not settled yet)
	outcomeUnreachable                        // failed because the receiver is unreachable
)

func (f *Forwarder) backoff(attempt uint32) time.Duration {
	return Backoff(attempt, f.cfg.BaseDelay, f.cfg.MaxDelay, f.cfg.Multiplier, f.cfg.Rand())
}

// deliver makes one attempt and records its outcome in the store.
func (f *Forwarder) deliver(ctx context.Context, rec store.Record) deliveryOutcome {
	f.setWaiting(rec.Attempts, time.Time{})
	sctx, cancel := context.WithTimeout(ctx, f.cfg.SendTimeout)
	err := f.sender.Send(sctx, rec)
	cancel()
	if ctx.Err() != nil && err != nil {
		return outcomeDone // shutting down mid-send: the attempt proves nothing
	}
	// Record the outcome even if shutdown starts now: an ack lost here
	// means a duplicate send (harmless, the receiver de-duplicates) but a
	// lost nack would reset the backoff.
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer wcancel()
	log := f.log.With("seq", rec.Seq, "kind", rec.Kind.String(), "key", rec.Key.String())
	var (
		perm *PermanentError
		rej  *RejectedError
	)
	attempts := rec.Attempts + 1
	switch {
	case err == nil:
		failpoint.Hit("outbox.delivered")
		// The receiver has it; losing the ack in a crash only means sending it
		// again, so the removal need not cost a sync of its own.
		if aerr := f.st.AckDeferred(rec.Seq); aerr != nil {
			log.Warn("ack delivered record (it will be sent again)", "err", aerr)
			return outcomeDone
		}
		f.count(func(s *ForwarderStats) {
			s.Sent++
			s.LastSuccess = f.cfg.Now()
			s.HeadAttempts = 0
		})
		return outcomeDone
	case errors.As(err, &perm), errors.As(err, &rej) && attempts >= f.cfg.MaxRejections:
		reason := err.Error()
		if rej != nil {
			reason = fmt.Sprintf("refused %d times: %v", attempts, err)
		}
		if derr := f.st.DeadLetter(wctx, rec.Seq, reason); derr != nil {
			log.Error("dead-letter record", "err", derr)
			return outcomeOwn
		}
		f.deadLettered(wctx, rec, reason)
		return outcomeDone
	default:
		next := f.cfg.Now().Add(f.backoff(attempts))
		log.Warn("delivery failed; will retry", "attempt", attempts, "next", next, "err", err)
		if nerr := f.st.Nack(wctx, rec.Seq, next, err.Error()); nerr != nil {
			log.Error("reschedule record", "err", nerr)
		}
		f.count(func(s *ForwarderStats) {
			s.Failures++
			s.LastError = err.Error()
			s.HeadAttempts = attempts
			s.NextAttempt = next
		})
		if errors.Is(err, qr.ErrNotSettled) {
			f.escalate(wctx, rec, err)
			return outcomeOwn
		}
		if rej != nil {
			return outcomeOwn
		}
		return outcomeUnreachable
	}
}

// deadLettered makes a record given up loud: an ERROR log, the counter of its
// kind and the Sender's own handling (the journal entry it concerns).
func (f *Forwarder) deadLettered(ctx context.Context, rec store.Record, reason string) {
	f.log.Error("outbox record given up and moved to dead letters; manual action needed (agent queue dead, agent queue retry)",
		"seq", rec.Seq, "kind", rec.Kind.String(), "key", rec.Key.String(), "attempts", rec.Attempts, "reason", reason)
	f.count(func(s *ForwarderStats) {
		s.DeadLettered++
		s.DeadByKind[int(rec.Kind)%len(s.DeadByKind)]++
		s.LastError = reason
	})
	if d, ok := f.sender.(DeadLetterer); ok {
		d.DeadLettered(ctx, rec, reason)
	}
}

// escalate tells a person about a record still not settled EscalateAfter
// after it was queued, once per record and run.
func (f *Forwarder) escalate(ctx context.Context, rec store.Record, err error) {
	if rec.Created.IsZero() || f.cfg.Now().Sub(rec.Created) < f.cfg.EscalateAfter {
		return
	}
	f.mu.Lock()
	_, told := f.escalated[rec.Seq]
	if !told {
		if f.escalated == nil || len(f.escalated) >= maxEscalated {
			f.escalated = map[uint64]struct{}{}
		}
		f.escalated[rec.Seq] = struct{}{}
	}
	f.mu.Unlock()
	if told {
		return
	}
	if e, ok := f.sender.(Escalator); ok {
		e.Escalate(ctx, rec, rec.Created)
	}
	f.log.Error("outbox record still not settled; it is retried, and a person should check it at PPaaS",
		"seq", rec.Seq, "kind", rec.Kind.String(), "key", rec.Key.String(), "queued", rec.Created.UTC().Format(time.RFC3339), "attempts", rec.Attempts+1, "err", err)
	f.count(func(s *ForwarderStats) { s.Escalated++ })
}

func (f *Forwarder) count(fn func(*ForwarderStats)) {
	f.mu.Lock()
	fn(&f.stats)
	f.mu.Unlock()
}

func (f *Forwarder) setWaiting(attempts uint32, next time.Time) {
	f.count(func(s *ForwarderStats) { s.HeadAttempts, s.NextAttempt = attempts, next })
}
