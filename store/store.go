// Package store is the agent's durable state on the device: a bbolt file
// holding the offline outbox (events waiting to reach PPaaS, delivered in
// order, at least once), the dead-letter bucket, the transaction journal
// (what Nexo TransactionStatus and restart recovery read) and the set of
// inbound event ids already processed.
//
// One commit runs at a time, taking every write waiting at that moment into
// one bbolt transaction (group commit). A caller that finds no commit running
// commits on its own goroutine; writes submitted during a commit are
// committed together by the writer goroutine right after it. A write call
// returns only after its transaction is on disk, so whatever a caller was
// told is stored survives kill -9 and power loss.
//
// bbolt's free-page list is never written. Written on every commit (bbolt's
// default), it cost each commit the whole list once a large outbox backlog
// had drained — about 1.1 MiB per payment after 1,000,000 records, payments
// 2.4× slower until the file was compacted (BenchmarkBacklogCliff) — and a
// page or two even on a fresh store, more pages for each fdatasync on a
// payment's path (TestPaymentWritesNoFreeList). bbolt rebuilds the list on
// open by walking the pages the tree reaches. The list is derived from the
// committed tree, so leaving it out changes nothing about what survives a
// crash, and files with and without it open under either setting
// (TestFreelistModesOpenEachOthersFiles). bbolt's walk runs in a goroutine
// where a damaged page would crash the process, so Open walks the same pages
// first through bounds checks (pagecheck.go): damage is ErrCorrupt.
//
// The journal's indexes (by start order, ServiceID and alias) are written
// after the step that owes them, in batches off the payment's commits, and
// read exactly meanwhile through an overlay (unindexed.go).
package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Errors callers branch on.
var (
	// ErrLocked: another process holds the file (usually a running agent).
	ErrLocked = errors.New("data dir in use by another agent process?")
	// ErrCorrupt: the file cannot be read safely. Recover moves it aside and
	// salvages what it can.
	ErrCorrupt = errors.New("store file is corrupted")
	// ErrSchemaTooNew: the file was written by a newer agent.
	ErrSchemaTooNew = errors.New("store schema is newer than this agent")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("store closed")
	// ErrOutboxFull: a non-critical record was refused because the outbox
	// reached its count or byte bound.
	ErrOutboxFull = errors.New("outbox full")
	// ErrNotFound: no such record, transaction or event.
	ErrNotFound = errors.New("not found")
	// ErrTooLarge: a payload exceeds Options.MaxRecordBytes.
	ErrTooLarge = errors.New("record too large")
)

