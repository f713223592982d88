package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Journal errors.
var (
	// ErrDuplicateServiceID: the SaleID+ServiceID pair was used within
	// Options.ServiceIDRetention (Nexo requires it unique for 48 h).
	ErrDuplicateServiceID = errors.New("duplicate ServiceID for this SaleID")
	// ErrTxnExists: a transaction with this id is already journaled.
	ErrTxnExists = errors.New("transaction already journaled")
	// ErrTxnFinal: the transaction already has a final transition
	// (FinishTxnEvents).
	ErrTxnFinal = errors.New("transaction already final")
)

// TxnRef identifies a transaction: our id, and the POS's SaleID and
// ServiceID of the request that started it.
type TxnRef struct {
	ID        string
	SaleID    string
	ServiceID string
	// Compact marks a transaction refused before anything ran (issue 11):
	// evicting it for the journal budget also releases its ServiceID, since
	// a retry would be refused the same way.
	Compact bool
}

// Transition is one step in a transaction's life. State and Data are the
// caller's (the journal does not interpret them); Final marks the outcome as
// settled, which takes the transaction off the unfinished list.
type Transition struct {
	At    time.Time       `json:"at"`
	State string          `json:"state"`
	Final bool            `json:"final,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
	// Alias, when set, indexes the transaction under another name it is
	// known by (TxnByAlias; store/alias.go). It is not part of the stored
	// transition: read back, it is empty.
	Alias string `json:"-"`
}

// Txn is a journaled transaction with its transitions, oldest first.
type Txn struct {
	TxnRef
	Started     time.Time
	Updated     time.Time
	State       string // state of the last transition
	Final       bool
	Transitions []Transition
}

// txnHeader is the stored summary of a transaction.
type txnHeader struct {
	SaleID    string    `json:"sale"`
	ServiceID string    `json:"svc"`
	Started   time.Time `json:"started"`
	Updated   time.Time `json:"updated"`
	State     string    `json:"state"`
	Final     bool      `json:"final,omitempty"`
	N         uint64    `json:"n"`     // transitions so far
	Order     uint64    `json:"order"` // key in the order bucket
	Compact   bool      `json:"compact,omitempty"`
}

// Header value layout (version 2; files written before it hold JSON, a
// value starting with '{', still read), integers varint-encoded, times as in
// encodeRecord:
//
//	version(1) len(sale) sale len(svc) svc started updated len(state) state
//	flags(1: 1 final, 2 compact) n order
//
// Binary because every journal step rewrites it and every read decodes it.
const headerVersion = 2

func (h *txnHeader) encode() []byte {
	b := make([]byte, 0, 1+len(h.SaleID)+len(h.ServiceID)+len(h.State)+7*binary.MaxVarintLen64)
	b = append(b, headerVersion)
	b = binary.AppendUvarint(b, uint64(len(h.SaleID)))
	b = append(b, h.SaleID...)
	b = binary.AppendUvarint(b, uint64(len(h.ServiceID)))
	b = append(b, h.ServiceID...)
	b = binary.AppendVarint(b, timeNanos(h.Started))
	b = binary.AppendVarint(b, timeNanos(h.Updated))
	b = binary.AppendUvarint(b, uint64(len(h.State)))
	b = append(b, h.State...)
	var flags byte
	if h.Final {
		flags |= 1
	}
	if h.Compact {
		flags |= 2
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, h.N)
	return binary.AppendUvarint(b, h.Order)
}

// decode reads a header of either layout.
func (h *txnHeader) decode(v []byte) error {
	if len(v) > 0 && v[0] == '{' { // version 1: JSON
		*h = txnHeader{}
		return json.Unmarshal(v, h)
	}
	d := decoder{b: v}
	if ver := d.byte(); d.err == nil && ver != headerVersion {
		return fmt.Errorf("%w: header version %d", ErrBadRecord, ver)
	}
	x := txnHeader{SaleID: string(d.bytes(d.length())), ServiceID: string(d.bytes(d.length()))}
	x.Started, x.Updated = nanosTime(d.varint()), nanosTime(d.varint())
	x.State = string(d.bytes(d.length()))
	flags := d.byte()
	if flags&^3 != 0 {
		d.fail("header flags")
	}
	x.Final, x.Compact = flags&1 != 0, flags&2 != 0
	x.N, x.Order = d.uvarint(), d.uvarint()
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return d.err
	}
	*h = x
	return nil
}

// headerN reads only N, the transitions so far, of a header of either
// layout: what a TxnStamp check needs, without the strings decode makes.
func headerN(v []byte) (uint64, error) {
	if len(v) > 0 && v[0] == '{' {
		var h txnHeader
		err := h.decode(v)
		return h.N, err
	}
	d := decoder{b: v}
	if ver := d.byte(); d.err == nil && ver != headerVersion {
		return 0, fmt.Errorf("%w: header version %d", ErrBadRecord, ver)
	}
	d.bytes(d.length()) // SaleID
	d.bytes(d.length()) // ServiceID
	d.varint()          // Started
	d.varint()          // Updated
	d.bytes(d.length()) // State
	d.byte()            // flags
	n := d.uvarint()
	return n, d.err
}

// StartTxn journals a new transaction with its first transition. If
// ref.ServiceID is set, it fails with ErrDuplicateServiceID when the
// SaleID+ServiceID pair is reserved, else reserves it; the check and the
// insert are one atomic step, so two concurrent requests with the same
// ServiceID cannot both start.
func (s *Store) StartTxn(ctx context.Context, ref TxnRef, first Transition) (Txn, error) {
	if err := checkRef(ref); err != nil {
		return Txn{}, fmt.Errorf("start transaction: %w", err)
	}
	if first.At.IsZero() {
		first.At = s.opts.Now()
	}
	first.At = first.At.UTC()
	tv := encodeTransition(first)
	svcKey := serviceKey(ref.SaleID, ref.ServiceID)
	// Only a POS request's ServiceID is reserved; a transaction journaled
	// without one (started by the agent itself) reserves nothing.
	indexed := ref.ServiceID != ""
	h := txnHeader{SaleID: ref.SaleID, ServiceID: ref.ServiceID, Started: first.At, Updated: first.At,
		State: first.State, Final: first.Final, N: 1, Compact: ref.Compact}
	var grew int // bytes written, for the journal budget
	err := s.do(ctx, func(w *wtx) error {
		if w.tx.Bucket(bucketTxn).Get([]byte(ref.ID)) != nil {
			return ErrTxnExists
		}
		if indexed {
			// Indexed, pending, or noted earlier in this commit (unindexed.go).
			if r, ok := s.svcOwner(w, svcKey); ok {
				at := nanosTime(r.at)
				// An unfinished transaction keeps its ServiceID whatever its age.
				if w.now.Sub(at) < s.opts.ServiceIDRetention || w.tx.Bucket(bucketUnfin).Get([]byte(r.id)) != nil {
					return fmt.Errorf("%w (SaleID %q ServiceID %q used by transaction %s at %s)",
						ErrDuplicateServiceID, ref.SaleID, ref.ServiceID, r.id, at.Format(time.RFC3339))
				}
			}
		}
		order, err := nextOrder(w.tx)
		if err != nil {
			return err
		}
		hdr := h
		hdr.Order = order
		hv := hdr.encode()
		id := []byte(ref.ID)
		svcAt := timeNanos(w.now)
		if !s.opts.noCompactRoot {
			if err := compactRoot(w.tx); err != nil { // rootpage.go: once per payment is enough
				return rollback{err} // it may have moved buckets already
			}
		}
		sk, sv := saleLastKey(ref.SaleID), saleLastValue(order, id)
		grew = 3*len(id) + len(hv) + len(tv) + 8 + 4*16 // 16: bbolt's element header; the SaleID index does not grow
		if indexed {
			grew += len(svcKey) + 8 + len(id) + 16
		}
		if err := putAll(
			put{w.tx.Bucket(bucketTxn), id, hv},
			put{s.transitions(w.tx), transKey(ref.ID, 1), tv}, // beside the header: same leaf (txnLayout)
			put{w.tx.Bucket(bucketUnfin), id, unfinishedValue(hdr.Final)},
			put{w.tx.Bucket(bucketSaleLast), sk, sv},
		); err != nil {
			return rollback{err} // a later put failed after the first: all or nothing
		}
		// journal.order and journal.svc: noted, written by the next batch.
		if err := s.notePending(w, id, func(e *pendingEntry) { e.order, e.svc, e.svcAt = true, indexed, svcAt }); err != nil {
			return err
		}
		d := s.pend(w)
		if indexed {
			d.svc[string(svcKey)] = svcRef{at: svcAt, id: ref.ID}
		}
		if order > d.lastOrder {
			d.lastOrder, d.lastID = order, ref.ID
		}
		return s.putAlias(w, id, first.Alias)
	})
	if err != nil {
		return Txn{}, fmt.Errorf("start transaction %s: %w", ref.ID, err)
	}
	s.journalGrew(ctx, grew)
	return Txn{TxnRef: ref, Started: h.Started, Updated: h.Updated, State: h.State, Final: h.Final,
		Transitions: []Transition{first}}, nil
}

// orderBucket is journal.order for writing (applyPendingTx). Its keys
// only ever grow (one sequence), so its pages are filled before they split,
// as the outbox's are, instead of half (bbolt's default, for keys that land
// anywhere): half as many leaves, so the index stays one branch page over
// its leaves for about twice the transactions, and a batch of starts
// applied writes two pages of it, not three (TestJournalOrderStaysShallow:
// 6,000 transactions in 94 leaves under one branch page, not 181 under two
// levels).
func orderBucket(tx *bolt.Tx) *bolt.Bucket {
	b := tx.Bucket(bucketOrder)
	b.FillPercent = 0.95
	return b
}

// unfinishedValue returns nil for final transactions: putAll skips nil
// values, so a transaction that starts final is never listed as unfinished.
func unfinishedValue(final bool) []byte {
	if final {
		return nil
	}
	return []byte{}
}

// AppendTxn adds a transition to a journaled transaction. Once a transition
// is Final the transaction stays final (later transitions, such as "advice
// sent", are still recorded).
func (s *Store) AppendTxn(ctx context.Context, id string, t Transition) error {
	fn, err := s.appendTxnOp(id, t, false)
	if err != nil {
		return err
	}
	if err := s.do(ctx, fn); err != nil {
		return fmt.Errorf("journal transaction %s: %w", id, err)
	}
	return nil
}

// AppendTxnDeferred is AppendTxn without waiting for durability: the transition
// is committed together with the next write that is waited for (or after
// Options.DeferredFlush at the latest), in submission order. For transitions whose
// loss in a crash is harmless because a later durable record, or recovery,
// supersedes them. Errors of the deferred commit are logged, not returned.
func (s *Store) AppendTxnDeferred(id string, t Transition) error {
	fn, err := s.appendTxnOp(id, t, false)
	if err != nil {
		return err
	}
	return s.later(func(w *wtx) error {
		if err := fn(w); err != nil {
			return fmt.Errorf("journal transaction %s (deferred): %w", id, err)
		}
		return nil
	})
}

// appendTxnOp appends t; with unfinished set it fails with ErrTxnFinal,
// writing nothing, when the transaction is final already.
func (s *Store) appendTxnOp(id string, t Transition, unfinished bool) (op, error) {
	if t.At.IsZero() {
		t.At = s.opts.Now()
	}
	t.At = t.At.UTC()
	tv := encodeTransition(t)
	return func(w *wtx) error {
		txb := w.tx.Bucket(bucketTxn)
		hv := txnHeaderValue(w.tx, id)
		if hv == nil {
			return ErrNotFound
		}
		var h txnHeader
		if err := h.decode(hv); err != nil {
			return &CorruptError{Path: s.path, Err: fmt.Errorf("journal header %s: %w", id, err)}
		}
		if unfinished && h.Final {
			return ErrTxnFinal
		}
		h.N++
		h.Updated, h.State = t.At, t.State
		h.Final = h.Final || t.Final
		// Every error from here on follows a write: a rollback, never a
		// half-written step committed with its caller told it failed.
		if err := putAll(put{txb, []byte(id), h.encode()}, put{s.transitions(w.tx), transKey(id, h.N), tv}); err != nil {
			return rollback{err}
		}
		if err := s.putAlias(w, []byte(id), t.Alias); err != nil {
			return err // a rollback already (alias.go)
		}
		if h.Final {
			if err := w.tx.Bucket(bucketUnfin).Delete([]byte(id)); err != nil {
				return rollback{err}
			}
		}
		return nil
	}, nil
}

// Txn returns a journaled transaction with all its transitions, or
// ErrNotFound.
func (s *Store) Txn(ctx context.Context, id string) (Txn, error) {
	var t Txn
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		t, err = readTxn(tx, id)
		return err
	})
	if err != nil {
		return Txn{}, fmt.Errorf("read transaction %s: %w", id, err)
	}
	return t, nil
}

// LastTxn returns the most recently started transaction (what a Nexo
// TransactionStatus without a message reference asks about).
func (s *Store) LastTxn(ctx context.Context) (Txn, bool, error) {
	var (
		t  Txn
		ok bool
	)
	pid, pending := s.ovl.last() // before the snapshot: unindexed.go
	err := s.view(func(tx *bolt.Tx) error {
		id := pid
		// The overlay's newest may have been applied and evicted since it
		// was read: then this snapshot's journal.order is exact
		// (TestLastTxnWhileEvicting).
		if !pending || txnHeaderValue(tx, id) == nil {
			k, v := tx.Bucket(bucketOrder).Cursor().Last()
			if k == nil {
				return nil
			}
			id = string(v)
		}
		var err error
		t, err = readTxn(tx, id)
		ok = err == nil
		return err
	})
	if err != nil {
		return Txn{}, false, fmt.Errorf("read last transaction: %w", err)
	}
	return t, ok, nil
}

// LastTxnForSale returns the most recently started transaction of one
// SaleID (a POI can serve several POS systems; each asks about its own).
// With dataOf given, only the transitions of those states carry their Data
// (see TxnByServiceID).
func (s *Store) LastTxnForSale(ctx context.Context, saleID string, dataOf ...string) (Txn, bool, error) {
	var (
		t  Txn
		ok bool
	)
	err := s.view(func(tx *bolt.Tx) error {
		id := lastForSale(tx, saleID) // indexed: no scan of the journal
		if id == nil {
			return nil
		}
		var err error
		t, err = readTxn(tx, string(id), dataOf...)
		ok = err == nil
		return err
	})
	if err != nil {
		return Txn{}, false, fmt.Errorf("read last transaction of SaleID %q: %w", saleID, err)
	}
	return t, ok, nil
}

// TxnStamp names one version of a journal entry: its id and its number of
// transitions. An entry changes only by gaining a transition (StartTxn
// writes the first one and the header, every append the next one and the
// header again) and leaves only whole, so two reads with the same stamp
// read the same entry.
type TxnStamp struct {
	ID string
	N  uint64
}

// LastTxnForSaleSince is LastTxnForSale for a caller that keeps what it read
// of a transaction at stamp have. When SaleID's last transaction is that one,
// unchanged, it answers with stamp == have and t empty, having read the
// header only; otherwise t is read as LastTxnForSale reads it, and stamp is
// t's. ok is false when SaleID has no transaction.
func (s *Store) LastTxnForSaleSince(ctx context.Context, saleID string, have TxnStamp, dataOf ...string) (t Txn, stamp TxnStamp, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		id := lastForSale(tx, saleID) // indexed: no scan of the journal
		if id == nil {
			return nil
		}
		var err error
		t, stamp, err = readTxnSince(tx, id, have, dataOf...)
		ok = err == nil
		return err
	})
	if err != nil {
		return Txn{}, TxnStamp{}, false, fmt.Errorf("read last transaction of SaleID %q: %w", saleID, err)
	}
	return t, stamp, ok, nil
}

// TxnByServiceIDSince is TxnByServiceID for a caller that keeps what it read
// of a transaction at stamp have, as LastTxnForSaleSince.
func (s *Store) TxnByServiceIDSince(ctx context.Context, saleID, serviceID string, have TxnStamp, dataOf ...string) (t Txn, stamp TxnStamp, ok bool, err error) {
	svcKey := serviceKey(saleID, serviceID)
	r, pending := s.ovl.serviceID(string(svcKey)) // before the snapshot: unindexed.go
	err = s.view(func(tx *bolt.Tx) error {
		id, found := svcLookup(tx, svcKey, r, pending)
		if !found {
			return nil
		}
		var err error
		t, stamp, err = readTxnSince(tx, id, have, dataOf...)
		if errors.Is(err, ErrNotFound) {
			return nil // journal entry pruned before the index: treat as unknown
		}
		ok = err == nil
		return err
	})
	if err != nil {
		return Txn{}, TxnStamp{}, false, fmt.Errorf("look up SaleID %q ServiceID %q: %w", saleID, serviceID, err)
	}
	return t, stamp, ok, nil
}

// readTxnSince reads transaction id as readTxn does, or only its header when
// have stamps it as it is: then t is empty and stamp is have.
func readTxnSince(tx *bolt.Tx, id []byte, have TxnStamp, dataOf ...string) (t Txn, stamp TxnStamp, err error) {
	var n uint64
	if hv := txnHeaderValue(tx, string(id)); hv != nil {
		if n, err = headerN(hv); err == nil && string(id) == have.ID && n == have.N {
			return Txn{}, have, nil
		}
	}
	if t, err = readTxn(tx, string(id), dataOf...); err != nil {
		return Txn{}, TxnStamp{}, err // a missing or damaged header among them
	}
	return t, TxnStamp{ID: t.ID, N: n}, nil
}

// TxnByServiceID returns the transaction a SaleID+ServiceID pair started, as
// long as the pair is still indexed (Options.ServiceIDRetention, and at
// least until the next prune). With dataOf given, only the transitions of
// those states carry their Data (the others are listed, Data nil): a caller
// that reads one state does not pay for copying the rest.
func (s *Store) TxnByServiceID(ctx context.Context, saleID, serviceID string, dataOf ...string) (Txn, bool, error) {
	var (
		t  Txn
		ok bool
	)
	svcKey := serviceKey(saleID, serviceID)
	r, pending := s.ovl.serviceID(string(svcKey)) // before the snapshot: unindexed.go
	err := s.view(func(tx *bolt.Tx) error {
		id, found := svcLookup(tx, svcKey, r, pending)
		if !found {
			return nil
		}
		var err error
		t, err = readTxn(tx, string(id), dataOf...)
		if errors.Is(err, ErrNotFound) {
			return nil // journal entry pruned before the index: treat as unknown
		}
		ok = err == nil
		return err
	})
	if err != nil {
		return Txn{}, false, fmt.Errorf("look up SaleID %q ServiceID %q: %w", saleID, serviceID, err)
	}
	return t, ok, nil
}

// svcLookup is the transaction a SaleID+ServiceID key names: the pending
// entry r if there is one, else journal.svc's.
func svcLookup(tx *bolt.Tx, key []byte, r svcRef, pending bool) ([]byte, bool) {
	if pending {
		return []byte(r.id), true
	}
	v := tx.Bucket(bucketSvc).Get(key)
	if len(v) < 8 {
		return nil, false
	}
	return v[8:], true
}

// UnfinishedTxns returns the transactions with no final transition, oldest
// first: what the agent must resume (status query or cancel advice) after a
// restart.
func (s *Store) UnfinishedTxns(ctx context.Context) ([]Txn, error) {
	var out []Txn
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUnfin).ForEach(func(k, _ []byte) error {
			t, err := readTxn(tx, string(k))
			if err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list unfinished transactions: %w", err)
	}
	// The index is keyed by id; order by start for a predictable resume.
	sortTxns(out)
	return out, nil
}

func sortTxns(ts []Txn) {
	for i := 1; i < len(ts); i++ {
		for j := i; j > 0 && ts[j].Started.Before(ts[j-1].Started); j-- {
			ts[j], ts[j-1] = ts[j-1], ts[j]
		}
	}
}

// PruneJournal deletes finished transactions last updated before
// now-JournalRetention and releases SaleID+ServiceID pairs older than
// now-ServiceIDRetention. Unfinished transactions, and their SaleID+ServiceID
// pairs, are kept whatever their age, and so are the transactions an
// unfinished one depends on (Options.DependsOn) and those an advice in the
// outbox or the dead letters names (Options.AdviceTxnID; without it, no
// finished transaction goes while any advice exists): a payment whose
// reversal is pending or given up must still tell TransactionStatus so. It
// returns the number of transactions deleted.
func (s *Store) PruneJournal(ctx context.Context, now time.Time) (int, error) {
	total := 0
	txCut := now.Add(-s.opts.JournalRetention)
	svcCut := timeNanos(now.Add(-s.opts.ServiceIDRetention))
	for {
		n, more := 0, false
		err := s.do(ctx, func(w *wtx) error {
			n, more = 0, false
			if err := s.applyIndexes(w); err != nil { // it walks journal.order and journal.svc
				return err
			}
			ord := w.tx.Bucket(bucketOrder)
			deps, err := s.dependedOn(w.tx)
			if err != nil {
				return err
			}
			advised, err := s.advisedTxns(w.tx)
			if err != nil {
				return err
			}
			var dels [][]byte
			c := ord.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if len(dels) == moveChunk {
					more = true
					break
				}
				hv := w.tx.Bucket(bucketTxn).Get(v)
				var h txnHeader
				if hv != nil && h.decode(hv) == nil {
					if !h.Started.Before(txCut) {
						break // order follows start time: the rest is younger
					}
					if !h.Final || !h.Updated.Before(txCut) || deps[string(v)] || advised == nil || advised[string(v)] {
						continue
					}
				}
				dels = append(dels, append([]byte(nil), k...))
			}
			for _, k := range dels {
				id := append([]byte(nil), ord.Get(k)...)
				if err := deleteTxn(w.tx, id); err != nil {
					return err
				}
				if err := ord.Delete(k); err != nil {
					return err
				}
				n++
			}
			// Release old ServiceIDs (the index is small: 48 h of requests),
			// except those of unfinished transactions: a POS asking about one
			// must get InProgress or its outcome, never NotFound ("it never
			// happened"), and recovery must still be able to finish it.
			svc := w.tx.Bucket(bucketSvc)
			unfin := w.tx.Bucket(bucketUnfin)
			var svcDels [][]byte
			sc := svc.Cursor()
			for k, v := sc.First(); k != nil; k, v = sc.Next() {
				if len(v) >= 8 && unfin.Get(v[8:]) != nil {
					continue
				}
				if len(v) < 8 || int64(binary.BigEndian.Uint64(v)) < svcCut {
					svcDels = append(svcDels, append([]byte(nil), k...))
				}
			}
			for _, k := range svcDels {
				if err := svc.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		total += n
		if err != nil {
			return total, fmt.Errorf("prune journal: %w", err)
		}
		if !more {
			return total, nil
		}
	}
}

func deleteTxn(tx *bolt.Tx, id []byte) error {
	if err := deleteSaleIndex(tx, id); err != nil {
		return err
	}
	if err := deleteAliases(tx, id); err != nil {
		return err
	}
	if err := tx.Bucket(bucketTxn).Delete(id); err != nil {
		return err
	}
	if err := tx.Bucket(bucketUnfin).Delete(id); err != nil {
		return err
	}
	prefix := append(append([]byte(nil), id...), 0)
	for _, name := range [][]byte{bucketTxn, bucketTrans} {
		if err := deletePrefix(tx.Bucket(name), prefix); err != nil {
			return err
		}
	}
	return nil
}

// deletePrefix deletes the keys of b that start with prefix.
func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// txnLayout: from schema 2 a transaction's transitions are written in
// journal.txn under id \x00 be(n), next to its header (key id), and its
// alias entries under id \x00 be(0) alias (alias.go), so that a journal
// step rewrites one leaf page (and its branch pages) for header and
// transition instead of one in each of two buckets: an appended step wrote
// 7.0 pages, now about the bucket's depth + 2 (5.2 at depth 3;
// TestJournalStepWritesOneLeafForHeaderAndTransition), and a payment's
// commits 16 pages each, now 12.6–13.2 (BenchmarkJournalLayout).
// A schema 1 file keeps its transitions in journal.trans and its alias
// entries in journal.alias.txn, where they are read; a transaction begun
// there and continued now has its first transitions there and the later
// ones here, and is read in that order.
//
// transitions is the bucket new transitions go to: journal.txn, or
// journal.trans with Options.schema1Layout.
func (s *Store) transitions(tx *bolt.Tx) *bolt.Bucket {
	if s.opts.schema1Layout {
		return tx.Bucket(bucketTrans)
	}
	return tx.Bucket(bucketTxn)
}

// transitionKeys walks transaction id's transitions in b, oldest first,
// skipping its alias entries.
func transitionKeys(b *bolt.Bucket, id string, fn func(k, v []byte) error) error {
	prefix := append([]byte(id), 0)
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(k) != len(prefix)+8 || keySeq(k[len(prefix):]) == 0 {
			continue // an alias entry (id \x00 be(0) alias)
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

// readTxn reads transaction id; with dataOf given, only the transitions of
// those states carry their Data.
func readTxn(tx *bolt.Tx, id string, dataOf ...string) (Txn, error) {
	hv := txnHeaderValue(tx, id)
	if hv == nil {
		return Txn{}, ErrNotFound
	}
	var h txnHeader
	if err := h.decode(hv); err != nil {
		return Txn{}, fmt.Errorf("%w: journal header %s: %v", ErrCorrupt, id, err)
	}
	t := Txn{TxnRef: TxnRef{ID: id, SaleID: h.SaleID, ServiceID: h.ServiceID},
		Started: h.Started, Updated: h.Updated, State: h.State, Final: h.Final,
		Transitions: make([]Transition, 0, h.N)}
	// The values are read in place (bbolt's memory, valid until the
	// transaction ends) and copied out in one allocation for the data and
	// one for the states, whatever the number of transitions.
	type raw struct {
		state, data []byte
		t           Transition
		legacy      bool // t is decoded already
	}
	var (
		raws       = make([]raw, 0, h.N)
		nData, nSt int
	)
	each := func(k, v []byte) error {
		if len(v) > 0 && v[0] == '{' { // version 1: JSON, decoded (and copied) as it is
			tr, err := decodeTransition(v)
			if err != nil {
				return fmt.Errorf("%w: journal transition %x: %v", ErrCorrupt, k, err)
			}
			raws = append(raws, raw{t: tr, legacy: true})
			return nil
		}
		at, state, final, data, err := parseTransition(v)
		if err != nil {
			return fmt.Errorf("%w: journal transition %x: %v", ErrCorrupt, k, err)
		}
		if len(dataOf) > 0 && !slices.Contains(dataOf, string(state)) { // no allocation: the conversion is only compared
			data = nil
		}
		raws = append(raws, raw{state: state, data: data, t: Transition{At: at, Final: final}})
		nData += len(data)
		nSt += len(state)
		return nil
	}
	// Schema 1's transitions first (txnLayout): they are the older ones.
	for _, name := range [][]byte{bucketTrans, bucketTxn} {
		if err := transitionKeys(tx.Bucket(name), id, each); err != nil {
			return Txn{}, err
		}
	}
	data := make([]byte, 0, nData)
	states := make([]byte, 0, nSt)
	for _, r := range raws {
		states = append(states, r.state...)
	}
	all := string(states)
	at := 0
	for _, r := range raws {
		tr := r.t
		if r.legacy && len(dataOf) > 0 && !slices.Contains(dataOf, tr.State) {
			tr.Data = nil
		}
		if !r.legacy {
			tr.State = all[at : at+len(r.state)]
			at += len(r.state)
			if len(r.data) > 0 {
				n := len(data)
				data = append(data, r.data...)
				tr.Data = data[n:len(data):len(data)]
			}
		}
		t.Transitions = append(t.Transitions, tr)
	}
	return t, nil
}

// MaxRefLen bounds each field of a TxnRef, in bytes: far above the ids the
// agent journals (Nexo's are at most 64), far below bbolt's key limit, so
// that no key built from them can fail a write after the op's first puts
// (an op's earlier writes in a group commit are not undone).
const MaxRefLen = 1024

func checkRef(ref TxnRef) error {
	if ref.ID == "" {
		return errors.New("empty transaction id")
	}
	for _, f := range []string{ref.ID, ref.SaleID, ref.ServiceID} {
		if strings.IndexByte(f, 0) >= 0 {
			return errors.New("NUL byte in transaction reference")
		}
		if len(f) > MaxRefLen {
			return fmt.Errorf("transaction reference field of %d bytes (at most %d)", len(f), MaxRefLen)
		}
	}
	return nil
}

func serviceKey(saleID, serviceID string) []byte {
	return []byte(saleID + "\x00" + serviceID)
}

func transKey(id string, n uint64) []byte {
	return append(append([]byte(id), 0), seqKey(n)...)
}

type put struct {
	b    *bolt.Bucket
	k, v []byte
}

func putAll(ps ...put) error {
	for _, p := range ps {
		if p.v == nil {
			continue
		}
		if err := p.b.Put(p.k, p.v); err != nil {
			return err
		}
	}
	return nil
}

// AppendTxnEvents appends transitions to a journaled transaction and events to
// the outbox in one bbolt transaction: after a crash either all of them are in
// the file or none is. It is how an outcome and the work it owes PPaaS (the
// transaction result, a reversal advice) become durable together. Only
// critical kinds are accepted (they are never refused for room), so nothing
// can fail once the transaction is known to exist.
func (s *Store) AppendTxnEvents(ctx context.Context, id string, trs []Transition, evs ...Event) error {
	return s.appendTxnEvents(ctx, id, false, trs, evs)
}

// FinishTxnEvents is AppendTxnEvents for a transaction that must not be final
// yet: it fails with ErrTxnFinal, writing nothing, when it is. The check and
// the write are one bbolt transaction, so the caller needs no read first.
func (s *Store) FinishTxnEvents(ctx context.Context, id string, trs []Transition, evs ...Event) error {
	return s.appendTxnEvents(ctx, id, true, trs, evs)
}

func (s *Store) appendTxnEvents(ctx context.Context, id string, unfinished bool, trs []Transition, evs []Event) error {
	if len(trs) == 0 {
		return fmt.Errorf("journal transaction %s: no transition", id)
	}
	ops := make([]op, 0, len(trs)+len(evs))
	for i, t := range trs {
		fn, err := s.appendTxnOp(id, t, unfinished && i == 0)
		if err != nil {
			return err
		}
		ops = append(ops, fn)
	}
	for _, ev := range evs {
		_, fn, err := s.appendOp(ev)
		if err != nil {
			return fmt.Errorf("journal transaction %s: %w", id, err)
		}
		if !ev.Kind.Critical() {
			fn = bestEffort(fn) // issue 14: store/besteffort.go
		}
		ops = append(ops, fn)
	}
	err := s.do(ctx, func(w *wtx) error {
		// The first op checks that the transaction exists before anything is
		// written; the rest cannot fail short of a bbolt error, which fails
		// the whole commit.
		for i, fn := range ops {
			if err := fn(w); err != nil {
				if i == 0 {
					return err // nothing written yet
				}
				return rollback{err} // half written: the whole commit must go
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("journal transaction %s with %d events: %w", id, len(evs), err)
	}
	return nil
}

// ReadTxns is the number of read transactions the Store has started since it
// opened (bbolt's TxN): what tests count as the look-ups an operation costs.
func (s *Store) ReadTxns() int64 {
	n := int64(s.db.Stats().TxN)
	if s.fill != nil {
		n -= s.fill.views.Load() // the writer's own reads of the high-water mark (fill.go)
	}
	return n
}

// Transition value layout (version 2; files written before it hold JSON, a
// value starting with '{', still read), integers varint-encoded:
//
//	version(1) at len(state) state final(1) len(data) data
//
// Binary so that reading a transaction does not scan its data (the Nexo
// request and response it carries) and writing one does not re-encode it.
const transitionVersion = 2

func encodeTransition(t Transition) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+2*binary.MaxVarintLen32+1+len(t.State)+len(t.Data))
	b = append(b, transitionVersion)
	b = binary.AppendVarint(b, timeNanos(t.At))
	b = binary.AppendUvarint(b, uint64(len(t.State)))
	b = append(b, t.State...)
	final := byte(0)
	if t.Final {
		final = 1
	}
	b = append(b, final)
	b = binary.AppendUvarint(b, uint64(len(t.Data)))
	return append(b, t.Data...)
}

// decodeTransition parses a stored transition in either layout. The result
// does not alias v (bbolt memory is only valid inside its transaction).
func decodeTransition(v []byte) (Transition, error) {
	var t Transition
	if len(v) > 0 && v[0] == '{' { // version 1: JSON
		if err := json.Unmarshal(v, &t); err != nil {
			return Transition{}, err
		}
		return t, nil
	}
	at, state, final, data, err := parseTransition(v)
	if err != nil {
		return Transition{}, err
	}
	t.At, t.State, t.Final = at, string(state), final
	if len(data) > 0 {
		t.Data = append(json.RawMessage(nil), data...)
	}
	return t, nil
}

// parseTransition reads a version 2 transition in place: state and data
// alias v.
func parseTransition(v []byte) (at time.Time, state []byte, final bool, data []byte, err error) {
	d := decoder{b: v}
	if ver := d.byte(); d.err == nil && ver != transitionVersion {
		return time.Time{}, nil, false, nil, fmt.Errorf("%w: transition version %d", ErrBadRecord, ver)
	}
	at = nanosTime(d.varint())
	state = d.bytes(d.length())
	switch d.byte() {
	case 0:
	case 1:
		final = true
	default:
		d.fail("final flag")
	}
	data = d.bytes(d.length())
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return time.Time{}, nil, false, nil, d.err
	}
	return at, state, final, data, nil
}

// txnHeaderValue is transaction id's stored header, nil if there is none. An
// id with a NUL byte names none (checkRef refuses them): in journal.txn such a
// key is one of a transaction's transitions (id \x00 be(n)), never a header,
// and a peer's id shaped like one (an MQTT event's) must read as unknown, not
// as a damaged header.
func txnHeaderValue(tx *bolt.Tx, id string) []byte {
	if strings.IndexByte(id, 0) >= 0 {
		return nil
	}
	return tx.Bucket(bucketTxn).Get([]byte(id))
}
