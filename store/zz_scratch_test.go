package store

import (
	"context"
	"fmt"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestZZScratchBuckets(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, Options{PruneInterval: -1, NoSync: true})
	var prev []uint64
	var err error
	for i := range 1000 {
		if prev, err = benchWorldPayment(ctx, s, i, prev); err != nil {
			t.Fatal(err)
		}
	}
	roots := func() map[string]string {
		m := map[string]string{}
		_ = s.db.View(func(tx *bolt.Tx) error {
			return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
				st := b.Stats()
				m[string(name)] = fmt.Sprintf("%d/d%d/inl%d", b.Root(), st.Depth, st.InlineBucketN)
				return nil
			})
		})
		return m
	}
	// hook: wrap benchWorldPayment stepwise
	r0 := roots()
	d0 := s.DiskStats()
	prev, _ = benchWorldPayment(ctx, s, 5000, prev)
	r1 := roots()
	d1 := s.DiskStats().Sub(d0)
	for k, v := range r1 {
		if r0[k] != v {
			t.Logf("changed %s %s -> %s", k, r0[k], v)
		}
	}
	t.Logf("pages %d commits %d", d1.Pages, d1.Commits)
}
