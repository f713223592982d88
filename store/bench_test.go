package store

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// Benchmarks for the performance targets. (d) and (e) need
// TERMAGENT_BENCH_LONG=1 (they build a 1,000,000-record file).
//
//	go test -run '^$' -bench 'AppendLatency|Drain' -benchtime 2000x ./store/
//	go test -run '^$' -bench ConcurrentAppend -benchtime 10x ./store/
//	TERMAGENT_BENCH_LONG=1 go test -run '^$' -bench LargeQueue -benchtime 1x -timeout 30m ./store/

const benchPayload = 200 // bytes: a typical transaction result

func benchEvent() Event {
	return Event{Kind: KindTransactionResult, Payload: make([]byte, benchPayload)}
}

// bareAppend is what one append costs with bbolt alone: one Update that
// takes a sequence number and puts an equivalent record.
func bareAppend(db *bolt.DB, rec *Record) error {
	return db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		return b.Put(seqKey(seq), encodeRecord(rec))
	})
}

func openBare(b *testing.B) *bolt.DB {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "bare.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(bucketOutbox); return err }); err != nil {
		b.Fatal(err)
	}
	return db
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

// (a) One producer: durable Append latency against one bare bbolt Update
// commit on the same disk, interleaved so both see the same conditions.
// Target: p50 ratio ≤ 1.2.
func BenchmarkAppendLatency(b *testing.B) {
	s, _ := openTest(b, Options{PruneInterval: -1, MaxCount: 1 << 40, MaxBytes: 1 << 40})
	db := openBare(b)
	ctx := context.Background()
	ev := benchEvent()
	rec := Record{Kind: ev.Kind, Key: uuid.New(), Payload: ev.Payload, Created: time.Now()}
	store := make([]time.Duration, 0, b.N)
	bare := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if _, err := s.Append(ctx, ev); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := bareAppend(db, &rec); err != nil {
			b.Fatal(err)
		}
		store = append(store, t1.Sub(t0))
		bare = append(bare, time.Since(t1))
	}
	b.StopTimer()
	sp, bp := percentile(store, 0.5), percentile(bare, 0.5)
	b.ReportMetric(float64(sp.Microseconds()), "store-p50-µs")
	b.ReportMetric(float64(bp.Microseconds()), "bare-p50-µs")
	b.ReportMetric(float64(percentile(store, 0.99).Microseconds()), "store-p99-µs")
	b.ReportMetric(float64(percentile(bare, 0.99).Microseconds()), "bare-p99-µs")
	b.ReportMetric(float64(sp)/float64(bp), "p50-ratio")
}

