package store

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Index writes lag the durable step (issue 17). journal.order, journal.svc
// and journal.alias are derived from journal.txn, yet a payment's start
// wrote two pages of each of the first two and its finish two of the third
// (random keys: a leaf and a branch each). A journal step now writes only
// its header and transition, and notes the index work it owes in
// journal.unindexed (id → pendingEntry), a bucket small enough to stay
// inline in the tree of buckets, whose page every commit rewrites anyway:
// the note costs no page. The notes are applied to the indexes in one
// commit per batch (indexBatch entries, or Options.indexDelay after the
// first), on the writer goroutine once no write is queued, so the indexes'
// leaves and branches are written once per batch and not on a payment's
// commits. Open applies what a crash left pending; Close applies too.
//
// The order counter moved with them: NextSequence materialises a bucket's
// root node, so counting on journal.order wrote its root page at every
// start; journal.unindexed's sequence counts instead (inline: no page).
//
// Readers stay exact through an overlay, in memory, of the committed
// pending entries: ServiceID, alias and the last order. The overlay is
// checked before a reader opens its bbolt snapshot, and an entry leaves it
// only once the commit that applied it is done, so a transaction is always
// in one or the other (TestReadersNeverMissAPendingIndex). The writer side
// (the ServiceID check of StartTxn) also sees what earlier ops of the same
// group commit noted (wtx.pend), and a failed commit publishes nothing.
// Bulk readers that walk an index (prune, eviction, periods) apply first.
var bucketUnindexed = []byte("journal.unindexed")

const (
	// indexBatch pending entries make the writer apply them. A payment's
	// entry is 100 bytes with bbolt's element header (UUID id, its
	// ServiceID time, the PPaaS alias), so eight keep the bucket inline
	// (bbolt inlines up to a quarter page, 1,024 bytes with its headers;
	// TestPendingIndexesStayInline); indexBatchBytes applies sooner when
	// longer ids or aliases near that limit.
	indexBatch      = 8
	indexBatchBytes = 896
	// indexMaxPending bounds the pending set if applying keeps failing, or
	// the writer never goes idle: a commit that finds this many applies
	// them before its own writes (and fails if that fails).
	indexMaxPending = 256
	// indexMaxPendingBytes bounds their bytes the same way: one
	// transaction given alias after alias is one entry, growing.
	indexMaxPendingBytes = 32 << 10
	// defaultIndexDelay is how long a pending entry waits for its batch.
	defaultIndexDelay = 5 * time.Second
)

// pendingEntry is the index work owed for one transaction. One entry at
// most names an alias: its owner's (putAlias).
type pendingEntry struct {
	order   bool  // journal.order (and journal.svc when svc) not yet written
	svc     bool  // the transaction reserves its ServiceID
	svcAt   int64 // the reservation's time, nanoseconds
	aliases []string
}

// Pending entry layout: version(1) flags(1: 1 order, 2 svc) svcAt(varint)
// then each alias as len(uvarint) alias.
const pendingVersion = 1

func (e pendingEntry) encode() []byte {
	n := 2 + binary.MaxVarintLen64
	for _, a := range e.aliases {
		n += binary.MaxVarintLen16 + len(a)
	}
	b := make([]byte, 0, n)
	var flags byte
	if e.order {
		flags |= 1
	}
	if e.svc {
		flags |= 2
	}
	b = append(b, pendingVersion, flags)
	b = binary.AppendVarint(b, e.svcAt)
	for _, a := range e.aliases {
		b = binary.AppendUvarint(b, uint64(len(a)))
		b = append(b, a...)
	}
	return b
}

func decodePending(v []byte) (pendingEntry, error) {
	d := decoder{b: v}
	if ver := d.byte(); d.err == nil && ver != pendingVersion {
		return pendingEntry{}, fmt.Errorf("%w: pending index entry version %d", ErrBadRecord, ver)
	}
	flags := d.byte()
	if flags&^3 != 0 {
		d.fail("pending index flags")
	}
	e := pendingEntry{order: flags&1 != 0, svc: flags&2 != 0, svcAt: d.varint()}
	for d.err == nil && len(d.b) > 0 {
		e.aliases = append(e.aliases, string(d.bytes(d.length())))
	}
	if d.err != nil {
		return pendingEntry{}, d.err
	}
	return e, nil
}

type svcRef struct {
	at int64 // nanoseconds
	id string
}

// pendDelta is what one commit's ops noted: published to the overlay if it
// commits, dropped if not. The holder of wmu owns it.
type pendDelta struct {
	applied   bool  // the entries pending before this commit were applied in it
	n, bytes  int64 // pending entries, and their bytes, once it commits
	svc       map[string]svcRef
	alias     map[string]string
	lastOrder uint64
	lastID    string
}

