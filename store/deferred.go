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
// so a durable write always implies every deferred write submitted before it.
// Without such a write they are committed after Options.DeferredFlush.

// later queues fn as a deferred write.
func (s *Store) later(fn op) error { return s.laterThen(fn, nil) }

// laterThen is later with a function called once the write's commit is over.
func (s *Store) laterThen(fn op, after func(error)) error {
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
		_ = s.enqueue(context.Background(), &writeReq{fn: fn, after: after})
		s.kickWriter()
		return nil
	}
	s.lazy = append(s.lazy, &writeReq{fn: fn, after: after})
	if s.lazyTimer == nil {
		s.lazyTimer = time.AfterFunc(s.opts.DeferredFlush, s.flushDeferred)
	}
	return nil
}

// takeDeferredLocked moves the deferred writes to the commit queue, in order.
// The caller holds lazyMu, so no waited-for write can overtake them, and
// commits the queue itself or kicks the writer.
func (s *Store) takeDeferredLocked() {
	if s.lazyTimer != nil {
		s.lazyTimer.Stop()
		s.lazyTimer = nil
	}
	for _, r := range s.lazy {
		_ = s.enqueue(context.Background(), r) // no deadline: a background context never ends
	}
	s.lazy = nil
}

// flushDeferred commits deferred writes nobody has taken along yet.
func (s *Store) flushDeferred() {
	s.lazyMu.Lock()
	defer s.lazyMu.Unlock()
	if s.lazyClosed {
		return
	}
	s.takeDeferredLocked()
	s.kickWriter()
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
