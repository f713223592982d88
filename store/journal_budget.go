package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// This file bounds the journal on disk (Options.JournalMaxBytes) and indexes
// it by SaleID, so that what a POS sends can neither fill the terminal's
// flash nor make a TransactionStatus cost a scan of 30 days of journal.

// bucketSaleLast indexes the journal by SaleID: saleID \x00 → be(order) id,
// the most recently started transaction of each SaleID, which is all a
// TransactionStatus asks for. One entry per POS, so while a terminal serves
// up to about ten POSes the bucket stays inline in the tree of buckets (bbolt
// inlines a bucket under a quarter of a page; an entry is 60–100 bytes) and a
// payment's start writes no page for it (TestStartTxnWritesNoPageForTheSaleIndex);
// with more, it gets a leaf of its own again. The index it replaces,
// journal.sale (saleID \x00 be(order) → id for every transaction), cost
// every start a leaf and a branch page.
//
// It is built from the journal at Open when missing, and rebuilt when
// journal.sale is there: a file written before it, or by an older agent
// since (which rebuilds journal.sale, kept no longer, when it finds it
// missing, and does not maintain this one).
var (
	bucketSaleLast = []byte("journal.sale.last")
	bucketSale     = []byte("journal.sale") // before journal.sale.last: deleted at Open
)

func saleLastKey(saleID string) []byte {
	return append([]byte(saleID), 0) // never empty: bbolt refuses an empty key
}

func saleLastValue(order uint64, id []byte) []byte {
	return append(seqKey(order), id...)
}

// journalBuckets are the buckets the journal budget counts.
func journalBuckets() [][]byte {
	return [][]byte{bucketTxn, bucketTrans, bucketOrder, bucketSvc, bucketUnfin, bucketSaleLast, bucketAlias, bucketAliasOf, bucketUnindexed}
}

// ensureSaleIndex creates and fills the SaleID index of a file that has
// none, or that has the older one.
func (s *Store) ensureSaleIndex() error {
	err := guard(func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			old := tx.Bucket(bucketSale) != nil
			if tx.Bucket(bucketSaleLast) != nil && !old {
				return nil
			}
			if old {
				if err := tx.DeleteBucket(bucketSale); err != nil {
					return err
				}
			}
			if tx.Bucket(bucketSaleLast) != nil {
				if err := tx.DeleteBucket(bucketSaleLast); err != nil {
					return err
				}
			}
			idx, err := tx.CreateBucket(bucketSaleLast)
			if err != nil {
				return err
			}
			txb := tx.Bucket(bucketTxn)
			return tx.Bucket(bucketOrder).ForEach(func(k, v []byte) error {
				var h txnHeader
				if hv := txb.Get(v); hv == nil || h.decode(hv) != nil {
					return nil
				}
				return idx.Put(saleLastKey(h.SaleID), saleLastValue(keySeq(k), v)) // in order: the last one stays
			})
		})
	})
	if err != nil {
		return fmt.Errorf("open store %s: index journal by SaleID: %w", s.path, err)
	}
	return nil
}

// deleteSaleIndex keeps the SaleID index right when transaction id goes
// (before its header is deleted): when id is its SaleID's last, the index
// names the SaleID's previous transaction still in the journal, found by
// walking the start order back from id, or nothing. Prune and eviction
// delete oldest first, so that walk only passes the transactions they keep,
// and it happens only when the newest transaction of a POS goes.
func deleteSaleIndex(tx *bolt.Tx, id []byte) error {
	idx := tx.Bucket(bucketSaleLast)
	hv := tx.Bucket(bucketTxn).Get(id)
	if idx == nil || hv == nil {
		return nil
	}
	var h txnHeader
	if h.decode(hv) != nil {
		return nil
	}
	key := saleLastKey(h.SaleID)
	if v := idx.Get(key); len(v) < 8 || !bytes.Equal(v[8:], id) {
		return nil
	}
	txb := tx.Bucket(bucketTxn)
	c := tx.Bucket(bucketOrder).Cursor()
	k, v := c.Seek(seqKey(h.Order))
	if k == nil {
		k, v = c.Last()
	}
	for ; k != nil; k, v = c.Prev() {
		if keySeq(k) >= h.Order || bytes.Equal(v, id) {
			continue
		}
		var ph txnHeader
		if pv := txb.Get(v); pv == nil || ph.decode(pv) != nil || ph.SaleID != h.SaleID {
			continue
		}
		return idx.Put(key, saleLastValue(keySeq(k), v))
	}
	return idx.Delete(key)
}