// CorruptError carries the detail behind ErrCorrupt.
type CorruptError struct {
	Path string
	Err  error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s: %v: %v (refusing to start; run `agent queue status --recover` to move it aside and keep what can be read)", e.Path, ErrCorrupt, e.Err)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

func (e *CorruptError) Unwrap() error { return e.Err }

// Options tune a Store. The zero value is usable: every zero field takes the
// default named in its comment.
type Options struct {
	// LockTimeout bounds the wait for the file lock. Default 2 s.
	LockTimeout time.Duration
	// MaxCount and MaxBytes bound the outbox. Past either bound, non-critical
	// kinds are refused with ErrOutboxFull; transaction results and advices
	// are always accepted. Defaults 100,000 records and 64 MiB.
	MaxCount int64
	MaxBytes int64
	// MaxRecordBytes bounds one payload. Default 1 MiB.
	MaxRecordBytes int
	// DefaultTTL is the expiry of records appended without a TTL. Default
	// 7 days; negative means never expire.
	DefaultTTL time.Duration
	// ServiceIDRetention is how long a SaleID+ServiceID pair stays reserved
	// (Nexo: unique for 48 h). Default 48 h.
	ServiceIDRetention time.Duration
	// JournalRetention is how long finished transactions stay in the journal.
	// Default 30 days.
	JournalRetention time.Duration
	// EventRetention is how long inbound event ids are remembered. Default 48 h.
	EventRetention time.Duration
	// DeferredFlush bounds how long a deferred write (AppendTxnDeferred,
	// SeenEventDeferred) waits for a durable write to ride with. Default 200 ms.
	DeferredFlush time.Duration
	// PruneInterval is how often the Store prunes journal and event ids in
	// the background. Default 1 h; negative disables background pruning.
	PruneInterval time.Duration
	// Verify runs a full consistency check (bbolt Tx.Check) on open. It reads
	// the whole file, so it costs time proportional to its size.
	Verify bool
	// NoSync skips fsync. Only for tests and benchmarks: it gives up power
	// loss durability (kill -9 is still safe, the page cache survives).
	NoSync bool
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger; nil logs nothing (as everywhere in termagent: the binaries build
	// the logger and pass it down).
	Logger *slog.Logger

	// JournalMaxBytes bounds the journal on disk (issue 11): past it the
	// oldest finished transactions are evicted, never an unfinished one nor
	// one an advice names. Default 64 MiB; negative means unbounded.
	JournalMaxBytes int64
	// AdviceTxnID names the transaction an advice record's payload is about,
	// so the journal budget keeps it. Without it, no transaction is evicted
	// while any advice is queued.
	AdviceTxnID func(payload []byte) string
	// DependsOn names the transaction an unfinished transaction t still
	// needs (a refund's original payment, which holds its reservation), ""
	// for none. Neither the journal budget nor PruneJournal deletes a
	// transaction an unfinished one depends on.
	DependsOn func(t Txn) string

	// syncFreelist writes bbolt's free-page list on every commit (bbolt's
	// default), for benchmarks to compare. The Store never writes it
	// otherwise: even a fresh store's list is a page or two every commit
	// (about 1 in 16 of the pages a payment writes, each one more page for
	// fdatasync to flush), and bbolt rebuilds it on open from the pages the
	// tree reaches, as etcd has it do.
	syncFreelist bool
	// schema1Layout writes new transitions and alias entries where schema
	// 1 did (journal.trans, journal.alias.txn), for BenchmarkJournalLayout
	// to compare and for tests of files with both layouts. Reads do not
	// depend on it.
	schema1Layout bool
	// noFill turns zero-filling ahead (fill.go) off, for
	// BenchmarkZeroFillAhead to compare.
	noFill bool
	// noCompactRoot leaves bbolt's tree of buckets as it splits
	// (rootpage.go), for BenchmarkRootCompaction to compare.
	noCompactRoot bool
	// indexDelay bounds how long a pending index entry waits for its batch
	// (unindexed.go). Default defaultIndexDelay.
	indexDelay time.Duration
	// manualIndexes stops the writer applying pending index entries on
	// its own (Close, the bound and applyIndexesNow still do), for tests
	// that count the pages of each commit.
	manualIndexes bool
	// indexWithStep applies the pending index entries in the commit that
	// noted them, as before unindexed.go, for BenchmarkIndexAfterStep to
	// compare.
	indexWithStep bool
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.LockTimeout, 2*time.Second)
	def(&o.DefaultTTL, 7*24*time.Hour)
	def(&o.ServiceIDRetention, 48*time.Hour)
	def(&o.JournalRetention, 30*24*time.Hour)
	def(&o.EventRetention, 48*time.Hour)
	def(&o.PruneInterval, time.Hour)
	def(&o.DeferredFlush, 200*time.Millisecond)
	def(&o.indexDelay, defaultIndexDelay)
	if o.MaxCount == 0 {
		o.MaxCount = 100_000
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = 64 << 20
	}
	if o.MaxRecordBytes == 0 {
		o.MaxRecordBytes = 1 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.JournalMaxBytes == 0 {
		o.JournalMaxBytes = 64 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Bucket names. Stored on disk: never rename without a migration.
var (
	bucketMeta    = []byte("meta")
	bucketOutbox  = []byte("outbox")
	bucketDead    = []byte("dead")
	bucketTxn     = []byte("journal.txn")   // id → txnHeader; from schema 2 also its transitions (journal.go)
	bucketTrans   = []byte("journal.trans") // schema 1: id \x00 be(n) → Transition; read, never written
	bucketOrder   = []byte("journal.order") // be(order) → id
	bucketSvc     = []byte("journal.svc")   // saleID \x00 serviceID → be(started) id
	bucketUnfin   = []byte("journal.unfinished")
	bucketSeen    = []byte("seen")      // event id → be(seen at)
	bucketSeenAge = []byte("seen.time") // be(seen at) event id → nil; files before issue 17 (PruneEvents)

	keySchema   = []byte("schema")
	keyCounters = []byte("counters")
)

func allBuckets() [][]byte {
	return [][]byte{bucketMeta, bucketOutbox, bucketDead, bucketTxn, bucketTrans,
		bucketOrder, bucketSvc, bucketUnfin, bucketSeen, bucketSeenAge, bucketUnindexed}
}

// schemaVersion is the layout this code reads and writes. Version 2 writes
// a transaction's transitions and alias entries in journal.txn beside its
// header; a version 1 file's entries stay where they are and are read there.
// Version 2 is a version so that an older agent, which would read such a
// transaction without its transitions, refuses the file (ErrSchemaTooNew).
// Version 3 writes the journal's indexes after the step (unindexed.go): an
// older agent would not see the pending entries, nor keep the order counter.
const schemaVersion = 3

// migration upgrades a file from version from to from+1, inside the open
// transaction, so a crash mid-migration leaves the old version intact.
type migration struct {
	from  int
	name  string
	apply func(tx *bolt.Tx) error
}

// migrations lists the upgrades, oldest first; the next layout change
// appends here.
func migrations() []migration {
	return []migration{
		// Nothing moves: version 1 entries are read where they are
		// (journal.trans, journal.alias.txn) and new ones are written in
		// journal.txn.
		{from: 1, name: "journal transitions beside their header", apply: func(*bolt.Tx) error { return nil }},
		// The order counter moves to journal.unindexed (created here).
		{from: 2, name: "journal indexes written after the step", apply: func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bucketUnindexed)
			if err != nil {
				return err
			}
			return b.SetSequence(tx.Bucket(bucketOrder).Sequence())
		}},
	}
}

// maxBatch caps the operations in one group commit so that one transaction
// stays bounded in memory.
const maxBatch = 4096

// Store is the open bbolt file. Safe for concurrent use.
type Store struct {
	path string
	db   *bolt.DB
	opts Options
	log  *slog.Logger

	// reqs holds the submitted writes in order. Only the goroutine holding
	// wmu takes them out and commits them: a caller that finds wmu free
	// commits inline (no hand-off to another goroutine on the path of a lone
	// write), otherwise it kicks the writer goroutine, which commits
	// whatever is queued once wmu is free, so writes still group under load.
	reqs       chan *writeReq
	wmu        sync.Mutex
	kick       chan struct{} // room for one: wakes the writer goroutine
	stop       chan struct{} // closed by Close once every write committed
	writerDone chan struct{}
	notify     chan struct{}

	mu     sync.RWMutex // guards closed against in-flight submissions
	closed bool

	// period is the open reconciliation period's id once read (0: not yet);
	// ClosePeriod advances it, so a payment's response reads no page for it.
	period atomic.Uint64

	lazyMu     sync.Mutex // deferred writes (deferred.go), in submission order
	lazy       []*writeReq
	lazyTimer  *time.Timer
	lazyClosed bool
	pending    sync.WaitGroup
	once       sync.Once

	// acking holds the records acknowledged with AckDeferred whose removal
	// has not committed yet, sorted: Due skips them (seeking over runs).
	ackMu  sync.RWMutex
	acking []uint64

	janitorStop chan struct{}
	janitorDone chan struct{}

	// counters is owned by the holder of wmu; the atomics mirror it for
	// readers.
	counters    counters
	depth       atomic.Int64
	bytes       atomic.Int64
	dead        atomic.Int64
	deadB       atomic.Int64
	metrics     metrics
	jbudget     budget       // journal_budget.go
	fill        *filler      // fill.go; nil with NoSync
	lastSize    int64        // bbolt's high-water mark at the last commit; wmu
	batch       []*writeReq  // the commit's writes, reused; wmu
	inline      atomic.Int64 // commits run on a caller's goroutine (tests)
	lastWaiters atomic.Int64 // callers the last commit answered (deferred writes not counted)

	// Index writes after the step (unindexed.go).
	ovl        overlay
	pendN      atomic.Int64 // entries in journal.unindexed; written under wmu
	pendBytes  atomic.Int64
	indexIdle  atomic.Bool  // indexDelay passed since the entries began pending
	indexRetry atomic.Int64 // unix nanoseconds: no apply before, after one failed
	indexTimer *time.Timer  // wmu

	indexDiskMu sync.Mutex
	indexDisk   DiskStats // what commitIndexes wrote
}

// counters are persisted in the meta bucket in the same transaction as the
// change they describe, so Open does not scan the outbox to learn its size.
type counters struct {
	count, bytes, dead, deadBytes int64
}

func (c counters) encode() []byte {
	b := make([]byte, 32)
	binary.BigEndian.PutUint64(b[0:], uint64(c.count))
	binary.BigEndian.PutUint64(b[8:], uint64(c.bytes))
	binary.BigEndian.PutUint64(b[16:], uint64(c.dead))
	binary.BigEndian.PutUint64(b[24:], uint64(c.deadBytes))
	return b
}

func decodeCounters(b []byte) (counters, bool) {
	if len(b) != 32 {
		return counters{}, false
	}
	return counters{
		count:     int64(binary.BigEndian.Uint64(b[0:])),
		bytes:     int64(binary.BigEndian.Uint64(b[8:])),
		dead:      int64(binary.BigEndian.Uint64(b[16:])),
		deadBytes: int64(binary.BigEndian.Uint64(b[24:])),
	}, true
}

// metrics are lifetime (since Open) counters for monitoring.
type metrics struct {
	appended, refused, acked, nacked, deadLettered, expired, retried, purged atomic.Int64
	commits, ops                                                             atomic.Int64
}

type metricsDelta struct {
	appended, refused, acked, nacked, deadLettered, expired, retried, purged int64
}

// Open opens (creating if needed) the store file at path. It fails with
// ErrLocked if another process holds it, ErrCorrupt if it cannot be read
// safely and ErrSchemaTooNew if a newer agent wrote it.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store: create data dir: %w", err)
	}
	// Before bbolt walks the pages to rebuild its free list, where damage
	// would crash the process (checkFile).
	if err := checkFile(path, opts.LockTimeout); err != nil {
		return nil, err
	}
	db, err := openBolt(path, opts.LockTimeout, opts.NoSync, !opts.syncFreelist)
	if err != nil {
		return nil, err
	}
	// bbolt only applies the mode when it creates the file; an older file
	// copied in by hand may be wider.
	if err := os.Chmod(path, 0o600); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store: chmod %s: %w", path, err)
	}
	s := &Store{
		path:        path,
		db:          db,
		opts:        opts,
		log:         opts.Logger.With("component", "store"),
		reqs:        make(chan *writeReq, maxBatch),
		kick:        make(chan struct{}, 1),
		stop:        make(chan struct{}),
		writerDone:  make(chan struct{}),
		notify:      make(chan struct{}, 1),
		janitorStop: make(chan struct{}),
		janitorDone: make(chan struct{}),
	}
	if err := s.init(migrations()); err != nil {
		_ = db.Close()
		return nil, damaged(path, err)
	}
	// The alias buckets before the pending entries are applied to them (a
	// recovered file has none); the SaleID index after, from journal.order.
	if err := s.ensureAliasIndex(); err != nil {
		_ = db.Close()
		return nil, damaged(path, err)
	}
	if err := s.openIndexes(); err != nil {
		_ = db.Close()
		return nil, damaged(path, err)
	}
	if err := s.ensureSaleIndex(); err != nil {
		_ = db.Close()
		return nil, damaged(path, err)
	}
	if _, err := s.measure(); err != nil {
		_ = db.Close()
		return nil, damaged(path, err)
	}
	if !opts.NoSync && !opts.noFill {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("open store %s for zero-filling ahead: %w", path, err)
		}
		s.fill = &filler{f: f, chunk: 1 << 20, low: 256 << 10}
	}
	go s.writer()
	s.jbudget.kick, s.jbudget.stop, s.jbudget.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go s.budgetLoop()
	if opts.JournalMaxBytes > 0 && s.jbudget.est.Load() > opts.JournalMaxBytes {
		s.kickBudget() // over its budget already: evicted in the background
	}
	if opts.PruneInterval > 0 {
		go s.janitor()
	} else {
		close(s.janitorDone)
	}
	return s, nil
}

