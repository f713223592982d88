package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Reconciliation periods (issue 14): a period is a stretch of the journal's
// start order. The period in progress runs from the end of the last closed one
// to the newest transaction; ClosePeriod records its end durably, so day-end
// totals and a POIReconciliationID survive a restart.

// bucketPeriods holds be(period id) → periodRecord. It is created by the first
// ClosePeriod; a file without it has one period, in progress.
var bucketPeriods = []byte("journal.periods")

// ErrPeriodBusy: a POS transaction begun in the period is unfinished.
var ErrPeriodBusy = errors.New("a transaction of the period is unfinished")

type periodRecord struct {
	LastOrder uint64    `json:"last"` // newest journal order in the period
	ClosedAt  time.Time `json:"closed"`
}

// scanBatch is how many transactions ScanPeriod reads per read transaction:
// fn runs outside bbolt's transaction (it may read the store itself), and a
// long scan does not hold one read transaction open.
const scanBatch = 256

// ScanPeriod calls fn, oldest first, for every transaction started in period
// id (0: the period in progress) and returns the period's id. Only one batch
// of transactions is in memory at a time.
func (s *Store) ScanPeriod(ctx context.Context, id uint64, fn func(Txn) error) (uint64, error) {
	// It walks journal.order: what is pending first (rare: reconciliation).
	if err := s.applyIndexesNow(ctx); err != nil {
		return 0, fmt.Errorf("scan reconciliation period: %w", err)
	}
	var from, to uint64 // orders (from, to]; to 0: no end
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPeriods)
		closed := uint64(0)
		if b != nil {
			if k, _ := b.Cursor().Last(); k != nil {
				closed = keySeq(k)
			}
		}
		if id == 0 {
			id = closed + 1
		}
		if id > closed+1 {
			return fmt.Errorf("%w: reconciliation period %d", ErrNotFound, id)
		}
		if id > 1 {
			r, err := readPeriod(b, id-1)
			if err != nil {
				return err
			}
			from = r.LastOrder
		}
		if id <= closed {
			r, err := readPeriod(b, id)
			if err != nil {
				return err
			}
			to = r.LastOrder
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("scan reconciliation period: %w", err)
	}
	next := from + 1
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		batch := make([]Txn, 0, scanBatch)
		err := s.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketOrder).Cursor()
			for k, v := c.Seek(seqKey(next)); k != nil && len(batch) < scanBatch; k, v = c.Next() {
				o := keySeq(k)
				if to != 0 && o > to {
					break
				}
				next = o + 1
				t, err := readTxn(tx, string(v))
				if errors.Is(err, ErrNotFound) {
					continue // pruned
				}
				if err != nil {
					return err
				}
				batch = append(batch, t)
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("scan reconciliation period %d: %w", id, err)
		}
		for _, t := range batch {
			if err := fn(t); err != nil {
				return 0, err
			}
		}
		if len(batch) < scanBatch {
			return id, nil
		}
	}
}

func readPeriod(b *bolt.Bucket, id uint64) (periodRecord, error) {
	var r periodRecord
	if b == nil {
		return r, fmt.Errorf("%w: reconciliation period %d", ErrNotFound, id)
	}
	v := b.Get(seqKey(id))
	if v == nil {
		return r, fmt.Errorf("%w: reconciliation period %d", ErrNotFound, id)
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return r, fmt.Errorf("%w: reconciliation period %d: %v", ErrCorrupt, id, err)
	}
	return r, nil
}