// lastForSale is the id of the most recently started transaction of saleID,
// from the index: one look-up, whatever the size of the journal.
func lastForSale(tx *bolt.Tx, saleID string) []byte {
	v := tx.Bucket(bucketSaleLast).Get(saleLastKey(saleID))
	if len(v) <= 8 {
		return nil
	}
	return v[8:]
}

// budget tracks the journal's size against Options.JournalMaxBytes.
type budget struct {
	est     atomic.Int64 // bytes: measured, plus what was written since
	scale   atomic.Int64 // pages per byte written, in 1/1024: from the last measure; 0 is 2 (bbolt splits pages half full)
	next    atomic.Int64 // est at which to measure again; 0: 90% of the budget
	starts  atomic.Int64
	evicted atomic.Int64
	mu      sync.Mutex // one enforcement at a time

	kick chan struct{} // room for one: journalGrew asks budgetLoop to measure
	stop chan struct{} // closed by Close
	done chan struct{} // closed when budgetLoop returns
	runs atomic.Int64  // measures budgetLoop made (tests)
}

// JournalStats describe the journal's disk budget.
type JournalStats struct {
	Bytes    int64 // journal size (measured in pages in use, plus writes since)
	MaxBytes int64 // Options.JournalMaxBytes; 0 when unbounded
	Evicted  int64 // finished transactions evicted to stay within it, since Open
}

// JournalStats returns the journal's size against its budget.
func (s *Store) JournalStats() JournalStats {
	st := JournalStats{Bytes: s.jbudget.est.Load(), Evicted: s.jbudget.evicted.Load()}
	if s.opts.JournalMaxBytes > 0 {
		st.MaxBytes = s.opts.JournalMaxBytes
	}
	return st
}

// measureJournal returns the bytes of the pages the journal's buckets hold:
// whole pages, not the bytes in use in them (pages are about half full once
// entries are evicted), so that the budget bounds the file, not only the
// data in it; and the bytes in use, for eviction to know how much data
// frees a page. An inline bucket lives in its parent's page, counted there.
func measureJournal(tx *bolt.Tx) (pages, inuse int64) {
	for _, name := range journalBuckets() {
		if b := tx.Bucket(name); b != nil {
			st := b.Stats()
			pages += int64(st.LeafAlloc + st.BranchAlloc)
			inuse += int64(st.LeafInuse + st.BranchInuse + st.InlineBucketInuse)
		}
	}
	return pages, inuse
}

func (s *Store) measure() (int64, error) {
	n, _, err := s.measureBoth()
	return n, err
}

func (s *Store) measureBoth() (pages, inuse int64, err error) {
	err = s.view(func(tx *bolt.Tx) error { pages, inuse = measureJournal(tx); return nil })
	if err == nil {
		s.jbudget.est.Store(pages)
		if inuse > 0 {
			s.jbudget.scale.Store(max(1024, pages*1024/inuse))
		}
	}
	return pages, inuse, err
}

// journalGrew accounts for a journal write and keeps the budget: near it (or
// every 256 transactions, to correct the estimate) the journal is measured,
// and over it the oldest finished transactions are evicted.
//
// Measuring walks every page of the journal (milliseconds for a full 64 MiB
// one), so it runs on the budget goroutine, off the path of the payment whose
// start crossed the mark (TestJournalMeasuredOffThePaymentsPath). Only a
// start that finds the estimate over the budget, with no eviction running,
// itself waits for the eviction: a flood of starts cannot outrun it
// (TestJournalBudgetBoundsTheFileUnderAFlood). A journal over its budget at
// Open (a budget lowered, an older file) is evicted by budgetLoop, not on
// the first payment's path.
func (s *Store) journalGrew(ctx context.Context, n int) {
	max := s.opts.JournalMaxBytes
	scale := s.jbudget.scale.Load()
	if scale == 0 {
		scale = 2048
	}
	est := s.jbudget.est.Add(int64(n) * scale / 1024) // in pages, as measured
	if max <= 0 {
		return
	}
	starts := s.jbudget.starts.Add(1)
	next := s.jbudget.next.Load()
	if next == 0 {
		next = max * 9 / 10
	}
	if est < next && starts%256 != 0 {
		return
	}
	if est < max {
		s.kickBudget()
		return
	}
	if !s.jbudget.mu.TryLock() {
		return // an eviction is running (budgetLoop): it measures until under the target
	}
	s.jbudget.mu.Unlock() // EnforceJournalBudget takes it; a race with budgetLoop only makes one wait
	if _, err := s.EnforceJournalBudget(ctx); err != nil {
		s.log.Warn("journal budget", "err", err)
	}
}

// kickBudget asks budgetLoop to measure the journal (and evict if over).
func (s *Store) kickBudget() {
	select {
	case s.jbudget.kick <- struct{}{}:
	default: // a measure is already due
	}
}