// damaged makes err a CorruptError when it says the file holds what no
// store writes: a value where a bucket belongs (bbolt's
// ErrIncompatibleValue) or a page bbolt panicked on.
func damaged(path string, err error) error {
	if errors.Is(err, ErrCorrupt) || !(errors.Is(err, berrors.ErrIncompatibleValue) || isPanic(err)) {
		return err
	}
	return &CorruptError{Path: path, Err: err}
}

// openBolt opens the file and maps bbolt's errors to ours.
func openBolt(path string, lockTimeout time.Duration, noSync, noFreelistSync bool) (db *bolt.DB, err error) {
	existed := false
	if fi, statErr := os.Stat(path); statErr == nil && fi.Size() > 0 {
		existed = true
	}
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, &CorruptError{Path: path, Err: fmt.Errorf("panic while opening: %v", r)}
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        lockTimeout,
		NoSync:         noSync,
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: noFreelistSync,
	})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("open store %s: %w (lock not acquired within %s)", path, ErrLocked, lockTimeout)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("open store: %w", err)
	case existed:
		return nil, &CorruptError{Path: path, Err: err}
	default:
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
}

// init creates or checks the buckets, runs migrations and loads counters.
func (s *Store) init(migs []migration) error {
	err := guard(func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			fresh := meta == nil
			if fresh {
				if err := tx.ForEach(func([]byte, *bolt.Bucket) error { return errors.New("has buckets but no meta") }); err != nil {
					return &CorruptError{Path: s.path, Err: err}
				}
				for _, name := range allBuckets() {
					if _, err := tx.CreateBucket(name); err != nil {
						return fmt.Errorf("create bucket %s: %w", name, err)
					}
				}
				meta = tx.Bucket(bucketMeta)
				if err := putSchema(meta, schemaVersion); err != nil {
					return err
				}
				return meta.Put(keyCounters, counters{}.encode())
			}
			have, ok := getSchema(meta)
			if !ok {
				return &CorruptError{Path: s.path, Err: errors.New("schema version missing")}
			}
			if have > schemaVersion {
				return fmt.Errorf("open store %s: %w (file version %d, agent knows %d)", s.path, ErrSchemaTooNew, have, schemaVersion)
			}
			if err := applyMigrations(tx, have, schemaVersion, migs); err != nil {
				return err
			}
			for _, name := range allBuckets() {
				if tx.Bucket(name) == nil {
					return &CorruptError{Path: s.path, Err: fmt.Errorf("bucket %s missing", name)}
				}
			}
			if _, ok := decodeCounters(meta.Get(keyCounters)); !ok {
				// Counters lost (should not happen): rebuild them by scanning.
				return meta.Put(keyCounters, recount(tx).encode())
			}
			return nil
		})
	})
	if err != nil {
		if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrSchemaTooNew) {
			return err
		}
		return fmt.Errorf("open store %s: %w", s.path, err)
	}
	return s.view(func(tx *bolt.Tx) error {
		if s.opts.Verify {
			for cerr := range tx.Check() {
				return &CorruptError{Path: s.path, Err: cerr}
			}
			if err := verifyRecords(tx); err != nil {
				return &CorruptError{Path: s.path, Err: err}
			}
		}
		c, _ := decodeCounters(tx.Bucket(bucketMeta).Get(keyCounters))
		s.counters = c
		s.publish(c)
		return nil
	})
}

