package store

import (
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// The tree of buckets splits while a fresh store's indexes are inline;
// once they have their own pages, payments rewrite one page of it per
// commit, not a branch and two leaves (rootpage.go).
func TestPaymentCommitsWriteOneRootPage(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{PruneInterval: -1, NoSync: true})
	rootType := func() string {
		var typ string
		require.NoError(t, s.db.View(func(tx *bolt.Tx) error {
			p, err := tx.Page(int(tx.Cursor().Bucket().Root()))
			require.NoError(t, err)
			typ = p.Type
			return nil
		}))
		return typ
	}
	var prev []uint64
	split := false
	for i := range 300 {
		var err error
		prev, err = benchWorldPayment(ctx, s, i, prev)
		require.NoError(t, err)
		split = split || rootType() == "branch"
	}
	require.True(t, split, "the tree of buckets split while the indexes were inline")
	require.Equal(t, "leaf", rootType())
	const n = 50
	before := pageOwners(t, s)
	for i := range n {
		// Between two snapshots one commit, rarely two (a deferred write
		// committed on its own), the second replacing the first's page.
		step := func() {
			after := pageOwners(t, s)
			w := written(before, after)
			require.LessOrEqual(t, w["root"], 1, "pages of the tree of buckets written: %v", w)
			before = after
		}
		var err error
		prev, err = benchWorldPaymentThen(ctx, s, 300+i, prev, step)
		require.NoError(t, err)
		step()
	}
}

// A store's own bucket never starts with the scratch bucket's NUL byte.
func TestCompactRootScratchNameIsNoBucketOfTheStore(t *testing.T) {
	for _, name := range append(allBuckets(), bucketAlias, bucketAliasOf, bucketSale, bucketSaleLast, bucketPeriods, bucketPeriodGaps) {
		require.NotZero(t, name[0], "%s", name)
	}
}
