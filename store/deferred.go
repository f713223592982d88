package store

import (
	"context"
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Deferred writes trade durability for latency where a crash cannot lose money:
// intermediate transaction states and inbound event marks that a later durable
// record or restart recovery supersedes. They are queued, not committed: the next
// write that a caller waits for takes them into its transaction ahead of itself,
// so a durable write always implies every deferred write submitted before it,
// with one exception: a journal write (StartTxn, AppendTxn, a journal step with
// no event) leaves deferred acknowledgements (AckDeferred) queued for the next
// write that touches the outbox anyway. An acknowledgement commutes with every
// journal write, and riding with one it cost that commit the outbox's leaf
// page: on a payment's path, the start commit carried the previous payment's
// acknowledgements, while the final commit writes the outbox leaf for its own
// result anyway (TestAcksRideWithTheOutboxNotTheJournal). Without such a write
// deferred writes are committed after Options.DeferredFlush, acknowledgements
// included.

// later queues fn as a deferred write.
func (s *Store) later(fn op) error { return s.laterThen(fn, nil, false) }

// laterThen is later with a function called once the write's commit is over;
// ack marks an acknowledgement.
func (s *Store) laterThen(fn op, after func(error), ack bool) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	s.pending.Add(1)
	s.mu.RUnlock()
	s.lazyMu.Lock()
	defer s.lazyMu.Unlock()
	if s.lazyClosed {
		// Close already flushed the queue and waits for pending writes: hand
		// this one to the writer now (reqs closes only once pending is zero).
		s.reqs <- &writeReq{fn: fn, after: after, ack: ack}
		return nil
	}
	s.lazy = append(s.lazy, &writeReq{fn: fn, after: after, ack: ack})
	if s.lazyTimer == nil {
		s.lazyTimer = time.AfterFunc(s.opts.DeferredFlush, s.flushDeferred)
	}
	return nil
}

// takeDeferredLocked hands the queued deferred writes to the writer, in order,
// but for the acknowledgements when keepAcks is set: they stay queued, in
// order, and the timer armed for the oldest queued write still runs, so they
// commit within Options.DeferredFlush. The caller holds lazyMu, so no
// waited-for write can overtake the others.
func (s *Store) takeDeferredLocked(keepAcks bool) {
	kept := s.lazy[:0]
	for _, r := range s.lazy {
		if keepAcks && r.ack {
			kept = append(kept, r)
			continue
		}
		s.reqs <- r
	}
	clear(s.lazy[len(kept):])
	s.lazy = kept
	if len(kept) == 0 {
		s.lazy = nil
		if s.lazyTimer != nil {
			s.lazyTimer.Stop()
			s.lazyTimer = nil
		}
	}
}

// flushDeferred commits deferred writes nobody has taken along yet.
func (s *Store) flushDeferred() {
	s.lazyMu.Lock()
	defer s.lazyMu.Unlock()
	if s.lazyClosed {
		return
	}
	s.takeDeferredLocked(false)
}

// Flush commits every deferred write now and waits until it is durable.
func (s *Store) Flush(ctx context.Context) error {
	return s.do(ctx, func(*wtx) error { return nil })
}

// SeenEventDeferred is SeenEvent with a deferred mark. Check and mark are not one
// atomic step: two concurrent calls with the same id may both report false, so
// use it only where applying an event twice is harmless (the QR state machine
// ignores an event that does not move the transaction forward).
func (s *Store) SeenEventDeferred(ctx context.Context, id string) (alreadySeen bool, err error) {
	if alreadySeen, err = s.EventSeen(ctx, id); err != nil || alreadySeen {
		return alreadySeen, err
	}
	return false, s.MarkEventDeferred(id)
}

// EventSeen reports whether event id is marked (SeenEvent, MarkEventDeferred),
// marking nothing.
func (s *Store) EventSeen(ctx context.Context, id string) (bool, error) {
	if id == "" {
		return false, errors.New("mark event seen: empty id")
	}
	var seen bool
	err := s.view(func(tx *bolt.Tx) error {
		seen = tx.Bucket(bucketSeen).Get([]byte(id)) != nil
		return nil
	})
	return seen, wrapSeen(id, err)
}

// MarkEventDeferred marks event id seen with a deferred write: for a caller
// that marks an event once it is applied, so that an event whose application
// failed is applied again when redelivered.
func (s *Store) MarkEventDeferred(id string) error {
	if id == "" {
		return errors.New("mark event seen: empty id")
	}
	return wrapSeen(id, s.later(func(w *wtx) error {
		seen := w.tx.Bucket(bucketSeen)
		if seen.Get([]byte(id)) != nil {
			return nil
		}
		return seen.Put([]byte(id), seqKey(uint64(timeNanos(w.now)))) // no time index: PruneEvents
	}))
}
