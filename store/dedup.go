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
		at := seqKey(uint64(timeNanos(w.now)))
		if err := seen.Put([]byte(id), at); err != nil {
			return err
		}
		return w.tx.Bucket(bucketSeenAge).Put(append(at, id...), []byte{})
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
func (s *Store) PruneEvents(ctx context.Context, now time.Time) (int, error) {
	cut := uint64(timeNanos(now.Add(-s.opts.EventRetention)))
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
