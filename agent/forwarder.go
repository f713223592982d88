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

// PermanentError marks a delivery failure that retrying cannot fix; the
// record goes to the dead-letter bucket at once.
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
	DeadLettered int64     // records given up on a permanent error
	Wakes        int64     // Wake calls that cut a wait short
	HeadAttempts uint32    // failed attempts of the record at the head
	NextAttempt  time.Time // when the head is retried; zero if not waiting
	LastError    string
	LastSuccess  time.Time
}

// Forwarder drains the store's outbox in order through a Sender: one record
// in flight at a time (the outbox is one ordered stream), at least once,
// with exponential backoff and full jitter between failed attempts. Records
// whose expiry passes are moved to the dead-letter bucket by the store;
// records the Sender rejects permanently are dead-lettered at once.
type Forwarder struct {
	st     *store.Store
	sender Sender
	cfg    ForwarderConfig
	log    *slog.Logger
	wake   chan struct{}

	mu    sync.Mutex
	stats ForwarderStats
}

// NewForwarder returns a forwarder; it does nothing until Run.
func NewForwarder(st *store.Store, sender Sender, cfg ForwarderConfig, log *slog.Logger) *Forwarder {
	if log == nil {
		log = slog.Default()
	}
	return &Forwarder{
		st:     st,
		sender: sender,
		cfg:    cfg.withDefaults(),
		log:    log.With("component", "forwarder"),
		wake:   make(chan struct{}, 1),
	}
}

// Wake makes the forwarder retry the head record now instead of waiting out
// its backoff. Call it when connectivity returns (MQTT reconnected, a PPaaS
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
		case <-f.wake:
			return true
		}
		return false
	}

	force := false
	storeErrors := uint32(0)
	// acked is the last record acknowledged with a deferred ack (its removal
	// commits with the store's next durable write, off the payment path's
	// fsyncs); the next record to deliver comes after it.
	var acked uint64
	for ctx.Err() == nil {
		now := f.cfg.Now()
		rec, ok, err := f.st.PeekAfter(ctx, now, acked)
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
		if !ok {
			f.setWaiting(0, time.Time{})
			force = wait(-1, true) || force
			continue
		}
		if !force && rec.NextAttempt.After(now) {
			until := rec.NextAttempt
			if !rec.Expires.IsZero() && rec.Expires.Before(until) {
				until = rec.Expires // wake up to dead-letter it on time
			}
			f.setWaiting(rec.Attempts, rec.NextAttempt)
			if wait(until.Sub(now), false) {
				f.count(func(s *ForwarderStats) { s.Wakes++ })
				force = true
			}
			continue
		}
		force = false
		if f.deliver(ctx, rec) {
			acked = rec.Seq
		}
	}
	return nil
}

func (f *Forwarder) backoff(attempt uint32) time.Duration {
	return Backoff(attempt, f.cfg.BaseDelay, f.cfg.MaxDelay, f.cfg.Multiplier, f.cfg.Rand())
}

// deliver makes one attempt and records its outcome in the store. It reports
// whether the record was delivered and acknowledged.
func (f *Forwarder) deliver(ctx context.Context, rec store.Record) bool {
	f.setWaiting(rec.Attempts, time.Time{})
	sctx, cancel := context.WithTimeout(ctx, f.cfg.SendTimeout)
	err := f.sender.Send(sctx, rec)
	cancel()
	if ctx.Err() != nil && err != nil {
		return false // shutting down mid-send: the attempt proves nothing
	}
	// Record the outcome even if shutdown starts now: an ack lost here
	// means a duplicate send (harmless, the receiver de-duplicates) but a
	// lost nack would reset the backoff.
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer wcancel()
	log := f.log.With("seq", rec.Seq, "kind", rec.Kind.String(), "key", rec.Key.String())
	var perm *PermanentError
	switch {
	case err == nil:
		// The receiver has it; losing the ack in a crash only means sending it
		// again, so the removal need not cost a sync of its own.
		if aerr := f.st.AckDeferred(rec.Seq); aerr != nil {
			log.Warn("ack delivered record (it will be sent again)", "err", aerr)
			return false
		}
		f.count(func(s *ForwarderStats) {
			s.Sent++
			s.LastSuccess = f.cfg.Now()
			s.HeadAttempts = 0
		})
		return true
	case errors.As(err, &perm):
		log.Error("delivery rejected permanently; record moved to dead letters", "err", err)
		if derr := f.st.DeadLetter(wctx, rec.Seq, err.Error()); derr != nil {
			log.Error("dead-letter record", "err", derr)
			return false
		}
		f.count(func(s *ForwarderStats) { s.DeadLettered++; s.LastError = err.Error() })
	default:
		attempts := rec.Attempts + 1
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
	}
	return false
}

func (f *Forwarder) count(fn func(*ForwarderStats)) {
	f.mu.Lock()
	fn(&f.stats)
	f.mu.Unlock()
}

func (f *Forwarder) setWaiting(attempts uint32, next time.Time) {
	f.count(func(s *ForwarderStats) { s.HeadAttempts, s.NextAttempt = attempts, next })
}
