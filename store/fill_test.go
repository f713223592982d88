package store

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// Zero-filling ahead, with fills of a few pages so that they happen
// regularly between the commits of a growing journal (the writer fills once
// a commit finds the filled area short; the next commit may run first),
// never writes where bbolt
// has data: every transaction reads back whole and the file passes bbolt's
// consistency check. What lies past the data does not matter to bbolt: a
// fill cut short by a crash (here, garbage past the data) changes nothing.
func TestZeroFillNeverTouchesTheData(t *testing.T) {
	ctx := t.Context()
	s, path := openTest(t, Options{PruneInterval: -1})
	require.NotNil(t, s.fill, "on with fsync")
	s.fill.chunk, s.fill.low = 3*4096, 4096 // set before the first commit
	data := json.RawMessage(`"` + strings.Repeat("d", 900) + `"`)
	const n = 150
	for i := range n {
		id := fmt.Sprintf("%08x", uint32(i)*2654435761)
		_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "POS1", ServiceID: id}, Transition{State: "started", Data: data})
		require.NoError(t, err)
		require.NoError(t, s.AppendTxnEvents(ctx, id, []Transition{{State: "done", Final: true, Data: data}}, Event{Kind: KindTransactionResult, Payload: data}))
	}
	require.NoError(t, s.applyIndexesNow(ctx)) // Close writes nothing past size
	d := s.DiskStats()
	require.Greater(t, d.ZeroFills, int64(n/8), "fills between commits")
	require.Equal(t, 2*d.Commits+d.ZeroFills, d.Fdatasyncs)
	var size int64
	require.NoError(t, s.view(func(tx *bolt.Tx) error { size = tx.Size(); return nil }))
	require.NoError(t, s.Close())

	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	if hole, ok, err := nextHole(f, size); ok {
		// The fill left no hole right past the data (where the next pages go).
		require.NoError(t, err)
		require.GreaterOrEqual(t, hole, size+4096)
	}
	_, err = f.WriteAt([]byte(strings.Repeat("\xa5", 3*4096)), size) // a fill cut short, or garbage
	require.NoError(t, err)
	require.NoError(t, f.Close())

	s, err = Open(ctx, path, Options{PruneInterval: -1, Verify: true})
	require.NoError(t, err)
	defer s.Close()
	for i := range n {
		id := fmt.Sprintf("%08x", uint32(i)*2654435761)
		tx, err := s.Txn(ctx, id)
		require.NoError(t, err)
		require.True(t, tx.Final)
		require.Len(t, tx.Transitions, 2)
		require.JSONEq(t, string(data), string(tx.Transitions[1].Data))
	}
	require.EqualValues(t, n, s.Stats().Depth)
	_, err = s.StartTxn(ctx, TxnRef{ID: "after", SaleID: "POS1", ServiceID: "after"}, Transition{State: "started", Data: data})
	require.NoError(t, err, "commits go on over what lies past the data")
}

// Without fsync there is nothing to gain: no fill.
func TestZeroFillOffWithoutSync(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	require.Nil(t, s.fill)
	appendN(t, s, KindReceipt, 3)
	require.Zero(t, s.DiskStats().ZeroFills)
}

// BenchmarkZeroFillAhead: BenchmarkPaymentCommits on two stores side by
// side, one zero-filling ahead of its data (fill.go), one not, payments
// alternating between them: bbolt's write time per commit of each, their
// ratio, and what the fills cost (bytes and time per payment, off the
// payments' path).
//
//	go test -run '^$' -bench ZeroFillAhead -benchtime 1000x ./store/
func BenchmarkZeroFillAhead(b *testing.B) {
	on, _ := openTest(b, Options{PruneInterval: -1})
	off, _ := openTest(b, Options{PruneInterval: -1, noFill: true})
	d1, d0 := pairedPayments(b, on, off)
	perCommit := func(d DiskStats) float64 { return float64(d.WriteTime) / float64(d.Commits) }
	b.ReportMetric(perCommit(d1)/1e3, "filled-write-µs/commit")
	b.ReportMetric(perCommit(d0)/1e3, "sparse-write-µs/commit")
	b.ReportMetric(perCommit(d1)/perCommit(d0), "write-time-ratio")
	b.ReportMetric(float64(d1.ZeroFillBytes)/1024/float64(b.N), "fill-KiB/payment")
	b.ReportMetric(float64(d1.ZeroFillTime.Microseconds())/float64(b.N), "fill-µs/payment")
}

// Review: the fill's high-water mark was only learnt from successful
// commits, so a first commit that failed after a reopen (a full disk, a
// damaged page) left it at 0 and the fill zeroed the file from its start:
// both meta pages and the tree. It is read from bbolt at each fill, and
// there is no fill after a failed commit.
func TestZeroFillAfterAFailedFirstCommitKeepsTheData(t *testing.T) {
	ctx := t.Context()
	s, path := openTest(t, Options{PruneInterval: -1})
	for i := range 20 {
		id := fmt.Sprintf("t%02d", i)
		_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "POS1", ServiceID: id}, Transition{State: "started", Data: json.RawMessage(`"` + strings.Repeat("x", 900) + `"`)})
		require.NoError(t, err)
	}
	require.NoError(t, s.Close())

	s, err := Open(ctx, path, Options{PruneInterval: -1})
	require.NoError(t, err)
	require.NotNil(t, s.fill)
	s.fill.chunk, s.fill.low = 1<<20, 1<<20 // fill at the first chance
	err = s.do(ctx, func(*wtx) error { return rollback{err: fmt.Errorf("disk full")} })
	require.Error(t, err)
	// The next (successful) commit is followed by a fill, from bbolt's mark.
	_, err = s.StartTxn(ctx, TxnRef{ID: "after", SaleID: "POS1", ServiceID: "after"}, Transition{State: "started"})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	s, err = Open(ctx, path, Options{PruneInterval: -1})
	require.NoError(t, err, "the file still opens")
	t.Cleanup(func() { _ = s.Close() })
	for _, id := range []string{"t00", "t19", "after"} {
		_, err := s.Txn(ctx, id)
		require.NoError(t, err, id)
	}
}