// OpenPeriod returns the id of the period in progress.
func (s *Store) OpenPeriod(ctx context.Context) (uint64, error) {
	if id := s.period.Load(); id != 0 {
		return id, nil
	}
	var id uint64
	err := s.view(func(tx *bolt.Tx) error {
		id = 1
		if b := tx.Bucket(bucketPeriods); b != nil {
			if k, _ := b.Cursor().Last(); k != nil {
				id = keySeq(k) + 1
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read reconciliation period: %w", err)
	}
	s.period.CompareAndSwap(0, id) // a ClosePeriod meanwhile has stored a newer one
	return id, nil
}

// ClosePeriod ends the period in progress after the newest transaction and
// returns its id. It fails with ErrPeriodBusy while a transaction with a
// ServiceID (a POS request) started in the period is unfinished; the check and
// the close are one write, so no transaction can start in between.
func (s *Store) ClosePeriod(ctx context.Context, at time.Time) (uint64, error) {
	var id uint64
	err := s.do(ctx, func(w *wtx) error {
		from := uint64(0)
		closed := uint64(0)
		if b := w.tx.Bucket(bucketPeriods); b != nil {
			if k, v := b.Cursor().Last(); k != nil {
				closed = keySeq(k)
				var r periodRecord
				if err := json.Unmarshal(v, &r); err != nil {
					return &CorruptError{Path: s.path, Err: fmt.Errorf("reconciliation period %d: %w", closed, err)}
				}
				from = r.LastOrder
			}
		}
		txb := w.tx.Bucket(bucketTxn)
		if err := w.tx.Bucket(bucketUnfin).ForEach(func(k, _ []byte) error {
			var h txnHeader
			if hv := txb.Get(k); hv == nil || h.decode(hv) != nil {
				return nil
			}
			if h.ServiceID != "" && h.Order > from {
				return fmt.Errorf("%w: %s/%s", ErrPeriodBusy, h.SaleID, h.ServiceID)
			}
			return nil
		}); err != nil {
			return err
		}
		if err := s.applyIndexes(w); err != nil { // the newest order may be pending
			return err
		}
		last := from
		if k, _ := w.tx.Bucket(bucketOrder).Cursor().Last(); k != nil && keySeq(k) > last {
			last = keySeq(k)
		}
		v, err := json.Marshal(periodRecord{LastOrder: last, ClosedAt: at.UTC()})
		if err != nil {
			return err
		}
		b, err := w.tx.CreateBucketIfNotExists(bucketPeriods)
		if err != nil {
			return err
		}
		id = closed + 1
		return b.Put(seqKey(id), v)
	})
	if err != nil {
		return 0, fmt.Errorf("close reconciliation period: %w", err)
	}
	for cur := s.period.Load(); cur < id+1 && !s.period.CompareAndSwap(cur, id+1); cur = s.period.Load() {
	}
	return id, nil
}

// Journal budget and periods: evicting a finished transaction (see
// EnforceJournalBudget) takes it out of its period's totals. Rather than let
// a period left open too long be silently under-counted, each eviction of a
// transaction that can count (a POS request that ran: not compact) is
// recorded against its period, durably, in the same write as the eviction:
// PeriodGap reports it with the totals.

// bucketPeriodGaps holds be(period id) → PeriodGap, for periods that lost
// transactions to the journal budget. One record per period: bounded by the
// periods.
var bucketPeriodGaps = []byte("journal.periods.evicted")

// PeriodGap is what a period lost to the journal budget.
type PeriodGap struct {
	// Evicted counts the period's transactions (POS requests that ran)
	// evicted; 0: the period's totals are complete.
	Evicted int `json:"n"`
	// Before: every evicted transaction began at or before this time
	// (eviction goes oldest first); those begun after are all there.
	Before time.Time `json:"before"`
}

// PeriodGap returns what period id lost to the journal budget.
func (s *Store) PeriodGap(ctx context.Context, id uint64) (PeriodGap, error) {
	var g PeriodGap
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPeriodGaps)
		if b == nil {
			return nil
		}
		v := b.Get(seqKey(id))
		if v == nil {
			return nil
		}
		if err := json.Unmarshal(v, &g); err != nil {
			return fmt.Errorf("%w: evictions of reconciliation period %d: %v", ErrCorrupt, id, err)
		}
		return nil
	})
	if err != nil {
		return PeriodGap{}, fmt.Errorf("read reconciliation period %d: %w", id, err)
	}
	return g, nil
}

// periodOf returns the id of the period that holds journal order o: the
// first closed period whose last order is at or after o (binary search: a
// period's last order only grows with its id), else the one in progress.
func periodOf(tx *bolt.Tx, o uint64) (uint64, error) {
	b := tx.Bucket(bucketPeriods)
	if b == nil {
		return 1, nil
	}
	k, _ := b.Cursor().Last()
	if k == nil {
		return 1, nil
	}
	closed := keySeq(k)
	lo, hi := uint64(1), closed+1 // the answer is in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo)/2
		r, err := readPeriod(b, mid)
		if err != nil {
			return 0, err
		}
		if r.LastOrder >= o {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, nil
}

// notePeriodGaps records evicted transactions against their periods
// (inside the evicting write).
func notePeriodGaps(tx *bolt.Tx, evicted []txnHeader) error {
	gaps := map[uint64]PeriodGap{}
	for _, h := range evicted {
		if h.Compact || h.ServiceID == "" {
			continue // refused before it ran, or not a POS request: never in totals
		}
		id, err := periodOf(tx, h.Order)
		if err != nil {
			return err
		}
		g := gaps[id]
		g.Evicted++
		if h.Started.After(g.Before) {
			g.Before = h.Started.UTC()
		}
		gaps[id] = g
	}
	if len(gaps) == 0 {
		return nil
	}
	b, err := tx.CreateBucketIfNotExists(bucketPeriodGaps)
	if err != nil {
		return err
	}
	for id, g := range gaps {
		if v := b.Get(seqKey(id)); v != nil {
			var old PeriodGap
			if err := json.Unmarshal(v, &old); err != nil {
				return fmt.Errorf("%w: evictions of reconciliation period %d: %v", ErrCorrupt, id, err)
			}
			g.Evicted += old.Evicted
			if old.Before.After(g.Before) {
				g.Before = old.Before
			}
		}
		v, err := json.Marshal(g)
		if err != nil {
			return err
		}
		if err := b.Put(seqKey(id), v); err != nil {
			return err
		}
	}
	return nil
}