func putSchema(meta *bolt.Bucket, v int) error {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(v))
	return meta.Put(keySchema, b[:])
}

func getSchema(meta *bolt.Bucket) (int, bool) {
	b := meta.Get(keySchema)
	if len(b) != 4 {
		return 0, false
	}
	return int(binary.BigEndian.Uint32(b)), true
}

// applyMigrations upgrades the file from version have to want.
func applyMigrations(tx *bolt.Tx, have, want int, migs []migration) error {
	meta := tx.Bucket(bucketMeta)
	for have < want {
		var m *migration
		for i := range migs {
			if migs[i].from == have {
				m = &migs[i]
				break
			}
		}
		if m == nil {
			return fmt.Errorf("migrate store: no migration from schema %d", have)
		}
		if err := m.apply(tx); err != nil {
			return fmt.Errorf("migrate store %d→%d (%s): %w", have, have+1, m.name, err)
		}
		have++
		if err := putSchema(meta, have); err != nil {
			return fmt.Errorf("migrate store: record schema %d: %w", have, err)
		}
	}
	return nil
}

// recount rebuilds the counters by scanning (used only after damage).
func recount(tx *bolt.Tx) counters {
	var c counters
	if b := tx.Bucket(bucketOutbox); b != nil {
		_ = b.ForEach(func(k, v []byte) error { c.count++; c.bytes += int64(len(k) + len(v)); return nil })
	}
	if b := tx.Bucket(bucketDead); b != nil {
		_ = b.ForEach(func(k, v []byte) error { c.dead++; c.deadBytes += int64(len(k) + len(v)); return nil })
	}
	return c
}

