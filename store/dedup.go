package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SeenEvent marks an inbound event id (an MQTT provider event, say) as
// processed and reports whether it already was. Check and mark are one
// atomic step: of two concurrent calls with the same id exactly one gets
// false. The mark is durable when SeenEvent returns.
func (s *Store) SeenEvent(ctx context.Context, id string) (alreadySeen bool, err error) {
	if id == "" {
		return false, errors.New("mark event seen: empty id")
	}
	// Most duplicates are redeliveries of something long committed: answer
	// those from a read transaction without a commit.
	err = s.view(func(tx *bolt.Tx) error {
		alreadySeen = tx.Bucket(bucketSeen).Get([]byte(id)) != nil
		return nil
	})
	if err != nil || alreadySeen {
		return alreadySeen, wrapSeen(id, err)
	}
	err = s.do(ctx, func(w *wtx) error {
		seen := w.tx.Bucket(bucketSeen)
		if seen.Get([]byte(id)) != nil {
			alreadySeen = true
			return nil
		}
		return seen.Put([]byte(id), seqKey(uint64(timeNanos(w.now))))
	})
	return alreadySeen, wrapSeen(id, err)
}

func wrapSeen(id string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("mark event %q seen: %w", id, err)
}

// PruneEvents forgets event ids marked before now-EventRetention and returns
// how many it forgot.
//
// A mark is one key in the seen bucket, its time in its value (issue 17: a
// second, time-ordered index cost every commit that marks an event two more
// pages to write and sync, on a payment's path); the janitor scans the marks
// instead. Files written before keep such an index (seen.time) for their
// older marks: it is pruned first, as it was.
func (s *Store) PruneEvents(ctx context.Context, now time.Time) (int, error) {
	cut := uint64(timeNanos(now.Add(-s.opts.EventRetention)))
	total, err := s.pruneEventIndex(ctx, cut)
	if err != nil {
		return total, err
	}
	var from []byte // where the next chunk's scan starts; nil: the first key
	for {
		n, next := 0, []byte(nil)
		err := s.do(ctx, func(w *wtx) error {
			n, next = 0, nil
			seen := w.tx.Bucket(bucketSeen)
			c := seen.Cursor()
			k, v := c.First()
			if from != nil {
				k, v = c.Seek(from)
			}
			var old [][]byte
			for scanned := 0; k != nil; k, v = c.Next() {
				if scanned == moveChunk {
					next = append([]byte(nil), k...)
					break
				}
				scanned++
				if len(v) >= 8 && binary.BigEndian.Uint64(v) < cut {
					old = append(old, append([]byte(nil), k...))
				}
			}
			for _, k := range old {
				if err := seen.Delete(k); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		total += n
		if err != nil {
			return total, fmt.Errorf("prune event ids: %w", err)
		}
		if next == nil {
			return total, nil
		}
		from = next
	}
}

// pruneEventIndex prunes the marks a file written before issue 17 indexes
// by time (seen.time), with their index entries.
func (s *Store) pruneEventIndex(ctx context.Context, cut uint64) (int, error) {
	total := 0
	for {
		n, more := 0, false
		err := s.do(ctx, func(w *wtx) error {
			n, more = 0, false
			age := w.tx.Bucket(bucketSeenAge)
			seen := w.tx.Bucket(bucketSeen)
			var keys [][]byte
			c := age.Cursor()
			for k, _ := c.First(); k != nil && len(k) >= 8 && binary.BigEndian.Uint64(k) < cut; k, _ = c.Next() {
				if len(keys) == moveChunk {
					more = true
					break
				}
				keys = append(keys, append([]byte(nil), k...))
			}
			for _, k := range keys {
				id := k[8:]
				// Only forget the id if this index entry is its current mark.
				if v := seen.Get(id); v != nil && string(v) == string(k[:8]) {
					if err := seen.Delete(id); err != nil {
						return err
					}
				}
				if err := age.Delete(k); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		total += n
		if err != nil {
			return total, fmt.Errorf("prune event ids: %w", err)
		}
		if !more {
			return total, nil
		}
	}
}