// overlay mirrors the committed pending entries for readers.
type overlay struct {
	mu        sync.RWMutex
	svc       map[string]svcRef
	alias     map[string]string
	lastOrder uint64
	lastID    string
}

func (o *overlay) publish(d *pendDelta) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.svc == nil || d.applied {
		o.svc, o.alias, o.lastOrder, o.lastID = map[string]svcRef{}, map[string]string{}, 0, ""
	}
	for k, v := range d.svc {
		o.svc[k] = v
	}
	for k, v := range d.alias {
		o.alias[k] = v
	}
	if d.lastOrder > o.lastOrder {
		o.lastOrder, o.lastID = d.lastOrder, d.lastID
	}
}

func (o *overlay) serviceID(key string) (svcRef, bool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	r, ok := o.svc[key]
	return r, ok
}

func (o *overlay) aliasOf(alias string) (string, bool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	id, ok := o.alias[alias]
	return id, ok
}

func (o *overlay) last() (string, bool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.lastID, o.lastID != ""
}

// pend is the commit's delta, created on first use.
func (s *Store) pend(w *wtx) *pendDelta {
	if w.pend == nil {
		w.pend = &pendDelta{n: s.pendN.Load(), bytes: s.pendBytes.Load(),
			svc: map[string]svcRef{}, alias: map[string]string{}}
	}
	return w.pend
}

// svcOwner is the reservation of a SaleID+ServiceID key as the writer sees
// it: noted earlier in this commit, pending, or indexed.
func (s *Store) svcOwner(w *wtx, key []byte) (svcRef, bool) {
	if w.pend != nil {
		if r, ok := w.pend.svc[string(key)]; ok {
			return r, true
		}
	}
	if w.pend == nil || !w.pend.applied {
		if r, ok := s.ovl.serviceID(string(key)); ok {
			return r, true
		}
	}
	if v := w.tx.Bucket(bucketSvc).Get(key); len(v) >= 8 {
		return svcRef{at: int64(binary.BigEndian.Uint64(v)), id: string(v[8:])}, true
	}
	return svcRef{}, false
}

// aliasOwner is the transaction alias names as the writer sees it.
func (s *Store) aliasOwner(w *wtx, alias string) (string, bool) {
	if w.pend != nil {
		if id, ok := w.pend.alias[alias]; ok {
			return id, true
		}
	}
	if w.pend == nil || !w.pend.applied {
		if id, ok := s.ovl.aliasOf(alias); ok {
			return id, true
		}
	}
	if id := w.tx.Bucket(bucketAlias).Get([]byte(alias)); id != nil {
		return string(id), true
	}
	return "", false
}

// notePending merges index work for transaction id into its pending entry.
// Its caller has written the step already: an error rolls the commit back.
func (s *Store) notePending(w *wtx, id []byte, add func(e *pendingEntry)) error {
	b := w.tx.Bucket(bucketUnindexed)
	old := b.Get(id)
	var e pendingEntry
	if old != nil {
		// A damaged entry is rebuilt from the header, with the aliases id
		// still owns, and the step goes on
		// (TestDamagedPendingEntryAppendIsAllOrNothing).
		var err error
		if e, err = decodePending(old); err != nil { // the header only then: this is a payment's path
			var ok bool
			e, _, ok, err = readPending(w.tx, s.log, id, old, w.now, func(alias string) bool {
				owner, ok := s.aliasOwner(w, alias)
				return ok && owner == string(id)
			})
			if !ok {
				return rollback{&CorruptError{Path: s.path, Err: fmt.Errorf("pending index entry %s: %w", id, err)}}
			}
		}
	}
	add(&e)
	v := e.encode()
	if err := b.Put(id, v); err != nil {
		return rollback{err}
	}
	d := s.pend(w)
	if old == nil {
		d.n++
		d.bytes += int64(len(id) + len(v) + 16) // 16: bbolt's element header
	} else {
		d.bytes += int64(len(v) - len(old))
	}
	return nil
}

// applyIndexes writes every pending entry to the indexes and empties
// journal.unindexed, in w's transaction. A failure rolls back the whole
// commit: nothing of it may half-apply.
func (s *Store) applyIndexes(w *wtx) error {
	d := s.pend(w)
	if err := applyPendingTx(w.tx, s.log, w.now); err != nil {
		return rollback{fmt.Errorf("apply pending journal indexes: %w", err)}
	}
	*d = pendDelta{applied: true, svc: map[string]svcRef{}, alias: map[string]string{}}
	return nil
}

