package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// Issue 17: a mark is one key (its time in its value), not two: the commit
// that marks an event writes and syncs one bucket's pages, not also a time
// index's.
func TestSeenEventMarksOneBucket(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{})
	_, err := s.SeenEvent(ctx, "evt-durable")
	require.NoError(t, err)
	_, err = s.SeenEventDeferred(ctx, "evt-deferred")
	require.NoError(t, err)
	require.NoError(t, s.Flush(ctx))
	require.NoError(t, s.view(func(tx *bolt.Tx) error {
		require.Equal(t, 2, tx.Bucket(bucketSeen).Stats().KeyN)
		require.Zero(t, tx.Bucket(bucketSeenAge).Stats().KeyN, "no time index")
		return nil
	}))
}

// PruneEvents forgets old marks whatever their number (it scans in chunks)
// and the marks of a file written before issue 17, with their time index.
func TestPruneEventsScansMarksAndTheOldIndex(t *testing.T) {
	ctx := t.Context()
	clk := newFakeClock()
	s, _ := openTest(t, Options{Now: clk.Now, EventRetention: time.Hour, PruneInterval: -1})
	old, young := clk.Now(), clk.Now().Add(90*time.Minute)
	const marks = 2*moveChunk + 123 // more than two chunks, old and young interleaved
	require.NoError(t, s.do(ctx, func(w *wtx) error {
		seen, age := w.tx.Bucket(bucketSeen), w.tx.Bucket(bucketSeenAge)
		for i := range marks {
			at := young
			if i%2 == 0 {
				at = old
			}
			if err := seen.Put(fmt.Appendf(nil, "evt-%06d", i), seqKey(uint64(timeNanos(at)))); err != nil {
				return err
			}
		}
		// Written the old way: the mark and its time index entry.
		k := seqKey(uint64(timeNanos(old)))
		if err := seen.Put([]byte("legacy"), k); err != nil {
			return err
		}
		return age.Put(append(k, "legacy"...), []byte{})
	}))
	clk.Advance(2 * time.Hour)
	n, err := s.PruneEvents(ctx, clk.Now())
	require.NoError(t, err)
	require.Equal(t, (marks+1)/2+1, n, "every old mark, the legacy one once")
	for _, tc := range []struct {
		id   string
		seen bool
	}{{"evt-000000", false}, {"evt-000001", true}, {fmt.Sprintf("evt-%06d", marks-1), marks%2 == 0}, {"legacy", false}} {
		var got bool
		require.NoError(t, s.view(func(tx *bolt.Tx) error {
			got = tx.Bucket(bucketSeen).Get([]byte(tc.id)) != nil
			require.Zero(t, tx.Bucket(bucketSeenAge).Stats().KeyN, "the old index is emptied")
			return nil
		}))
		require.Equal(t, tc.seen, got, tc.id)
	}
}
