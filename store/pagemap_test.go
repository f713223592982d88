package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// pageOwners maps every page the committed tree reaches to what holds it:
// a bucket's name, or "root" for the pages of the tree of buckets (and the
// inline buckets in it). Read from the file, so a test can see which pages
// a commit wrote: copy-on-write gives every rewritten page a page id the
// tree did not reach before the commit. (Across two commits a page the
// first freed may come back in the second: compare around one commit.)
func pageOwners(t testing.TB, s *Store) map[uint64]string {
	t.Helper()
	f, err := os.Open(s.Path())
	require.NoError(t, err)
	defer f.Close()
	ps := s.db.Info().PageSize
	read := func(id uint64, n int) []byte {
		b := make([]byte, n*ps)
		_, err := f.ReadAt(b, int64(id)*int64(ps))
		require.NoError(t, err)
		return b
	}
	owners := map[uint64]string{}
	var walk func(id uint64, owner string)
	walk = func(id uint64, owner string) {
		p := read(id, 1)
		flags, count, overflow := binary.LittleEndian.Uint16(p[8:]), binary.LittleEndian.Uint16(p[10:]), binary.LittleEndian.Uint32(p[12:])
		for i := uint64(0); i <= uint64(overflow); i++ {
			owners[id+i] = owner
		}
		if flags&0x01 == 0 { // not a branch
			return
		}
		for i := range int(count) {
			e := p[16+16*i:]
			walk(binary.LittleEndian.Uint64(e[8:]), owner)
		}
	}
	var rootPage uint64
	var txid uint64
	for _, m := range []uint64{0, 1} { // the newer meta page is the committed one
		p := read(m, 1)
		if id := binary.LittleEndian.Uint64(p[16+48:]); id >= txid {
			txid, rootPage = id, binary.LittleEndian.Uint64(p[16+16:])
		}
	}
	walk(rootPage, "root")
	require.NoError(t, s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if r := uint64(b.Root()); r != 0 {
				walk(r, string(name))
			}
			return nil
		})
	}))
	return owners
}

// written is what pages after holds that before did not, counted by owner.
func written(before, after map[uint64]string) map[string]int {
	n := map[string]int{}
	for id, o := range after {
		if _, ok := before[id]; !ok {
			n[o]++
		}
	}
	return n
}

