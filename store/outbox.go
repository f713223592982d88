package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// maxErrorText bounds the stored delivery error so a chatty receiver cannot
// grow records.
const maxErrorText = 512

// moveChunk bounds the records moved in one transaction by the bulk
// operations (retry, expiry) so that a huge dead-letter bucket does not make
// one giant transaction.
const moveChunk = 5000

// outboxBucket returns the outbox for appending. Keys only ever grow, so
// pages can be filled almost full when they split (bbolt's default of half
// full would double the file for a long queue).
func outboxBucket(tx *bolt.Tx) *bolt.Bucket {
	b := tx.Bucket(bucketOutbox)
	b.FillPercent = 0.95
	return b
}

// Append adds an event at the tail of the outbox and returns the stored
// record once its transaction is durable. Non-critical kinds are refused
// with ErrOutboxFull when the outbox is at its bounds.
func (s *Store) Append(ctx context.Context, ev Event) (Record, error) {
	rec, fn, err := s.appendOp(ev)
	if err != nil {
		return Record{}, err
	}
	if err := s.do(ctx, fn); err != nil {
		return Record{}, err
	}
	return *rec, nil
}

// AppendDeferred adds an event like Append but without waiting: it is committed
// with the next write anybody waits for (see deferred.go), so an event that must
// become durable together with a journal write is queued just before that write.
func (s *Store) AppendDeferred(ev Event) error {
	_, fn, err := s.appendOp(ev)
	if err != nil {
		return err
	}
	return s.later(fn)
}

func (s *Store) appendOp(ev Event) (*Record, op, error) {
	if !ev.Kind.valid() {
		return nil, nil, fmt.Errorf("append to outbox: invalid kind %d", ev.Kind)
	}
	if len(ev.Payload) > s.opts.MaxRecordBytes {
		return nil, nil, fmt.Errorf("append %s to outbox: %w (%d bytes, limit %d)", ev.Kind, ErrTooLarge, len(ev.Payload), s.opts.MaxRecordBytes)
	}
	if ev.Key == uuid.Nil {
		ev.Key = uuid.New()
	}
	ttl := ev.TTL
	if ttl == 0 {
		ttl = s.opts.DefaultTTL
	}
	now := s.opts.Now()
	rec := Record{Kind: ev.Kind, Key: ev.Key, Payload: ev.Payload, Created: now}
	if ttl > 0 && !ev.Kind.Critical() {
		// Critical kinds never expire by time alone: money moved (or may
		// have), so only a delivery or a person ends them.
		rec.Expires = now.Add(ttl)
	}
	// Encoded before the commit: the value does not hold the sequence
	// number, and the commit's write lock is held for less.
	v := encodeRecord(&rec)
	size := int64(8 + len(v))
	fn := func(w *wtx) error {
		b := outboxBucket(w.tx)
		if !rec.Kind.Critical() && (w.c.count >= s.opts.MaxCount || w.c.bytes+size > s.opts.MaxBytes) {
			w.m.refused++
			return fmt.Errorf("append %s to outbox: %w (%d records, %d bytes; limits %d, %d)",
				rec.Kind, ErrOutboxFull, w.c.count, w.c.bytes, s.opts.MaxCount, s.opts.MaxBytes)
		}
		seq, err := b.NextSequence()
		if err != nil {
			return fmt.Errorf("append to outbox: next sequence: %w", err)
		}
		if err := b.Put(seqKey(seq), v); err != nil {
			return fmt.Errorf("append to outbox: %w", err)
		}
		rec.Seq = seq
		w.c.count++
		w.c.bytes += size
		w.m.appended++
		w.appended = true
		return nil
	}
	return &rec, fn, nil
}

// Peek returns the head of the outbox whether or not it is due. Heads whose
// expiry has passed at now are first moved to the dead-letter bucket, so an
// expired record is never returned and never silently lost.
func (s *Store) Peek(ctx context.Context, now time.Time) (Record, bool, error) {
	return s.PeekAfter(ctx, now, 0)
}

