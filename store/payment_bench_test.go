package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
)

// benchWorldPayment writes what one QR payment of the agent writes, with
// the sizes sim/world's BenchmarkWorldPayment measures (transitions of a few
// hundred bytes, random UUID ids, one SaleID): the durable start, two
// deferred QR transitions naming the PPaaS transaction (an alias), the
// durable outcome with the result and receipt events; before it all, the
// deferred acknowledgements of the previous payment's events (the
// forwarder). The approval event is not marked seen: its id is in the QR
// step it caused (agent/payments.go). It returns the new outbox records'
// sequence numbers.
func benchWorldPayment(ctx context.Context, s *Store, i int, prev []uint64) ([]uint64, error) {
	return benchWorldPaymentThen(ctx, s, i, prev, nil)
}

// benchWorldPaymentThen is benchWorldPayment calling started, if not nil,
// between the payment's two commits.
func benchWorldPaymentThen(ctx context.Context, s *Store, i int, prev []uint64, started func()) ([]uint64, error) {
	id, ppaas := uuid.NewString(), uuid.NewString()
	data := func(n int) []byte {
		b := make([]byte, n)
		for j := range b {
			b[j] = 'a' + byte((i+j)%26)
		}
		return b
	}
	for _, seq := range prev { // the forwarder delivered them while the POS read its response
		if err := s.AckDeferred(seq); err != nil {
			return nil, err
		}
	}
	if _, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "POS-1", ServiceID: uuid.NewString()[:12]},
		Transition{State: "nexo.started", Data: data(700)}); err != nil {
		return nil, err
	}
	if started != nil {
		started()
	}
	for _, st := range []string{"qr.created", "qr.approved"} {
		if err := s.AppendTxnDeferred(id, Transition{State: st, Data: data(300), Alias: ppaas}); err != nil {
			return nil, err
		}
	}
	var seqs []uint64
	result := Event{Kind: KindTransactionResult, Payload: data(450)}
	receipt := Event{Kind: KindTransactionResult, Payload: data(750)}
	if err := s.FinishTxnEvents(ctx, id, []Transition{{State: "nexo.done", Final: true, Data: data(900)}}, result, receipt); err != nil {
		return nil, err
	}
	after := uint64(0)
	if len(prev) > 0 {
		after = prev[len(prev)-1]
	}
	for {
		r, ok, err := s.PeekAfter(ctx, time.Now(), after)
		if err != nil || !ok {
			return seqs, err
		}
		seqs, after = append(seqs, r.Seq), r.Seq
	}
}