// applyPendingTx applies journal.unindexed in tx, oldest transaction first,
// at time now (a rebuilt entry's reservation; rebuildPending). An alias is
// named by one entry at most, its owner's (putAlias), so the order does not
// matter for aliases.
func applyPendingTx(tx *bolt.Tx, log *slog.Logger, now time.Time) error {
	pb := tx.Bucket(bucketUnindexed)
	if pb == nil {
		return nil
	}
	type item struct {
		id []byte
		h  txnHeader
		e  pendingEntry
		ok bool // the transaction is still journaled
		// rebuilt from the header: its entry did not decode. It writes only
		// where no other transaction is indexed (nor a newer one's
		// ServiceID): what it had given away since is not known.
		rebuilt bool
	}
	var items []item
	// One damaged entry must not stop every later apply, and with it, at
	// indexMaxPending, every write. An entry whose header decodes is rebuilt
	// from it (the ServiceID stays reserved, the transaction in
	// journal.order: TestDamagedPendingEntryKeepsReservation); else it is
	// dropped: the transaction is gone or unreadable.
	err := pb.ForEach(func(k, v []byte) error {
		it := item{id: bytes.Clone(k)}
		var err error
		it.e, it.h, it.ok, err = readPending(tx, log, it.id, v, now, func(string) bool { return true })
		it.rebuilt = err != nil && it.ok
		if err != nil && !it.ok {
			log.Error("damaged pending journal index entry dropped: no readable header", "txn", string(k), "err", err)
		}
		items = append(items, it)
		return nil
	})
	if err != nil || len(items) == 0 {
		return err
	}
	// In start order, so a ServiceID released and used again while both
	// were pending ends with the newer transaction, as if written at once.
	slices.SortFunc(items, func(a, b item) int { return cmp.Compare(a.h.Order, b.h.Order) })
	ord, svc, idx := orderBucket(tx), tx.Bucket(bucketSvc), tx.Bucket(bucketAlias)
	for _, it := range items {
		if err := pb.Delete(it.id); err != nil {
			return err
		}
		if !it.ok {
			continue // gone or damaged (a recovered file): nothing to index
		}
		if it.e.order && (!it.rebuilt || ord.Get(seqKey(it.h.Order)) == nil) {
			if err := ord.Put(seqKey(it.h.Order), it.id); err != nil {
				return err
			}
			if it.e.svc && it.h.ServiceID != "" && (!it.rebuilt || !newerReservation(tx, svc, it.h)) {
				if err := svc.Put(serviceKey(it.h.SaleID, it.h.ServiceID), append(seqKey(uint64(it.e.svcAt)), it.id...)); err != nil {
					return err
				}
			}
		}
		for _, a := range it.e.aliases {
			if v := idx.Get([]byte(a)); bytes.Equal(v, it.id) || (it.rebuilt && v != nil) {
				continue
			}
			if err := idx.Put([]byte(a), it.id); err != nil {
				return err
			}
		}
	}
	if ord.Sequence() < pb.Sequence() {
		return ord.SetSequence(pb.Sequence()) // for recover.go and anyone reading it
	}
	return nil
}

// readPending decodes id's pending entry v, and reads id's header (ok: it
// is journaled and readable). An entry that does not decode is rebuilt from
// a readable header (rebuildPending, keep) and logged; err is the decoding's
// error either way.
func readPending(tx *bolt.Tx, log *slog.Logger, id, v []byte, now time.Time, keep func(alias string) bool) (e pendingEntry, h txnHeader, ok bool, err error) {
	hv := txnHeaderValue(tx, string(id))
	ok = hv != nil && h.decode(hv) == nil
	if e, err = decodePending(v); err == nil || !ok {
		return e, h, ok, err
	}
	log.Error("damaged pending journal index entry rebuilt from its header", "txn", string(id), "err", err)
	return rebuildPending(tx, id, h, now, keep), h, ok, err
}

// rebuildPending is the index work transaction id may still owe, from its
// header h (the entry that said it is damaged): journal.order and its
// ServiceID unless its order is indexed, and the aliases beside its header
// that keep says it still owns. The reservation's time, which StartTxn took
// from its commit and the entry lost, is the rebuild's (now; the header's
// last step if that is later): never earlier than the original, so a retry
// of the payment is refused at least as long — the header's own times are
// the caller's and may be older than the commit
// (TestRebuiltReservationIsNeverShorter).
func rebuildPending(tx *bolt.Tx, id []byte, h txnHeader, now time.Time, keep func(alias string) bool) pendingEntry {
	var e pendingEntry
	if !bytes.Equal(tx.Bucket(bucketOrder).Get(seqKey(h.Order)), id) {
		e.order, e.svc, e.svcAt = true, h.ServiceID != "", max(timeNanos(h.Updated), timeNanos(now))
	}
	prefix := aliasOfKey(id, "")
	c := tx.Bucket(bucketTxn).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if a := string(k[len(prefix):]); keep(a) {
			e.aliases = append(e.aliases, a)
		}
	}
	return e
}

