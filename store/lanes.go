package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// DueScan bounds the records Due looks at past the head: that many records
// waiting out their backoff at the head of the outbox delay the rest.
const DueScan = 1024

// Due returns the record to deliver next. Records that share a key form a lane
// delivered in order (a record waits while an older one of its key is
// undelivered); different keys are independent, so one failing record delays
// only its own lane. The result is the first lane head, in outbox order, that
// due accepts; next is the earliest NextAttempt of the heads it declined (zero
// if none). Records acknowledged with AckDeferred are skipped. Non-critical
// records whose expiry has passed at now are first moved to the dead-letter
// bucket and returned in expired (so the caller can say so loudly).
func (s *Store) Due(ctx context.Context, now time.Time, due func(Record) bool) (rec Record, ok bool, next time.Time, expired []Record, err error) {
	var stale []Record
	// The acknowledgements pending are read before the view opens: an ack
	// that commits while the view is open leaves the set (the writer's
	// after-commit callback) but not the view's snapshot, and read live the
	// record would look undelivered and be sent again (seen under load as
	// extra duplicates in TestForwarderOutageThenRecovery).
	acking := s.ackingNow()
	err = s.view(func(tx *bolt.Tx) error {
		var seen map[uuid.UUID]struct{}
		c := tx.Bucket(bucketOutbox).Cursor()
		n := 0
		for k, v := c.First(); k != nil && n < DueScan; {
			if err := ctx.Err(); err != nil {
				return err
			}
			if last, acked := ackedRun(acking, keySeq(k)); acked {
				k, v = c.Seek(seqKey(last + 1))
				continue
			}
			n++
			r, err := decodeRecord(keySeq(k), v)
			if err != nil {
				return &CorruptError{Path: s.path, Err: fmt.Errorf("outbox seq %d: %w", keySeq(k), err)}
			}
			if expiredAt(r, now) {
				stale = append(stale, r)
				k, v = c.Next()
				continue
			}
			k, v = c.Next()
			if _, blocked := seen[r.Key]; blocked {
				continue
			}
			if due(r) {
				rec, ok = r, true
				return nil
			}
			if seen == nil {
				seen = map[uuid.UUID]struct{}{}
			}
			seen[r.Key] = struct{}{}
			if next.IsZero() || r.NextAttempt.Before(next) {
				next = r.NextAttempt
			}
			if !r.Kind.Critical() && !r.Expires.IsZero() && r.Expires.Before(next) {
				next = r.Expires // wake up to dead-letter it on time
			}
		}
		return nil
	})
	if err != nil {
		return Record{}, false, time.Time{}, nil, fmt.Errorf("outbox due: %w", err)
	}
	if len(stale) > 0 {
		expired, err = s.expire(ctx, now, stale)
		if err != nil {
			return Record{}, false, time.Time{}, nil, err
		}
	}
	return rec, ok, next, expired, nil
}

// expire moves the given records to the dead-letter bucket if they are still
// in the outbox and expired, and returns those it moved.
func (s *Store) expire(ctx context.Context, now time.Time, rs []Record) ([]Record, error) {
	var moved []Record
	err := s.do(ctx, func(w *wtx) error {
		moved = moved[:0]
		b := w.tx.Bucket(bucketOutbox)
		for _, r := range rs {
			k := seqKey(r.Seq)
			v := b.Get(k)
			if v == nil {
				continue
			}
			cur, err := decodeRecord(r.Seq, v)
			if err != nil || !expiredAt(cur, now) {
				continue
			}
			if err := moveToDead(w, cur, int64(len(k)+len(v)), "expired", now); err != nil {
				return err
			}
			w.m.expired++
			cur.LastError, cur.DeadAt = "expired", now
			moved = append(moved, cur)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("expire outbox records: %w", err)
	}
	return moved, nil
}