func verifyRecords(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketOutbox, bucketDead} {
		if err := tx.Bucket(name).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("bucket %s: bad key %x", name, k)
			}
			if _, err := decodeRecord(keySeq(k), v); err != nil {
				return fmt.Errorf("bucket %s: seq %d: %w", name, keySeq(k), err)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// Close stops background work, commits every write already submitted and
// closes the file. It is safe to call more than once.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		close(s.janitorStop)
		<-s.janitorDone
		close(s.jbudget.stop)
		<-s.jbudget.done
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.lazyMu.Lock()
		s.takeDeferredLocked()
		s.lazyClosed = true
		s.lazyMu.Unlock()
		s.kickWriter()
		s.pending.Wait()
		s.wmu.Lock()
		if s.indexTimer != nil {
			s.indexTimer.Stop()
		}
		if err := s.commitIndexes(); err != nil {
			// Durable in journal.unindexed: the next Open applies them.
			s.log.Warn("close store: pending journal indexes left for Open to apply", "err", err)
		}
		s.wmu.Unlock()
		close(s.stop)
		<-s.writerDone
		if s.fill != nil {
			_ = s.fill.f.Close() // written to only with a sync after
		}
		if cerr := s.db.Close(); cerr != nil {
			err = fmt.Errorf("close store: %w", cerr)
		}
	})
	return err
}