// BenchmarkPaymentCommits: what a payment's commits write and how long
// bbolt takes to write and sync them (TxStats.WriteTime), against the floor
// of one page written and fdatasynced twice per commit, back to back,
// measured on the same filesystem between payments; apart, the writer's commits that apply a batch of
// payments' indexes (unindexed.go), per payment; and the wall time of a
// payment (its two commits and the store calls between), p50 and p90. b.N
// payments on a journal that already holds TERMAGENT_PAYMENT_HISTORY
// (default 1,000) of them.
//
//	go test -run '^$' -bench PaymentCommits -benchtime 1000x ./store/
func BenchmarkPaymentCommits(b *testing.B) {
	ctx := context.Background()
	s, _ := openTest(b, Options{PruneInterval: -1})
	var prev []uint64
	for i := range 1000 {
		var err error
		if prev, err = benchWorldPayment(ctx, s, i, prev); err != nil {
			b.Fatal(err)
		}
	}
	f, err := os.Create(filepath.Join(filepath.Dir(s.Path()), "floor"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	page := make([]byte, 4096)
	var syncs, firsts, took []time.Duration // a commit's floor (a page synced twice), its first sync, a payment
	var first time.Duration
	before, beforeIdx := s.DiskStats(), s.indexDiskStats()
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		if prev, err = benchWorldPayment(ctx, s, 1000+i, prev); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(t0))
		b.StopTimer()
		t0 = time.Now()
		for range 2 { // a commit's two syncs, back to back: the second costs less
			if _, err := f.WriteAt(page, 0); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			if first == 0 {
				first = time.Since(t0)
			}
		}
		syncs, firsts, first = append(syncs, time.Since(t0)), append(firsts, first), 0
		b.StartTimer()
	}
	b.StopTimer()
	all := s.DiskStats().Sub(before)
	idx := s.indexDiskStats().Sub(beforeIdx)
	d := all.Sub(idx) // the payments' own commits
	sync := percentile(syncs, 0.5)
	n := float64(b.N)
	b.ReportMetric(float64(d.Commits)/n, "commits/payment")
	b.ReportMetric(float64(all.Pages)/n, "pages/payment")
	b.ReportMetric(float64(d.Pages)/float64(d.Commits), "pages/commit")
	b.ReportMetric(float64(d.WriteTime.Microseconds())/float64(d.Commits), "write-µs/commit")
	b.ReportMetric(float64(idx.Commits)/n, "index-commits/payment")
	b.ReportMetric(float64(idx.Pages)/n, "index-pages/payment")
	b.ReportMetric(float64(idx.WriteTime.Microseconds())/n, "index-write-µs/payment")
	b.ReportMetric(float64(all.WriteTime.Microseconds())/n, "write-µs/payment")
	b.ReportMetric(float64(percentile(firsts, 0.5).Microseconds()), "fdatasync-p50-µs")
	b.ReportMetric(float64(sync.Microseconds()), "commit-floor-p50-µs")
	b.ReportMetric(float64(d.WriteTime)/float64(d.Commits)/float64(sync), "write/floor")
	b.ReportMetric(float64(percentile(took, 0.5).Microseconds()), "payment-p50-µs")
	b.ReportMetric(float64(percentile(took, 0.9).Microseconds()), "payment-p90-µs")
}

// BenchmarkIndexAfterStep: BenchmarkPaymentCommits on two stores side by
// side, one writing journal.order, journal.svc and journal.alias in the
// step's own commit (as before unindexed.go), one in the writer's batch
// commits, payments alternating between them so that both see the same
// disk: pages per payment, bbolt's write time per payment (its commits and
// its share of the index commits) and per payment commit, and a payment's
// p50 wall time.
//
//	go test -run '^$' -bench IndexAfterStep -benchtime 1000x ./store/
func BenchmarkIndexAfterStep(b *testing.B) {
	with, _ := openTest(b, Options{PruneInterval: -1, indexWithStep: true})
	after, _ := openTest(b, Options{PruneInterval: -1})
	i0 := after.indexDiskStats()
	var took [2][]time.Duration
	dw, da := pairedPaymentsTimed(b, with, after, &took)
	idx := after.indexDiskStats().Sub(i0)
	pay := da.Sub(idx)
	n := float64(b.N)
	b.ReportMetric(float64(dw.Pages)/n, "with-pages/payment")
	b.ReportMetric(float64(da.Pages)/n, "after-pages/payment")
	b.ReportMetric(float64(dw.WriteTime.Microseconds())/n, "with-write-µs/payment")
	b.ReportMetric(float64(da.WriteTime.Microseconds())/n, "after-write-µs/payment")
	b.ReportMetric(float64(dw.WriteTime.Microseconds())/float64(dw.Commits), "with-write-µs/commit")
	b.ReportMetric(float64(pay.WriteTime.Microseconds())/float64(pay.Commits), "after-write-µs/commit")
	b.ReportMetric(float64(idx.WriteTime.Microseconds())/n, "after-index-write-µs/payment")
	b.ReportMetric(float64(percentile(took[0], 0.5).Microseconds()), "with-p50-µs")
	b.ReportMetric(float64(percentile(took[1], 0.5).Microseconds()), "after-p50-µs")
}