// TestPaymentPagesByBucket logs which buckets the two commits of a payment
// (benchWorldPayment's) write and how many pages each, and the commit that
// applies the indexes a batch of payments owes (unindexed.go), per payment,
// with the depth of every bucket: where a payment's pages go.
func TestPaymentPagesByBucket(t *testing.T) {
	if os.Getenv("TERMAGENT_PAGEMAP") == "" {
		t.Skip("set TERMAGENT_PAGEMAP=1 to print the page table")
	}
	ctx := context.Background()
	s, _ := openTest(t, Options{PruneInterval: -1, NoSync: true, manualIndexes: true})
	prev := paymentHistory(t, s, 1000)
	const n = 200
	start, finish, apply := map[string]int{}, map[string]int{}, map[string]int{}
	d0 := s.DiskStats()
	var da DiskStats // the index commits'
	for i := range n {
		o0 := pageOwners(t, s)
		var o1 map[uint64]string
		var err error
		prev, err = benchWorldPaymentThen(ctx, s, 1000+i, prev, func() { o1 = pageOwners(t, s) })
		require.NoError(t, err)
		o2 := pageOwners(t, s)
		for k, v := range written(o0, o1) {
			start[k] += v
		}
		for k, v := range written(o1, o2) {
			finish[k] += v
		}
		if i%indexBatch == indexBatch-1 {
			a0 := s.DiskStats()
			require.NoError(t, s.applyIndexesNow(ctx))
			da = da.add(s.DiskStats().Sub(a0))
			for k, v := range written(o2, pageOwners(t, s)) {
				apply[k] += v
			}
		}
	}
	d := s.DiskStats().Sub(d0)
	names := map[string]bool{}
	for _, m := range []map[string]int{start, finish, apply} {
		for k := range m {
			names[k] = true
		}
	}
	var keys []string
	for k := range names {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%-26s %6s %6s %6s %6s %8s %8s %6s\n", "bucket", "start", "finish", "apply", "total", "depth", "leaves", "keys")
	var ts, tf, ta float64
	require.NoError(t, s.db.View(func(tx *bolt.Tx) error {
		for _, k := range keys {
			depth, leaves, keyN := "-", "-", "-"
			if b := tx.Bucket([]byte(k)); b != nil {
				st := b.Stats()
				depth, leaves, keyN = fmt.Sprint(st.Depth), fmt.Sprint(st.LeafPageN+st.BranchPageN), fmt.Sprint(st.KeyN)
				if st.InlineBucketN > 0 {
					depth = "inline"
				}
			}
			a, b, c := float64(start[k])/n, float64(finish[k])/n, float64(apply[k])/n
			ts, tf, ta = ts+a, tf+b, ta+c
			fmt.Fprintf(&sb, "%-26s %6.2f %6.2f %6.2f %6.2f %8s %8s %6s\n", k, a, b, c, a+b+c, depth, leaves, keyN)
		}
		return nil
	}))
	fmt.Fprintf(&sb, "%-26s %6.2f %6.2f %6.2f %6.2f   (+1 meta page per commit)\n", "tree pages", ts, tf, ta, ts+tf+ta)
	dp := d.Sub(da)
	fmt.Fprintf(&sb, "DiskStats: payment %.2f commits, %.2f pages; index commits per payment %.3f, %.2f pages\n",
		float64(dp.Commits)/n, float64(dp.Pages)/n, float64(da.Commits)/n, float64(da.Pages)/n)
	t.Log(sb.String())
}

// Issue 17: a payment's start writes no page of journal.order or
// journal.svc, its finish none of journal.alias; the batch that applies
// them does, once for eight payments.
func TestPaymentCommitsWriteNoIndexPage(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{PruneInterval: -1, NoSync: true, manualIndexes: true})
	prev := paymentHistory(t, s, 300)
	idx := map[string]int{}
	for i := range indexBatch {
		o0 := pageOwners(t, s)
		var o1 map[uint64]string
		var err error
		prev, err = benchWorldPaymentThen(ctx, s, 300+i, prev, func() { o1 = pageOwners(t, s) })
		require.NoError(t, err)
		o2 := pageOwners(t, s)
		ws, wf := written(o0, o1), written(o1, o2)
		require.Positive(t, ws["journal.txn"], "the start was measured")
		require.Positive(t, wf["journal.txn"], "the finish was measured")
		for _, b := range [][]byte{bucketOrder, bucketSvc, bucketAlias} {
			require.Zero(t, ws[string(b)]+wf[string(b)], "payment %d wrote %s: start %v finish %v", i, b, ws, wf)
		}
		if i == indexBatch-1 {
			require.NoError(t, s.applyIndexesNow(ctx))
			idx = written(o2, pageOwners(t, s))
		}
	}
	for _, b := range [][]byte{bucketOrder, bucketSvc, bucketAlias} {
		require.Positive(t, idx[string(b)], "the batch wrote %s: %v", b, idx)
	}
	last, ok, err := s.LastTxn(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Len(t, last.Transitions, 4)
}

// The SaleID index holds one entry per POS: inline in the tree of buckets,
// a payment's start writes no page of its own for it (journal_budget.go).
func TestStartTxnWritesNoPageForTheSaleIndex(t *testing.T) {
	ctx := t.Context()
	// The index commits (unindexed.go) between the windows, not in them.
	s, _ := openTest(t, Options{PruneInterval: -1, NoSync: true, manualIndexes: true})
	prev := paymentHistory(t, s, 300)
	for i := range 20 {
		before := pageOwners(t, s)
		var w map[string]int
		var err error
		prev, err = benchWorldPaymentThen(ctx, s, 300+i, prev, func() { w = written(before, pageOwners(t, s)) })
		require.NoError(t, err)
		require.Positive(t, w["journal.txn"], "the start was measured")
		require.Zero(t, w[string(bucketSaleLast)]+w[string(bucketSale)], "pages written for the SaleID index: %v", w)
		if i%indexBatch == indexBatch-1 {
			require.NoError(t, s.applyIndexesNow(ctx))
		}
	}
	last, ok, err := s.LastTxnForSale(ctx, "POS-1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Len(t, last.Transitions, 4)
}

// journal.order is appended to only: filled before it splits, 6,000
// transactions (UUID-sized ids) take 94 leaves under one branch page;
// half-filled (bbolt's default) they took 181 under two levels of
// branches, and every start wrote one page more of it.
func TestJournalOrderStaysShallow(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{PruneInterval: -1, NoSync: true})
	const n = 6000
	for i := range n {
		_, err := s.StartTxn(ctx, TxnRef{ID: fmt.Sprintf("%08x-0000-4000-8000-%012x", uint32(i)*2654435761, i), SaleID: "POS1"}, Transition{State: "s", Final: true})
		require.NoError(t, err)
	}
	require.NoError(t, s.applyIndexesNow(ctx))
	require.NoError(t, s.view(func(tx *bolt.Tx) error {
		st := tx.Bucket(bucketOrder).Stats()
		require.Equal(t, n, st.KeyN)
		t.Logf("journal.order: %d leaves, depth %d", st.LeafPageN, st.Depth)
		require.Equal(t, 2, st.Depth)
		require.Less(t, st.LeafPageN, 120)
		return nil
	}))
	// A start writes none of it (unindexed.go); a batch of starts applied
	// writes its last leaf and the branch page above.
	before := pageOwners(t, s)
	_, err := s.StartTxn(ctx, TxnRef{ID: "next", SaleID: "POS1"}, Transition{State: "s"})
	require.NoError(t, err)
	started := pageOwners(t, s)
	require.Zero(t, written(before, started)[string(bucketOrder)])
	require.NoError(t, s.applyIndexesNow(ctx))
	require.Equal(t, 2, written(started, pageOwners(t, s))[string(bucketOrder)])
}

// The SaleID index stays inline in the tree of buckets (no page of its own)
// for ten POSes with the longest SaleIDs the Nexo server takes (35
// characters) and UUID transaction ids; twenty take a page of their own.
func TestSaleIndexStaysInlineForTenPOSes(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{PruneInterval: -1, NoSync: true})
	inline := func() bool {
		var root uint64
		require.NoError(t, s.db.View(func(tx *bolt.Tx) error { root = uint64(tx.Bucket(bucketSaleLast).Root()); return nil }))
		return root == 0
	}
	for i := range 20 {
		sale := fmt.Sprintf("%035d", i)
		for n := range 3 {
			id := fmt.Sprintf("%08d-0000-4000-8000-%012d", i, n)
			_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: sale, ServiceID: fmt.Sprint(n)}, Transition{State: "started"})
			require.NoError(t, err)
		}
		if i == 9 {
			require.True(t, inline(), "ten POSes")
		}
	}
	require.False(t, inline(), "twenty POSes")
}

// paymentHistory makes n payments (benchWorldPayment) on a store opened
// with manualIndexes, applying the pending index entries after every batch
// as the writer would, and returns the last payment's outbox sequences.
func paymentHistory(t *testing.T, s *Store, n int) []uint64 {
	t.Helper()
	var prev []uint64
	for i := range n {
		var err error
		prev, err = benchWorldPayment(t.Context(), s, i, prev)
		require.NoError(t, err)
		if i%indexBatch == indexBatch-1 {
			require.NoError(t, s.applyIndexesNow(t.Context()))
		}
	}
	return prev
}