// Appended returns a channel that receives a value after a commit added
// records to the outbox (Append, RetryDead). It has room for one value, so a
// slow reader sees one wake-up for many appends. Meant for one consumer: the
// forwarder.
func (s *Store) Appended() <-chan struct{} { return s.notify }

// wtx is what an operation sees inside a group commit: the transaction, the
// working copy of the counters and the metric deltas. Both are applied only
// if the transaction commits.
type wtx struct {
	tx       *bolt.Tx
	c        counters
	m        metricsDelta
	appended bool
	now      time.Time
	pend     *pendDelta // index work noted (unindexed.go); nil: none
}

// rollback is an op's error after it wrote part of its changes: the whole
// group commit is rolled back (and every op in it fails) so that the op's
// writes stay all-or-nothing.
type rollback struct{ err error }

func (r rollback) Error() string { return r.err.Error() }

func (r rollback) Unwrap() error { return r.err }

// op is one queued write. An op must check everything that can fail before
// it mutates the transaction: a returned error is reported to its caller
// alone and the rest of the batch still commits.
type op func(w *wtx) error

type writeReq struct {
	fn       op
	done     chan error
	after    func(error) // called once the commit is over (deferred writes)
	internal bool        // the Store's own (applying indexes): not counted in pending
}

// do submits an op and waits until its transaction commits. ctx bounds only
// the wait for room in the queue.
//
// If no commit is running, the caller commits the queue itself, its own
// write included, on its own goroutine: a lone write pays no hand-off to
// the writer goroutine and back (TestLoneWriteCommitsOnTheCallersGoroutine).
// Otherwise the writer goroutine takes the write into its next commit with
// every other write queued by then.
func (s *Store) do(ctx context.Context, fn op) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	s.pending.Add(1)
	s.mu.RUnlock()
	r := &writeReq{fn: fn, done: make(chan error, 1)}
	s.lazyMu.Lock()
	s.takeDeferredLocked() // deferred writes ride in this commit, ahead of r
	if err := s.enqueue(ctx, r); err != nil {
		s.lazyMu.Unlock()
		s.pending.Done()
		return err
	}
	s.lazyMu.Unlock()
	// Once queued, the write will commit (or fail) whatever ctx does, and
	// the op writes its results into its caller's variables: wait for it.
	// The wait is bounded by the commits of the writes queued ahead of it.
	// Under load (the last commit answered several callers) the writer
	// groups the writes: the callers that commit released are still queueing
	// theirs, and one committing at once would take only a few of them (64
	// producers: 32 writes per commit instead of 45). A payment's commit
	// answers one caller (its deferred writes do not count).
	if s.lastWaiters.Load() > 1 || !s.wmu.TryLock() {
		s.kickWriter()
		return <-r.done
	}
	if more, fillDue := s.commitInline(r); more || fillDue || s.indexDue() {
		s.kickWriter() // the rest of the queue, the zero-fill or the indexes, off this path
	}
	return <-r.done
}