// budgetLoop measures the journal, and evicts from it when over the budget,
// each time journalGrew asks, until Close.
func (s *Store) budgetLoop() {
	defer close(s.jbudget.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // Close must not wait out an eviction of many chunks
		<-s.jbudget.stop
		cancel()
	}()
	// Every budgetSettle the journal is measured again if anything was
	// committed since the last measure (a start, a final response, an
	// after-sale record: the store's commits, outbox ones included):
	// between the measures journalGrew asks for, the size is an estimate,
	// and a burst that ends short of the next one would leave it (and the
	// file, if over the budget) as the burst left it
	// (TestJournalMeasuredOnceWritesSettle). Idle, the tick only compares a
	// counter.
	settle := time.NewTicker(budgetSettle)
	defer settle.Stop()
	measured := s.metrics.commits.Load() // commits counted at the last measure
	for {
		select {
		case <-s.jbudget.stop:
			return
		case <-s.jbudget.kick:
		case <-settle.C:
			if s.metrics.commits.Load() == measured {
				continue // nothing written since
			}
		}
		measured = s.metrics.commits.Load()
		if _, err := s.EnforceJournalBudget(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("journal budget", "err", err)
		}
		s.jbudget.runs.Add(1)
	}
}

// budgetSettle is how often the journal is measured again when anything
// was committed since.
const budgetSettle = time.Second

// EnforceJournalBudget evicts the oldest finished transactions while the
// journal is over Options.JournalMaxBytes, down to 80% of it. It never
// evicts an unfinished transaction, one that a pending (or dead-lettered)
// advice names (see Options.AdviceTxnID), nor one that ran (not compact)
// and finished within Options.ServiceIDRetention: TransactionStatus must
// still find it. When only those are left the journal stays over budget. A transaction's SaleID+ServiceID
// reservation outlives its eviction, so a retried request is refused as a
// duplicate rather than charged again. An evicted POS transaction that ran
// is counted against its reconciliation period (PeriodGap), so the period's
// totals are reported incomplete rather than silently short. It returns the
// number evicted.
func (s *Store) EnforceJournalBudget(ctx context.Context) (int, error) {
	max := s.opts.JournalMaxBytes
	if max <= 0 {
		return 0, nil
	}
	s.jbudget.mu.Lock()
	defer s.jbudget.mu.Unlock()
	size, inuse, err := s.measureBoth()
	// Measure again at 90% of the budget, or once 5% more was written when
	// what is left cannot go.
	defer func() { s.jbudget.next.Store(maxInt64(max*9/10, size+max/20)) }()
	if err != nil || size <= max {
		return 0, err
	}
	target := max * 8 / 10
	total := 0
	var after []byte // order key to resume from
	for size > target {
		if err := ctx.Err(); err != nil { // Close: stop between chunks
			return total, err
		}
		// Evictions free data, counted in bytes in use: as many as the
		// pages to free hold.
		// A transaction copies every page it changes before freeing the old
		// ones at commit: a tenth of the budget at a time, so that evicting
		// does not itself grow the file.
		n, next, err := s.evictChunk(ctx, after, min(size-target, max/10)*inuse/size)
		total += n
		s.jbudget.evicted.Add(int64(n))
		if err != nil {
			return total, fmt.Errorf("evict journal: %w", err)
		}
		if size, inuse, err = s.measureBoth(); err != nil {
			return total, err
		}
		if next == nil {
			break // nothing more may go
		}
		after = next
	}
	if size > max {
		s.log.Warn("journal over its budget: everything left is unfinished, awaits an advice, or finished within the ServiceID window", "bytes", size, "max", max)
	} else if total > 0 {
		s.log.Warn("journal at its budget: oldest finished transactions evicted", "evicted", total, "bytes", size, "max", max)
	}
	return total, nil
}