// PeekAfter is Peek for a consumer that acknowledged records up to seq after
// with AckDeferred: records up to after are skipped, their removal being on its
// way to the file.
func (s *Store) PeekAfter(ctx context.Context, now time.Time, after uint64) (Record, bool, error) {
	for {
		var (
			rec     Record
			found   bool
			expired bool
		)
		err := s.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketOutbox).Cursor()
			k, v := c.First()
			if after > 0 {
				k, v = c.Seek(seqKey(after + 1))
			}
			if k == nil {
				return nil
			}
			r, err := decodeRecord(keySeq(k), v)
			if err != nil {
				return &CorruptError{Path: s.path, Err: fmt.Errorf("outbox head: %w", err)}
			}
			rec, found = r, true
			expired = expiredAt(r, now)
			return nil
		})
		if err != nil {
			return Record{}, false, fmt.Errorf("peek outbox: %w", err)
		}
		if !expired {
			return rec, found, nil
		}
		if _, err := s.expireHead(ctx, now); err != nil {
			return Record{}, false, err
		}
	}
}

// Lease returns the head of the outbox if it is due at now (its NextAttempt
// is not in the future). The record stays in the outbox until Ack,
// DeadLetter or Nack. The caller must have at most one lease outstanding:
// the outbox is one ordered stream.
func (s *Store) Lease(ctx context.Context, now time.Time) (Record, bool, error) {
	rec, ok, err := s.Peek(ctx, now)
	if err != nil || !ok {
		return Record{}, false, err
	}
	if rec.NextAttempt.After(now) {
		return Record{}, false, nil
	}
	return rec, true, nil
}