// commitInline commits the queue on the caller's goroutine until r's commit
// is over, and reports whether writes are left queued and whether the
// zero-fill is due. The caller holds wmu; commitInline releases it, even if
// something in a commit's aftermath (an after callback, a log handler)
// panics into a caller that recovers.
func (s *Store) commitInline(r *writeReq) (more, fillDue bool) {
	defer s.wmu.Unlock()
	s.inline.Add(1)
	for len(r.done) == 0 { // r is queued until the commit that takes it is over
		_, fillDue = s.commitQueued()
	}
	return len(s.reqs) > 0, fillDue
}

// enqueue appends r to the queue, waking the writer goroutine to make room
// when the queue is full. The caller holds lazyMu.
func (s *Store) enqueue(ctx context.Context, r *writeReq) error {
	select {
	case s.reqs <- r:
		return nil
	default:
	}
	s.kickWriter()
	select {
	case s.reqs <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// kickWriter wakes the writer goroutine to commit what is queued (and to
// zero-fill ahead once the queue is empty).
func (s *Store) kickWriter() {
	select {
	case s.kick <- struct{}{}:
	default: // a kick is already pending: the writer looks at the queue after it
	}
}

// writer commits the writes queued by callers that found a commit running
// (and the deferred writes nobody took along), then zero-fills ahead of the
// data while idle. It takes whatever is queued when it gets wmu, so commits
// group naturally under load.
func (s *Store) writer() {
	defer close(s.writerDone)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	for {
		select {
		case <-s.kick:
		case <-s.stop:
			return
		}
		s.wmu.Lock()
		for len(s.reqs) > 0 {
			_, n := s.commitQueuedN()
			if n > 1 {
				// Under load, let the producers this commit just released
				// queue their next write before we look at the queue again:
				// groups grow from about half the producers to most of them.
				// A yield, not a timer, so a lone writer pays nothing.
				s.wmu.Unlock()
				runtime.Gosched()
				s.wmu.Lock()
			}
		}
		if s.indexDue() { // idle: no write waits for it
			_ = s.commitIndexes() // logged; retried after indexDelay
		}
		s.fillAhead()
		s.wmu.Unlock()
	}
}

// commitQueued commits up to maxBatch queued writes in one transaction; ok
// reports it committed, fillDue that the zero-filled area ahead of bbolt's
// high-water mark is running short. The caller holds wmu.
func (s *Store) commitQueued() (ok, fillDue bool) {
	ok, _ = s.commitQueuedN()
	return ok, ok && s.fill != nil && s.fill.due(s.lastSize)
}

// commitQueuedN is commitQueued, reporting the number of writes committed.
func (s *Store) commitQueuedN() (ok bool, n int) {
	batch := s.batch[:0]
	for len(batch) < maxBatch {
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
			continue
		default:
		}
		break
	}
	if len(batch) == 0 {
		return true, 0
	}
	waiters := int64(0)
	for _, r := range batch {
		if r.done != nil {
			waiters++
		}
	}
	ok = s.commit(batch)
	s.lastWaiters.Store(waiters)
	clear(batch) // drop the references until the next commit
	s.batch = batch
	return ok, len(batch)
}

// commit runs batch in one bbolt transaction; ok reports it committed.
func (s *Store) commit(batch []*writeReq) (ok bool) {
	errs := make([]error, len(batch))
	w := &wtx{c: s.counters, now: s.opts.Now()}
	err := guard(func() error {
		tx, err := s.db.Begin(true)
		if err != nil {
			return err
		}
		// As db.Update does: a transaction still open (an op failed, or
		// anything panicked, Commit's own rebalance included) is rolled
		// back, or bbolt's write lock stays held and every later write
		// waits for ever (TestPanicInCommitFailsOnlyThatCommit). Commit
		// closes the transaction itself, committed or not.
		defer func() {
			if tx.DB() != nil {
				_ = tx.Rollback()
			}
		}()
		w.tx = tx
		if s.indexOverdue() { // bounded: unindexed.go
			if err := s.applyIndexes(w); err != nil {
				return err
			}
		}
		for i, r := range batch {
			errs[i] = r.fn(w)
			var rb rollback
			if errors.As(errs[i], &rb) {
				return rb.err
			}
		}
		if s.opts.indexWithStep && w.pend != nil && w.pend.n > 0 {
			if err := s.applyIndexes(w); err != nil {
				return err
			}
		}
		if w.c != s.counters { // the file holds s.counters: a commit of journal steps alone writes no counters
			if err := tx.Bucket(bucketMeta).Put(keyCounters, w.c.encode()); err != nil {
				return err
			}
		}
		// bbolt's high-water mark before this commit's pages: close enough
		// to tell when to zero-fill (fillAhead reads the exact one).
		size := tx.Size()
		if err := tx.Commit(); err != nil {
			return err
		}
		s.lastSize = size
		return nil
	})
	if s.fill != nil {
		s.fill.failed = err != nil
	}
	if err != nil {
		err = fmt.Errorf("commit: %w", err)
		s.log.Error("store commit failed", "ops", len(batch), "err", err)
	} else {
		if w.pend != nil {
			s.indexesCommitted(w.pend)
		}
		s.counters = w.c
		s.publish(w.c)
		s.applyMetrics(w.m, len(batch))
		if w.appended {
			select {
			case s.notify <- struct{}{}:
			default:
			}
		}
	}
	for i, r := range batch {
		e := errs[i]
		if err != nil {
			e = err
		}
		if r.done != nil {
			r.done <- e
		} else if e != nil && !r.internal { // the Store's own log theirs
			s.log.Error("deferred store write failed", "err", e)
		}
		if r.after != nil {
			s.runAfter(r.after, e)
		}
		if !r.internal {
			s.pending.Done()
		}
	}
	return err == nil
}

// runAfter calls a write's after-commit callback. A panic in it is logged,
// not raised: the rest of the batch must still be told its result, or its
// callers (and Close) would wait for ever.
func (s *Store) runAfter(after func(error), err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("store write's after-commit callback panicked", "panic", fmt.Sprint(p))
		}
	}()
	after(err)
}

