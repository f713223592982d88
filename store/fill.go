package store

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Zero-filling ahead: bbolt grows its file by truncating it longer, which
// leaves a hole, and a commit that writes a page into a hole makes the
// filesystem allocate its block, so that commit's fdatasync also commits the
// filesystem's journal. On ext4 on a virtio disk that cost 140–200 µs more
// per fdatasync of one page (written block 280–640 µs, hole 430–780 µs,
// medians of three runs); a store whose journal is growing did it in 46% of
// a payment's commits (sim/world, strace). So the writer, when it has
// nothing queued, writes zeros over the next 1 MiB past bbolt's last page
// and syncs them once: commits then write into blocks that exist
// (BenchmarkZeroFillAhead: write time per commit ×0.90–0.96 on a growing
// journal, for about 5 KiB and 15 µs of fill per payment, off its path).
//
// One commit runs at a time (the holder of wmu), and the writer goroutine
// fills holding wmu, between commits, past the
// highest page any commit has allocated: bbolt neither reads nor relies on
// what lies there (it writes every page it allocates in full before its meta
// page names it), so a crash mid-fill leaves a longer file and nothing else
// (TestZeroFillNeverTouchesTheData).

// filler is guarded by wmu; the atomics are for DiskStats.
type filler struct {
	f          *os.File
	chunk, low int64 // bytes zero-filled at a time; fill again when less than low is left
	hwm        int64 // bbolt's high-water mark at the last fill (Tx.Size)
	upTo       int64 // bytes up to which the file is written (0: not known)
	off        bool  // stopped after an error
	failed     bool  // the last commit failed: no fill until one succeeds (set by commit)
	zeros      []byte

	views   atomic.Int64 // read transactions fillAhead opened (not the callers': ReadTxns)
	fills   atomic.Int64
	bytes   atomic.Int64
	elapsed atomic.Int64 // ns
}

// due reports whether less than the low mark is zero-filled past size,
// bbolt's high-water mark: the writer should fill when idle.
func (fl *filler) due(size int64) bool {
	return !fl.off && !fl.failed && fl.upTo < size+fl.low
}

// fillAhead zero-fills past the data when less than fillLow is left. The
// caller holds wmu.
//
// The high-water mark is read from bbolt itself, in a read transaction, each
// time: no commit is running, so it is exactly the end of every page bbolt
// may use, whatever the commits before did (a failed commit included: bbolt
// can keep a commit whose meta sync failed). There is no fill after a failed
// commit at all (failed, set by commit), until one succeeds.
func (s *Store) fillAhead() {
	fl := s.fill
	if fl == nil || fl.off || fl.failed {
		return
	}
	var hwm int64
	fl.views.Add(1)
	if err := s.db.View(func(tx *bolt.Tx) error { hwm = tx.Size(); return nil }); err != nil || hwm <= 0 {
		return
	}
	fl.hwm = hwm
	if fl.upTo >= fl.hwm+fl.low {
		return
	}
	t0 := time.Now()
	fi, err := fl.f.Stat()
	if err != nil {
		fl.off = true
		s.log.Warn("zero-fill ahead of the data stopped", "err", fmt.Errorf("stat %s: %w", s.path, err))
		return
	}
	// Never past the file's end: bbolt sizes the file (to its mapping, in
	// doublings for a small file), and a fill that lengthened it made bbolt
	// map, and then grow the file to, twice the size (TestHostileInput: a
	// 1 MiB journal budget's 2 MiB file became 4 MiB). Within it, the fill
	// turns the holes bbolt's growth left into written blocks.
	from, to := max(fl.upTo, fl.hwm), min(fl.hwm+fl.chunk, fi.Size())
	if to <= from {
		return
	}
	if fl.zeros == nil {
		fl.zeros = make([]byte, 64<<10)
	}
	err = func() error {
		for off := from; off < to; off += int64(len(fl.zeros)) {
			if _, err := fl.f.WriteAt(fl.zeros[:min(int64(len(fl.zeros)), to-off)], off); err != nil {
				return err
			}
		}
		return fdatasync(fl.f)
	}()
	if err != nil {
		// Only a cost is lost (a full disk, say): bbolt still grows the file.
		fl.off = true
		s.log.Warn("zero-fill ahead of the data stopped", "err", fmt.Errorf("fill %s [%d, %d): %w", s.path, from, to, err))
		return
	}
	fl.upTo = to
	fl.fills.Add(1)
	fl.bytes.Add(to - from)
	fl.elapsed.Add(int64(time.Since(t0)))
}