// expireHead moves expired records at the head of the outbox to the
// dead-letter bucket.
func (s *Store) expireHead(ctx context.Context, now time.Time) (int, error) {
	n := 0
	err := s.do(ctx, func(w *wtx) error {
		n = 0
		c := w.tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.First(); k != nil && n < moveChunk; k, v = c.First() {
			r, err := decodeRecord(keySeq(k), v)
			if err != nil {
				return &CorruptError{Path: s.path, Err: fmt.Errorf("outbox seq %d: %w", keySeq(k), err)}
			}
			if !expiredAt(r, now) {
				break
			}
			if err := moveToDead(w, r, int64(len(k)+len(v)), "expired", now); err != nil {
				return err
			}
			w.m.expired++
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("expire outbox head: %w", err)
	}
	return n, nil
}

// expiredAt reports whether r's time to live is over at now. Critical kinds
// never expire by time alone (even records an older agent wrote with an
// expiry): money moved, or may have.
func expiredAt(r Record, now time.Time) bool {
	return !r.Kind.Critical() && !r.Expires.IsZero() && !now.Before(r.Expires)
}

// moveToDead deletes r from the outbox and stores it in the dead-letter
// bucket under the same sequence number.
func moveToDead(w *wtx, r Record, oldSize int64, reason string, now time.Time) error {
	r.LastError = truncate(reason, maxErrorText)
	r.DeadAt = now
	v := encodeRecord(&r)
	if err := w.tx.Bucket(bucketDead).Put(seqKey(r.Seq), v); err != nil {
		return fmt.Errorf("dead-letter seq %d: %w", r.Seq, err)
	}
	if err := w.tx.Bucket(bucketOutbox).Delete(seqKey(r.Seq)); err != nil {
		return fmt.Errorf("dead-letter seq %d: %w", r.Seq, err)
	}
	w.c.count--
	w.c.bytes -= oldSize
	w.c.dead++
	w.c.deadBytes += int64(8 + len(v))
	w.m.deadLettered++
	return nil
}

// Ack removes a delivered record.
func (s *Store) Ack(ctx context.Context, seq uint64) error {
	if err := s.do(ctx, ackOp(seq)); err != nil {
		return fmt.Errorf("ack outbox seq %d: %w", seq, err)
	}
	return nil
}

// AckDeferred removes a delivered record like Ack, without waiting for the
// removal to be durable: it commits with the next waited-for write. A crash
// before that delivers the record again, which at-least-once delivery allows
// (the receiver de-duplicates by key). Until then Peek still returns it: the
// consumer reads on with PeekAfter.
func (s *Store) AckDeferred(seq uint64) error {
	s.ackMu.Lock()
	s.acking = insertSorted(s.acking, seq)
	s.ackMu.Unlock()
	done := func(error) {
		s.ackMu.Lock()
		s.acking = removeSorted(s.acking, seq)
		s.ackMu.Unlock()
	}
	err := s.laterThen(ackOp(seq), done)
	if err != nil {
		done(err)
	}
	return err
}

// insertSorted adds v to the sorted set a (acknowledgements come mostly in
// increasing order: usually an append).
func insertSorted(a []uint64, v uint64) []uint64 {
	i, found := slices.BinarySearch(a, v)
	if found {
		return a
	}
	return slices.Insert(a, i, v)
}

func removeSorted(a []uint64, v uint64) []uint64 {
	if i, found := slices.BinarySearch(a, v); found {
		return slices.Delete(a, i, i+1)
	}
	return a
}

// ackingNow copies the sequence numbers acknowledged with AckDeferred whose
// removal has not committed yet (sorted). The writer updates the set after
// every commit, so a reader takes the copy before it opens its view.
func (s *Store) ackingNow() []uint64 {
	s.ackMu.RLock()
	defer s.ackMu.RUnlock()
	return slices.Clone(s.acking)
}

// ackedRun reports whether seq is in acking (ackingNow), and then the last of
// the run of consecutive such sequence numbers it starts (a drained prefix is
// skipped with one seek).
func ackedRun(acking []uint64, seq uint64) (last uint64, acked bool) {
	i, found := slices.BinarySearch(acking, seq)
	if !found {
		return 0, false
	}
	j := i
	for j+1 < len(acking) && acking[j+1] == acking[j]+1 {
		j++
	}
	return acking[j], true
}

func ackOp(seq uint64) op {
	return func(w *wtx) error {
		b := w.tx.Bucket(bucketOutbox)
		k := seqKey(seq)
		v := b.Get(k)
		if v == nil {
			return ErrNotFound
		}
		size := int64(len(k) + len(v))
		if err := b.Delete(k); err != nil {
			return err
		}
		w.c.count--
		w.c.bytes -= size
		w.m.acked++
		return nil
	}
}

// Nack records a failed delivery attempt: it increments Attempts, stores the
// error text and reschedules the record for nextAttempt.
func (s *Store) Nack(ctx context.Context, seq uint64, nextAttempt time.Time, errText string) error {
	err := s.do(ctx, func(w *wtx) error {
		b := w.tx.Bucket(bucketOutbox)
		k := seqKey(seq)
		v := b.Get(k)
		if v == nil {
			return ErrNotFound
		}
		r, err := decodeRecord(seq, v)
		if err != nil {
			return &CorruptError{Path: s.path, Err: err}
		}
		oldSize := int64(len(k) + len(v))
		r.Attempts++
		r.NextAttempt = nextAttempt
		r.LastError = truncate(errText, maxErrorText)
		nv := encodeRecord(&r)
		if err := b.Put(k, nv); err != nil {
			return err
		}
		w.c.bytes += int64(len(k)+len(nv)) - oldSize
		w.m.nacked++
		return nil
	})
	if err != nil {
		return fmt.Errorf("nack outbox seq %d: %w", seq, err)
	}
	return nil
}

// DeadLetter moves a record from the outbox to the dead-letter bucket with
// the reason (a permanent delivery error, for instance).
func (s *Store) DeadLetter(ctx context.Context, seq uint64, reason string) error {
	err := s.do(ctx, func(w *wtx) error {
		k := seqKey(seq)
		v := w.tx.Bucket(bucketOutbox).Get(k)
		if v == nil {
			return ErrNotFound
		}
		r, err := decodeRecord(seq, v)
		if err != nil {
			return &CorruptError{Path: s.path, Err: err}
		}
		return moveToDead(w, r, int64(len(k)+len(v)), reason, w.now)
	})
	if err != nil {
		return fmt.Errorf("dead-letter outbox seq %d: %w", seq, err)
	}
	return nil
}

// List returns up to limit records from the head of the outbox, reading
// only those (the outbox may hold millions).
func (s *Store) List(ctx context.Context, limit int) ([]Record, error) {
	return s.list(ctx, bucketOutbox, limit)
}

// ListDead returns up to limit dead-lettered records, oldest first.
func (s *Store) ListDead(ctx context.Context, limit int) ([]Record, error) {
	return s.list(ctx, bucketDead, limit)
}

func (s *Store) list(ctx context.Context, bucket []byte, limit int) ([]Record, error) {
	var out []Record
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			r, err := decodeRecord(keySeq(k), v)
			if err != nil {
				return &CorruptError{Path: s.path, Err: fmt.Errorf("%s seq %d: %w", bucket, keySeq(k), err)}
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", bucket, err)
	}
	return out, nil
}

// RetryDead moves dead-lettered records back to the tail of the outbox (with
// new sequence numbers, attempts reset and their original time-to-live
// restarted). With no seqs it retries them all. Bounds apply as for Append:
// non-critical records stop the retry with ErrOutboxFull when it is full.
// It returns how many records were moved.
func (s *Store) RetryDead(ctx context.Context, seqs ...uint64) (int, error) {
	total := 0
	for {
		n, more, err := s.retryChunk(ctx, seqs)
		total += n
		if err != nil {
			return total, fmt.Errorf("retry dead letters: %w", err)
		}
		if !more {
			return total, nil
		}
		if len(seqs) > 0 {
			seqs = seqs[min(len(seqs), moveChunk):]
		}
	}
}

func (s *Store) retryChunk(ctx context.Context, seqs []uint64) (n int, more bool, err error) {
	err = s.do(ctx, func(w *wtx) error {
		n, more = 0, false
		dead := w.tx.Bucket(bucketDead)
		out := outboxBucket(w.tx)
		move := func(k, v []byte) error {
			r, err := decodeRecord(keySeq(k), v)
			if err != nil {
				return &CorruptError{Path: s.path, Err: fmt.Errorf("dead seq %d: %w", keySeq(k), err)}
			}
			oldSize := int64(len(k) + len(v))
			if !r.Expires.IsZero() {
				r.Expires = w.now.Add(r.Expires.Sub(r.Created))
			}
			r.Created = w.now
			r.Attempts, r.NextAttempt, r.DeadAt, r.LastError = 0, time.Time{}, time.Time{}, ""
			nv := encodeRecord(&r)
			size := int64(8 + len(nv))
			if !r.Kind.Critical() && (w.c.count >= s.opts.MaxCount || w.c.bytes+size > s.opts.MaxBytes) {
				w.m.refused++
				return fmt.Errorf("%w (retrying dead seq %d)", ErrOutboxFull, r.Seq)
			}
			seq, err := out.NextSequence()
			if err != nil {
				return err
			}
			if err := out.Put(seqKey(seq), nv); err != nil {
				return err
			}
			w.c.count++
			w.c.bytes += size
			w.c.dead--
			w.c.deadBytes -= oldSize
			w.m.retried++
			w.appended = true
			n++
			return nil
		}
		// Deleting while iterating a bbolt cursor skips keys, so collect first.
		var keys [][]byte
		if len(seqs) == 0 {
			c := dead.Cursor()
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				if len(keys) == moveChunk {
					more = true
					break
				}
				keys = append(keys, append([]byte(nil), k...))
			}
		} else {
			for _, seq := range seqs[:min(len(seqs), moveChunk)] {
				keys = append(keys, seqKey(seq))
			}
			more = len(seqs) > moveChunk
		}
		for _, k := range keys {
			v := dead.Get(k)
			if v == nil {
				if len(seqs) > 0 {
					return fmt.Errorf("dead seq %d: %w", keySeq(k), ErrNotFound)
				}
				continue
			}
			if err := move(k, v); err != nil {
				more = false
				return err
			}
			if err := dead.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return n, more, err
}

// PurgeDead deletes every dead-lettered record and returns how many there
// were.
func (s *Store) PurgeDead(ctx context.Context) (int, error) {
	n := 0
	err := s.do(ctx, func(w *wtx) error {
		n = 0
		if err := w.tx.Bucket(bucketDead).ForEach(func(k, v []byte) error { n++; return nil }); err != nil {
			return err
		}
		if err := w.tx.DeleteBucket(bucketDead); err != nil {
			return err
		}
		if _, err := w.tx.CreateBucket(bucketDead); err != nil {
			return err
		}
		w.c.dead, w.c.deadBytes = 0, 0
		w.m.purged += int64(n)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("purge dead letters: %w", err)
	}
	return n, nil
}

// OutboxStats is a snapshot for metrics and the ops CLI. Depth, Bytes, Dead
// and DeadBytes describe the file; the other counters count since Open.
type OutboxStats struct {
	Depth     int64         // records waiting
	Bytes     int64         // their size on disk (keys + values)
	OldestAge time.Duration // age of the head record; 0 when empty
	Dead      int64         // dead-lettered records
	DeadBytes int64
	MaxCount  int64 // configured bounds, for a "fill ratio" gauge
	MaxBytes  int64

	Appended     int64
	Refused      int64 // non-critical appends refused because the outbox was full
	Acked        int64
	Nacked       int64
	DeadLettered int64 // moved to dead letters (expired or permanent failure)
	Expired      int64 // of which by expiry
	Retried      int64
	Purged       int64
	Commits      int64 // bbolt transactions by the writer
	Ops          int64 // writes they carried (Ops/Commits = mean group size)
}

// Stats returns the outbox figures. It reads only the head record.
func (s *Store) Stats() OutboxStats {
	m := &s.metrics
	st := OutboxStats{
		Depth: s.depth.Load(), Bytes: s.bytes.Load(), Dead: s.dead.Load(), DeadBytes: s.deadB.Load(),
		MaxCount: s.opts.MaxCount, MaxBytes: s.opts.MaxBytes,
		Appended: m.appended.Load(), Refused: m.refused.Load(), Acked: m.acked.Load(),
		Nacked: m.nacked.Load(), DeadLettered: m.deadLettered.Load(), Expired: m.expired.Load(),
		Retried: m.retried.Load(), Purged: m.purged.Load(), Commits: m.commits.Load(), Ops: m.ops.Load(),
	}
	_ = s.view(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(bucketOutbox).Cursor().First()
		if k == nil {
			return nil
		}
		if r, err := decodeRecord(keySeq(k), v); err == nil {
			st.OldestAge = max(0, s.opts.Now().Sub(r.Created))
		}
		return nil
	})
	return st
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary so the stored text stays valid UTF-8.
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// FindKey returns the first record with idempotency key in the outbox, or
// failing that in the dead letters (dead reports which). It reads every
// record: for restart recovery and the ops CLI, not for the payment path.
func (s *Store) FindKey(ctx context.Context, key uuid.UUID) (rec Record, dead, found bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketOutbox, bucketDead} {
			c := tx.Bucket(name).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if err := ctx.Err(); err != nil {
					return err
				}
				// The key sits at a fixed offset (after version and kind).
				if len(v) < 18 || uuid.UUID(v[2:18]) != key {
					continue
				}
				r, err := decodeRecord(keySeq(k), v)
				if err != nil {
					return &CorruptError{Path: s.path, Err: fmt.Errorf("%s seq %d: %w", name, keySeq(k), err)}
				}
				rec, dead, found = r, string(name) == string(bucketDead), true
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return Record{}, false, false, fmt.Errorf("find outbox key %s: %w", key, err)
	}
	return rec, dead, found, nil
}
