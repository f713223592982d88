package store

import (
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// The tree of buckets splits while a fresh store's indexes are inline
// (here: inline buckets filled until it splits, then emptied, as the
// indexes leave it when they outgrow being inline); from then on a payment
// rewrites one page of it per commit, not a branch and two leaves
// (rootpage.go).
func TestPaymentCommitsWriteOneRootPage(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{PruneInterval: -1, NoSync: true})
	path := s.Path()
	require.NoError(t, s.Close())
	rootType := func(db *bolt.DB) string {
		var typ string
		require.NoError(t, db.View(func(tx *bolt.Tx) error {
			p, err := tx.Page(int(tx.Cursor().Bucket().Root()))
			require.NoError(t, err)
			typ = p.Type
			return nil
		}))
		return typ
	}
	splitTreeOfBuckets(t, path)
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.Equal(t, "branch", rootType(db))
	require.NoError(t, db.Close())

	s, err = Open(ctx, path, Options{PruneInterval: -1, NoSync: true, manualIndexes: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	var prev []uint64
	before := pageOwners(t, s)
	for i := range 20 {
		// Between two snapshots one commit, rarely two (a deferred write
		// committed on its own), the second replacing the first's page.
		step := func() {
			after := pageOwners(t, s)
			w := written(before, after)
			require.LessOrEqual(t, w["root"], 1, "payment %d: pages of the tree of buckets written: %v", i, w)
			before = after
		}
		prev, err = benchWorldPaymentThen(ctx, s, i, prev, step)
		require.NoError(t, err)
		step()
		if i%indexBatch == indexBatch-1 { // outside the windows (unindexed.go)
			require.NoError(t, s.applyIndexesNow(ctx))
			before = pageOwners(t, s)
		}
	}
	require.Equal(t, "leaf", rootType(s.db))
}

// A store's own bucket never starts with the scratch bucket's NUL byte.
func TestCompactRootScratchNameIsNoBucketOfTheStore(t *testing.T) {
	for _, name := range append(allBuckets(), bucketAlias, bucketAliasOf, bucketSale, bucketSaleLast, bucketPeriods, bucketPeriodGaps) {
		require.NotZero(t, name[0], "%s", name)
	}
}

// splitTreeOfBuckets splits the tree of buckets of the store file at path
// as a fresh store's inline indexes do: inline buckets filled until it
// splits, then emptied.
func splitTreeOfBuckets(t testing.TB, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	defer db.Close()
	inline := [][]byte{bucketDead, bucketTrans, bucketAliasOf, bucketSeenAge, bucketUnfin, bucketSeen}
	for _, v := range [][]byte{make([]byte, 700), nil} {
		require.NoError(t, db.Update(func(tx *bolt.Tx) error {
			for _, name := range inline {
				b := tx.Bucket(name)
				if v == nil {
					require.NoError(t, b.Delete([]byte("x")))
				} else {
					require.NoError(t, b.Put([]byte("x"), v))
				}
			}
			return nil
		}))
	}
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		p, err := tx.Page(int(tx.Cursor().Bucket().Root()))
		require.NoError(t, err)
		require.Equal(t, "branch", p.Type)
		return nil
	}))
}