// BenchmarkJournalLayout: BenchmarkPaymentCommits on two stores side by
// side, one writing transitions beside their headers (schema 2), one where
// schema 1 wrote them (journal.trans, journal.alias.txn), payments
// alternating between them so that both see the same disk: pages per
// commit and bbolt's write time per commit of each, and their ratio.
//
//	go test -run '^$' -bench JournalLayout -benchtime 1000x ./store/
func BenchmarkJournalLayout(b *testing.B) {
	v2, _ := openTest(b, Options{PruneInterval: -1})
	v1, _ := openTest(b, Options{PruneInterval: -1, schema1Layout: true})
	d1, d2 := pairedPayments(b, v1, v2)
	b.ReportMetric(float64(d1.Pages)/float64(d1.Commits), "schema1-pages/commit")
	b.ReportMetric(float64(d2.Pages)/float64(d2.Commits), "schema2-pages/commit")
	b.ReportMetric(float64(d1.WriteTime.Microseconds())/float64(d1.Commits), "schema1-write-µs/commit")
	b.ReportMetric(float64(d2.WriteTime.Microseconds())/float64(d2.Commits), "schema2-write-µs/commit")
	b.ReportMetric(float64(d2.WriteTime)/float64(d2.Commits)/(float64(d1.WriteTime)/float64(d1.Commits)), "write-time-ratio")
}

// pairedPayments runs benchWorldPayment on two stores side by side: 1,000
// payments each to warm them, then b.N each, alternating which goes first so
// that both see the same disk. It returns what each wrote during the b.N.
func pairedPayments(b *testing.B, x, y *Store) (dx, dy DiskStats) {
	return pairedPaymentsTimed(b, x, y, nil)
}

// pairedPaymentsTimed is pairedPayments noting each payment's wall time in
// took, if not nil.
func pairedPaymentsTimed(b *testing.B, x, y *Store, took *[2][]time.Duration) (dx, dy DiskStats) {
	b.Helper()
	ctx := context.Background()
	stores := []*Store{x, y}
	prev := make([][]uint64, 2)
	for i := range 1000 {
		for j, s := range stores {
			var err error
			if prev[j], err = benchWorldPayment(ctx, s, i, prev[j]); err != nil {
				b.Fatal(err)
			}
		}
	}
	before := []DiskStats{x.DiskStats(), y.DiskStats()}
	b.ResetTimer()
	for i := range b.N {
		for j := range stores {
			j = (i + j) % 2 // alternate which one goes first
			t0 := time.Now()
			var err error
			if prev[j], err = benchWorldPayment(ctx, stores[j], 1000+i, prev[j]); err != nil {
				b.Fatal(err)
			}
			if took != nil {
				took[j] = append(took[j], time.Since(t0))
			}
		}
	}
	b.StopTimer()
	return x.DiskStats().Sub(before[0]), y.DiskStats().Sub(before[1])
}

// BenchmarkRootCompaction: BenchmarkPaymentCommits on two stores side by
// side, one keeping bbolt's tree of buckets to one page (rootpage.go), one
// leaving it as a fresh store's inline indexes split it (both files split
// before the first payment, as a file in the field may be): pages per commit
// and bbolt's write time per commit of each, and their ratio.
//
//	go test -run '^$' -bench RootCompaction -benchtime 1000x ./store/
func BenchmarkRootCompaction(b *testing.B) {
	open := func(opts Options) *Store {
		s, path := openTest(b, Options{NoSync: true})
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		splitTreeOfBuckets(b, path)
		s, err := Open(context.Background(), path, opts)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		return s
	}
	off := open(Options{PruneInterval: -1, noCompactRoot: true})
	on := open(Options{PruneInterval: -1})
	d0, d1 := pairedPayments(b, off, on)
	b.ReportMetric(float64(d0.Pages)/float64(d0.Commits), "split-pages/commit")
	b.ReportMetric(float64(d1.Pages)/float64(d1.Commits), "compact-pages/commit")
	b.ReportMetric(float64(d0.WriteTime.Microseconds())/float64(d0.Commits), "split-write-µs/commit")
	b.ReportMetric(float64(d1.WriteTime.Microseconds())/float64(d1.Commits), "compact-write-µs/commit")
	b.ReportMetric(float64(d1.WriteTime)/float64(d1.Commits)/(float64(d0.WriteTime)/float64(d0.Commits)), "write-time-ratio")
}