func (s *Store) publish(c counters) {
	s.depth.Store(c.count)
	s.bytes.Store(c.bytes)
	s.dead.Store(c.dead)
	s.deadB.Store(c.deadBytes)
}

func (s *Store) applyMetrics(d metricsDelta, ops int) {
	m := &s.metrics
	m.appended.Add(d.appended)
	m.refused.Add(d.refused)
	m.acked.Add(d.acked)
	m.nacked.Add(d.nacked)
	m.deadLettered.Add(d.deadLettered)
	m.expired.Add(d.expired)
	m.retried.Add(d.retried)
	m.purged.Add(d.purged)
	m.commits.Add(1)
	m.ops.Add(int64(ops))
}

// view runs a read-only transaction, turning a panic from a damaged page
// into ErrCorrupt instead of crashing the agent.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	err := guard(func() error { return s.db.View(fn) })
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	if err != nil && !errors.Is(err, ErrCorrupt) && isPanic(err) {
		return &CorruptError{Path: s.path, Err: err}
	}
	return err
}

type panicError struct{ v any }

func (p panicError) Error() string { return fmt.Sprintf("panic: %v", p.v) }

func isPanic(err error) bool {
	var p panicError
	return errors.As(err, &p)
}

// guard runs fn, converting a panic (bbolt panics on damaged pages; faults
// on the mapping become panics through SetPanicOnFault) into an error.
func guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = panicError{r}
		}
	}()
	return fn()
}

// janitor prunes old journal entries and event ids in the background.
func (s *Store) janitor() {
	defer close(s.janitorDone)
	t := time.NewTicker(s.opts.PruneInterval)
	defer t.Stop()
	for {
		select {
		case <-s.janitorStop:
			return
		case <-t.C:
		}
		// Close waits for the janitor, so a prune must not outlive a stop.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		go func() {
			select {
			case <-s.janitorStop:
				cancel()
			case <-ctx.Done():
			}
		}()
		now := s.opts.Now()
		if n, err := s.PruneJournal(ctx, now); err != nil {
			s.log.Warn("prune journal", "err", err)
		} else if n > 0 {
			s.log.Info("pruned journal", "transactions", n)
		}
		if n, err := s.PruneEvents(ctx, now); err != nil {
			s.log.Warn("prune event ids", "err", err)
		} else if n > 0 {
			s.log.Debug("pruned event ids", "count", n)
		}
		cancel() // also ends the watcher goroutine above
	}
}
