package store

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// drainOutbox removes every queued record in large transactions (what a
// forwarder's acks leave behind, without a commit per record): the pages
// the backlog used end up on bbolt's free list.
func drainOutbox(b testing.TB, s *Store) {
	for {
		n := 0
		err := s.do(context.Background(), func(w *wtx) error {
			n = 0
			c := w.tx.Bucket(bucketOutbox).Cursor()
			for k, v := c.First(); k != nil && n < 20_000; k, v = c.First() {
				size := int64(len(k) + len(v))
				if err := c.Delete(); err != nil {
					return err
				}
				w.c.count--
				w.c.bytes -= size
				n++
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

// storePayment is what a payment writes to the store: the journal start,
// then the final transition with its transaction result, two durable commits.
func storePayment(ctx context.Context, s *Store, i int) error {
	id := "tx-" + strconv.Itoa(i)
	if _, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "POS", ServiceID: strconv.Itoa(i)}, Transition{State: "started"}); err != nil {
		return err
	}
	return s.AppendTxnEvents(ctx, id, []Transition{{State: "approved", Final: true}}, Event{Kind: KindTransactionResult, Payload: make([]byte, benchPayload)})
}

// BenchmarkBacklogCliff: the store-level payment (two durable commits) on a
// store whose outbox held TERMAGENT_BACKLOG records (default 100,000) and was
// drained, against a fresh store, interleaved. Each free-list strategy is a
// sub-benchmark: freelist=sync writes bbolt's free-page list on every commit
// (bbolt's default), freelist=bounded (what the store does) never writes it,
// so bbolt rebuilds it on open — reopen-ms is that open.
func BenchmarkBacklogCliff(b *testing.B) {
	backlog := 100_000
	if v := os.Getenv("TERMAGENT_BACKLOG"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("TERMAGENT_BACKLOG: %v", err)
		}
		backlog = n
	}
	for _, mode := range []struct {
		name string
		sync bool
	}{{"freelist=sync", true}, {"freelist=bounded", false}} {
		b.Run(mode.name, func(b *testing.B) {
			ctx := context.Background()
			opts := Options{PruneInterval: -1, MaxCount: 1 << 40, MaxBytes: 1 << 40, JournalMaxBytes: -1, syncFreelist: mode.sync}
			dir := b.TempDir()
			path := filepath.Join(dir, "drained.db")
			fill := opts
			fill.NoSync = true
			s, err := Open(ctx, path, fill)
			if err != nil {
				b.Fatal(err)
			}
			fillOutbox(b, s, backlog, benchPayload)
			drainOutbox(b, s)
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			drained, err := Open(ctx, path, opts)
			if err != nil {
				b.Fatal(err)
			}
			reopen := time.Since(t0)
			defer drained.Close()
			fresh, err := Open(ctx, filepath.Join(dir, "fresh.db"), opts)
			if err != nil {
				b.Fatal(err)
			}
			defer fresh.Close()
			var tFresh, tDrained []time.Duration
			d0, f0 := drained.DiskStats(), fresh.DiskStats()
			b.ResetTimer()
			for i := range b.N {
				t0 := time.Now()
				if err := storePayment(ctx, fresh, i); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := storePayment(ctx, drained, i); err != nil {
					b.Fatal(err)
				}
				tFresh = append(tFresh, t1.Sub(t0))
				tDrained = append(tDrained, time.Since(t1))
			}
			b.StopTimer()
			dd, fd := drained.DiskStats().Sub(d0), fresh.DiskStats().Sub(f0)
			p50 := func(d []time.Duration) float64 { slices.Sort(d); return float64(d[len(d)/2].Microseconds()) }
			n := float64(b.N)
			b.ReportMetric(float64(backlog), "backlog")
			b.ReportMetric(p50(tFresh), "fresh-p50-µs")
			b.ReportMetric(p50(tDrained), "drained-p50-µs")
			b.ReportMetric(p50(tDrained)/p50(tFresh), "p50-ratio")
			b.ReportMetric(float64(fd.Bytes)/1024/n, "fresh-KiB/payment")
			b.ReportMetric(float64(dd.Bytes)/1024/n, "drained-KiB/payment")
			b.ReportMetric(float64(reopen.Microseconds())/1000, "reopen-ms")
			fi, err := os.Stat(path)
			if err == nil {
				b.ReportMetric(float64(fi.Size())/(1<<20), "file-MB")
			}
		})
	}
}

// BenchmarkDrainDeferred is (c) with the forwarder's acknowledgements: each
// delivered record is acknowledged with AckDeferred (its removal rides on
// the next commit) and the next one read with PeekAfter, so the forwarder's
// drain row compares like with like. The final Flush is included.
func BenchmarkDrainDeferred(b *testing.B) {
	s, _ := openTest(b, Options{PruneInterval: -1, MaxCount: 1 << 40, MaxBytes: 1 << 40})
	fillOutbox(b, s, b.N, benchPayload)
	ctx := context.Background()
	b.ResetTimer()
	t0 := time.Now()
	var after uint64
	for range b.N {
		r, ok, err := s.PeekAfter(ctx, time.Now(), after)
		if err != nil || !ok {
			b.Fatalf("peek: %v %v", ok, err)
		}
		if err := s.AckDeferred(r.Seq); err != nil {
			b.Fatal(err)
		}
		after = r.Seq
	}
	if err := s.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "records/s")
	if d := s.Stats().Depth; d != 0 {
		b.Fatalf("%d records left", d)
	}
}