// (b) 64 concurrent producers: durable appends per second through the group
// commit writer against bbolt's Batch tuned for the producer count — the
// strongest fair configuration of the alternative: MaxBatchSize = producers
// (the default 1000 is never reached by 64 producers, so the default Batch
// only ever commits on its 10 ms timer) and the MaxBatchDelay that gave the
// best rate in a calibration run on this machine (reported as
// bolt-batch-delay-µs). There is no target: the ratio is what it is.
func BenchmarkConcurrentAppend(b *testing.B) {
	const producers = 64
	s, _ := openTest(b, Options{PruneInterval: -1, MaxCount: 1 << 40, MaxBytes: 1 << 40})
	db := openBare(b)
	db.MaxBatchSize = producers
	ctx := context.Background()
	ev := benchEvent()
	rec := Record{Kind: ev.Kind, Key: uuid.New(), Payload: ev.Payload, Created: time.Now()}
	run := func(n int, fn func() error) time.Duration {
		var left atomic.Int64
		left.Store(int64(n))
		var wg sync.WaitGroup
		t0 := time.Now()
		for range producers {
			wg.Go(func() {
				for left.Add(-1) >= 0 {
					if err := fn(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return time.Since(t0)
	}
	batch := func() error {
		return db.Batch(func(tx *bolt.Tx) error {
			bk := tx.Bucket(bucketOutbox)
			seq, err := bk.NextSequence()
			if err != nil {
				return err
			}
			return bk.Put(seqKey(seq), encodeRecord(&rec))
		})
	}
	// Calibrate: the delay only matters when a batch does not fill (a
	// producer is still busy with its previous append); keep the fastest.
	best, bestRate := time.Duration(0), 0.0
	for _, d := range []time.Duration{100 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond} {
		db.MaxBatchDelay = d
		n := producers * 10
		if rate := float64(n) / run(n, batch).Seconds(); rate > bestRate {
			best, bestRate = d, rate
		}
	}
	db.MaxBatchDelay = best
	// Each iteration: 64 producers × 50 appends through each path (enough
	// that ramp-up and ramp-down do not dominate).
	per := producers * 50
	var tStore, tBatch time.Duration
	c0 := s.Stats()
	b.ResetTimer()
	for range b.N {
		tStore += run(per, func() error { _, err := s.Append(ctx, ev); return err })
		tBatch += run(per, batch)
	}
	b.StopTimer()
	total := float64(per * b.N)
	storeRate, batchRate := total/tStore.Seconds(), total/tBatch.Seconds()
	b.ReportMetric(storeRate, "store-appends/s")
	b.ReportMetric(batchRate, "bolt-batch-appends/s")
	b.ReportMetric(float64(best.Microseconds()), "bolt-batch-delay-µs")
	b.ReportMetric(storeRate/batchRate, "ratio")
	st := s.Stats()
	b.ReportMetric(float64(st.Ops-c0.Ops)/float64(st.Commits-c0.Commits), "ops/commit")
}

// (c) Drain: Lease + Ack, each ack durable, one record at a time as the
// forwarder does (the Sender is not included: see agent's forwarder test
// for an HTTP receiver).
func BenchmarkDrain(b *testing.B) {
	s, _ := openTest(b, Options{PruneInterval: -1, MaxCount: 1 << 40, MaxBytes: 1 << 40})
	fillOutbox(b, s, b.N, benchPayload)
	ctx := context.Background()
	b.ResetTimer()
	t0 := time.Now()
	for range b.N {
		r, ok, err := s.Lease(ctx, time.Now())
		if err != nil || !ok {
			b.Fatalf("lease: %v %v", ok, err)
		}
		if err := s.Ack(ctx, r.Seq); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "records/s")
}

// fillOutbox appends n records quickly: large transactions through the
// writer (so the counters stay right) instead of n durable appends.
func fillOutbox(b testing.TB, s *Store, n, payload int) {
	ctx := context.Background()
	now := time.Now()
	for done := 0; done < n; {
		chunk := min(n-done, 20_000)
		err := s.do(ctx, func(w *wtx) error {
			bk := outboxBucket(w.tx)
			for range chunk {
				seq, err := bk.NextSequence()
				if err != nil {
					return err
				}
				r := Record{Seq: seq, Kind: KindTransactionResult, Key: uuid.New(), Payload: make([]byte, payload), Created: now}
				v := encodeRecord(&r)
				if err := bk.Put(seqKey(seq), v); err != nil {
					return err
				}
				w.c.count++
				w.c.bytes += int64(8 + len(v))
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		done += chunk
	}
}

// measureEnv makes the test binary a fresh process that opens a store and
// reports memory and timing, so (d) and (e) are not skewed by the memory the
// fill used.
const measureEnv = "TERMAGENT_BENCH_MEASURE"

type measurement struct {
	ReopenMs, VerifyMs        float64
	HeapMB, RSSMB, RSSAnonMB  float64
	AfterDrainRSSAnonMB       float64
	AfterDrainHeapMB          float64
	DrainingRSSMB             float64 // VmRSS right after draining, no forced GC
	DrainingAnonMB            float64
	Depth                     int64
	ListMs, PeekUs, DrainPerS float64
}

func TestBenchMeasureProcess(t *testing.T) {
	path := os.Getenv(measureEnv)
	if path == "" {
		t.Skip("helper process for BenchmarkLargeQueue")
	}
	ctx := context.Background()
	var m measurement
	t0 := time.Now()
	s, err := Open(ctx, path, Options{PruneInterval: -1, MaxCount: 1 << 40, MaxBytes: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	m.ReopenMs = float64(time.Since(t0).Microseconds()) / 1000
	m.Depth = s.Stats().Depth
	t1 := time.Now()
	if _, _, err := s.Peek(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	m.PeekUs = float64(time.Since(t1).Microseconds())
	t2 := time.Now()
	if _, err := s.List(ctx, 100); err != nil {
		t.Fatal(err)
	}
	m.ListMs = float64(time.Since(t2).Microseconds()) / 1000
	m.HeapMB, m.RSSMB, m.RSSAnonMB = memNow()
	t3 := time.Now()
	const drain = 2000
	for range drain {
		r, ok, err := s.Lease(ctx, time.Now())
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		if err := s.Ack(ctx, r.Seq); err != nil {
			t.Fatal(err)
		}
	}
	m.DrainPerS = drain / time.Since(t3).Seconds()
	m.DrainingRSSMB, m.DrainingAnonMB = rssNow()
	m.AfterDrainHeapMB, _, m.AfterDrainRSSAnonMB = memNow()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	t4 := time.Now()
	s, err = Open(ctx, path, Options{PruneInterval: -1, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	m.VerifyMs = float64(time.Since(t4).Microseconds()) / 1000
	_ = s.Close()
	out, _ := json.Marshal(m)
	fmt.Printf("MEASURE %s\n", out)
}

func memNow() (heapMB, rssMB, anonMB float64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapMB = float64(ms.HeapInuse) / (1 << 20)
	rssMB, anonMB = rssNow()
	return heapMB, rssMB, anonMB
}

// rssNow reads VmRSS and RssAnon as they are (no forced GC).
func rssNow() (rssMB, anonMB float64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		switch k {
		case "VmRSS":
			rssMB = kb / 1024
		case "RssAnon":
			anonMB = kb / 1024
		}
	}
	return rssMB, anonMB
}

// (d) memory and (e) reopen time with a large queue: the store must not
// load the queue into memory, so heap and anonymous RSS stay flat from
// 10,000 to 1,000,000 queued records (file-backed RSS is bbolt's mapping,
// paged in only where read).
func BenchmarkLargeQueue(b *testing.B) {
	if os.Getenv("TERMAGENT_BENCH_LONG") == "" {
		b.Skip("set TERMAGENT_BENCH_LONG=1 (builds a 1,000,000-record file)")
	}
	for _, n := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprintf("queued=%d", n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "termagent.db")
			s, err := Open(context.Background(), path, Options{PruneInterval: -1, NoSync: true, MaxCount: 1 << 40, MaxBytes: 1 << 40})
			if err != nil {
				b.Fatal(err)
			}
			fillOutbox(b, s, n, benchPayload)
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			fi, _ := os.Stat(path)
			var m measurement
			for range b.N {
				cmd := exec.Command(os.Args[0], "-test.run=^TestBenchMeasureProcess$", "-test.count=1", "-test.v=false")
				cmd.Env = append(os.Environ(), measureEnv+"="+path)
				out, err := cmd.CombinedOutput()
				if err != nil {
					b.Fatalf("measure: %v\n%s", err, out)
				}
				_, js, ok := strings.Cut(string(out), "MEASURE ")
				if !ok {
					b.Fatalf("no measurement:\n%s", out)
				}
				js, _, _ = strings.Cut(js, "\n")
				if err := json.Unmarshal([]byte(js), &m); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(m.ReopenMs, "reopen-ms")
			b.ReportMetric(m.VerifyMs, "verify-open-ms")
			b.ReportMetric(m.HeapMB, "heap-MB")
			b.ReportMetric(m.RSSAnonMB, "rss-anon-MB")
			b.ReportMetric(m.RSSMB, "rss-MB")
			b.ReportMetric(m.AfterDrainRSSAnonMB, "rss-anon-after-drain-MB")
			b.ReportMetric(m.DrainingRSSMB, "rss-draining-MB")
			b.ReportMetric(m.DrainingAnonMB, "rss-anon-draining-MB")
			b.ReportMetric(m.PeekUs, "peek-µs")
			b.ReportMetric(m.ListMs, "list100-ms")
			b.ReportMetric(m.DrainPerS, "drain-records/s")
			b.ReportMetric(float64(fi.Size())/(1<<20), "file-MB")
		})
	}
}