// newerReservation reports that h's SaleID+ServiceID is indexed for a
// transaction started after h's (a rebuilt entry must not take it back).
func newerReservation(tx *bolt.Tx, svc *bolt.Bucket, h txnHeader) bool {
	v := svc.Get(serviceKey(h.SaleID, h.ServiceID))
	if len(v) < 8 {
		return false
	}
	var other txnHeader
	ov := txnHeaderValue(tx, string(v[8:]))
	return ov != nil && other.decode(ov) == nil && other.Order > h.Order
}

// nextOrder assigns a transaction's start order (see bucketUnindexed).
func nextOrder(tx *bolt.Tx) (uint64, error) {
	return tx.Bucket(bucketUnindexed).NextSequence()
}

// openIndexes applies what a crash left pending and keeps the order counter
// at or past journal.order's (a file from before it, or recovered).
func (s *Store) openIndexes() error {
	err := guard(func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			pb := tx.Bucket(bucketUnindexed)
			if ord := tx.Bucket(bucketOrder); pb.Sequence() < ord.Sequence() {
				if err := pb.SetSequence(ord.Sequence()); err != nil {
					return err
				}
			}
			if k, _ := pb.Cursor().First(); k == nil {
				return nil
			}
			return applyPendingTx(tx, s.log, s.opts.Now())
		})
	})
	if err != nil {
		return fmt.Errorf("open store %s: apply pending journal indexes: %w", s.path, err)
	}
	s.ovl.publish(&pendDelta{applied: true})
	return nil
}

// indexOverdue reports that the pending set reached its bound: a commit
// applies it before its own writes.
func (s *Store) indexOverdue() bool {
	return s.pendN.Load() >= indexMaxPending || s.pendBytes.Load() >= indexMaxPendingBytes
}

// indexDue reports that the pending entries should be applied now.
func (s *Store) indexDue() bool {
	if s.opts.manualIndexes || time.Now().UnixNano() < s.indexRetry.Load() {
		return false
	}
	n := s.pendN.Load()
	return n >= indexBatch || s.pendBytes.Load() >= indexBatchBytes || (n > 0 && s.indexIdle.Load())
}

// commitIndexes applies the pending entries in a commit of their own and
// returns why it could not (logged). The caller holds wmu.
func (s *Store) commitIndexes() error {
	if s.pendN.Load() == 0 {
		return nil
	}
	d0 := s.DiskStats()
	var err error
	if !s.commit([]*writeReq{{fn: s.applyIndexes, internal: true, after: func(e error) { err = e }}}) {
		// Not again at every kick: after indexDelay, or before a commit
		// once indexMaxPending pend. They are durable meanwhile.
		s.log.Error("pending journal indexes not applied", "pending", s.pendN.Load(), "retry_in", s.opts.indexDelay, "err", err)
		s.indexRetry.Store(time.Now().Add(s.opts.indexDelay).UnixNano())
	}
	d := s.DiskStats().Sub(d0)
	s.indexDiskMu.Lock()
	s.indexDisk = s.indexDisk.add(d)
	s.indexDiskMu.Unlock()
	return err
}

// indexDiskStats are the writes of the writer's index commits so far, part
// of DiskStats: for benchmarks to tell them from a payment's.
func (s *Store) indexDiskStats() DiskStats {
	s.indexDiskMu.Lock()
	defer s.indexDiskMu.Unlock()
	return s.indexDisk
}

// indexesCommitted publishes a commit's delta and arms the idle apply when
// entries start pending. The caller holds wmu.
func (s *Store) indexesCommitted(d *pendDelta) {
	before := s.pendN.Load()
	s.ovl.publish(d)
	s.pendN.Store(d.n)
	s.pendBytes.Store(d.bytes)
	if d.applied {
		s.indexIdle.Store(false)
	}
	if d.n > 0 && (before == 0 || d.applied) {
		s.indexIdle.Store(false) // a timer that fired for an earlier batch
		if s.indexTimer == nil {
			s.indexTimer = time.AfterFunc(s.opts.indexDelay, func() {
				s.indexIdle.Store(true)
				s.kickWriter()
			})
		} else {
			s.indexTimer.Reset(s.opts.indexDelay)
		}
	}
}

// applyIndexesNow applies the pending index entries now, for a caller about
// to walk an index (the writer applies them on its own).
func (s *Store) applyIndexesNow(ctx context.Context) error {
	if s.pendN.Load() == 0 {
		return nil
	}
	if err := s.do(ctx, s.applyIndexes); err != nil {
		return fmt.Errorf("apply pending journal indexes: %w", err)
	}
	return nil
}