// evictChunk deletes up to moveChunk evictable transactions, oldest first,
// starting at order key after, until about want bytes are freed. It
// returns where to resume (nil: the end of the journal). Each evicted POS
// transaction that ran is recorded against its reconciliation period
// (PeriodGap), in the same write.
func (s *Store) evictChunk(ctx context.Context, after []byte, want int64) (int, []byte, error) {
	var (
		n    int
		next []byte
	)
	err := s.do(ctx, func(w *wtx) error {
		n, next = 0, nil
		if err := s.applyIndexes(w); err != nil { // it walks journal.order
			return err
		}
		now := s.opts.Now()
		pinned, err := s.advisedTxns(w.tx)
		if err != nil {
			return err
		}
		if pinned != nil {
			deps, err := s.dependedOn(w.tx)
			if err != nil {
				return err
			}
			for id := range deps {
				pinned[id] = true
			}
		}
		ord, txb := w.tx.Bucket(bucketOrder), w.tx.Bucket(bucketTxn)
		type victim struct {
			k, id  []byte
			svcKey []byte // released with the transaction (compact ones only)
			h      txnHeader
		}
		var victims []victim
		var freed int64
		c := ord.Cursor()
		k, v := c.First()
		if after != nil {
			// after is the first key the last chunk did not look at: it is
			// looked at now (skipping it kept one transaction per chunk,
			// out of order, and left a hole in its period's gap record).
			k, v = c.Seek(after)
		}
		for ; k != nil; k, v = c.Next() {
			if len(victims) == moveChunk || freed >= want {
				next = append([]byte(nil), k...)
				break
			}
			hv := txb.Get(v)
			var h txnHeader
			if hv == nil || h.decode(hv) != nil || !h.Final || pinned == nil || pinned[string(v)] {
				continue
			}
			// A transaction that ran stays while its ServiceID is reserved: a
			// POS that lost the answer asks TransactionStatus within that
			// window, and "not found" would tell it nothing was charged.
			if !h.Compact && now.Sub(h.Updated) < s.opts.ServiceIDRetention {
				continue
			}
			vi := victim{k: append([]byte(nil), k...), id: append([]byte(nil), v...), h: h}
			if h.Compact {
				sk := serviceKey(h.SaleID, h.ServiceID)
				if sv := w.tx.Bucket(bucketSvc).Get(sk); len(sv) >= 8 && bytes.Equal(sv[8:], v) {
					vi.svcKey = sk
				}
			}
			victims = append(victims, vi)
			freed += int64(len(hv)+len(v)) + transBytes(w.tx, v)
		}
		headers := make([]txnHeader, len(victims))
		for i, vi := range victims {
			headers[i] = vi.h
		}
		if err := notePeriodGaps(w.tx, headers); err != nil {
			return err
		}
		for _, vi := range victims {
			if err := deleteTxn(w.tx, vi.id); err != nil {
				return err
			}
			if vi.svcKey != nil {
				if err := w.tx.Bucket(bucketSvc).Delete(vi.svcKey); err != nil {
					return err
				}
			}
			if err := ord.Delete(vi.k); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, next, err
}

func transBytes(tx *bolt.Tx, id []byte) int64 {
	var n int64
	prefix := append(append([]byte(nil), id...), 0)
	for _, name := range [][]byte{bucketTrans, bucketTxn} { // txnLayout
		c := tx.Bucket(name).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			n += int64(len(k) + len(v))
		}
	}
	return n
}

// advisedTxns are the transactions named by an advice in the outbox or the
// dead letters: they must stay. Without Options.AdviceTxnID the store cannot
// tell which transaction an advice is about, so while any advice exists it
// returns nil: nothing may be evicted. The same holds for a queued advice
// AdviceTxnID cannot read, but not for a dead-lettered one: that advice was
// given up (loudly) because it does not decode, it names nothing anyone can
// read, and keeping every transaction for it would grow the file without
// bound (TestUndecodableDeadAdviceDoesNotStopPruning).
func (s *Store) advisedTxns(tx *bolt.Tx) (map[string]bool, error) {
	pinned := map[string]bool{}
	for _, name := range [][]byte{bucketOutbox, bucketDead} {
		dead := bytes.Equal(name, bucketDead)
		err := tx.Bucket(name).ForEach(func(k, v []byte) error {
			if len(v) < 2 || Kind(v[1]) != KindAdvice {
				return nil
			}
			r, err := decodeRecord(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return nil
			}
			if s.opts.AdviceTxnID == nil {
				pinned = nil
				return errStopScan
			}
			if id := s.opts.AdviceTxnID(r.Payload); id != "" {
				pinned[id] = true
			} else if !dead {
				pinned = nil
				return errStopScan
			}
			return nil
		})
		if err == errStopScan {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return pinned, nil
}

// dependedOn are the transactions an unfinished one depends on (see
// Options.DependsOn): they must stay while it is unfinished.
func (s *Store) dependedOn(tx *bolt.Tx) (map[string]bool, error) {
	deps := map[string]bool{}
	if s.opts.DependsOn == nil {
		return deps, nil
	}
	err := tx.Bucket(bucketUnfin).ForEach(func(k, _ []byte) error {
		t, err := readTxn(tx, string(k))
		if err != nil {
			return err
		}
		if id := s.opts.DependsOn(t); id != "" {
			deps[id] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list what unfinished transactions depend on: %w", err)
	}
	return deps, nil
}

var errStopScan = fmt.Errorf("stop scan")

func maxInt64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}
