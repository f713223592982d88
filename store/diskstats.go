package store

import "time"

// DiskStats are the writes the Store has made to its file since it opened,
// from bbolt's own counters (DB.Stats) and the writer's commit count, so a
// benchmark can print measured pages and bytes per operation instead of
// typing them.
type DiskStats struct {
	// Commits are the write transactions the writer committed.
	Commits int64
	// Fdatasyncs are the fdatasync calls those commits made — bbolt's
	// commit syncs twice (after the data pages, then after the meta page)
	// unless NoSync is set — plus one per zero-fill ahead (ZeroFills).
	// TestDiskStatsFdatasyncsMatchTheFile counts them at the file (strace)
	// to check. Not included: the fsync bbolt makes after growing the file,
	// which it does in chunks (rarely).
	Fdatasyncs int64
	// Writes are bbolt's pwrite calls (one per page or run of overflow
	// pages, plus the meta page of each commit).
	Writes int64
	// Pages are the pages written: those the commits allocated (tree nodes,
	// the free list) plus one meta page per commit. Bytes = Pages × PageSize.
	Pages    int64
	Bytes    int64
	PageSize int
	// WriteTime is the wall time the commits spent writing: their pages,
	// the fdatasync after them, the meta page and its fdatasync (bbolt's
	// TxStats.WriteTime), so a benchmark can set a commit's measured cost
	// against the fdatasync floor.
	WriteTime time.Duration
	// ZeroFills are the writer's fills ahead of the data (fill.go), off
	// every caller's path: ZeroFillBytes of zeros written and synced in
	// ZeroFillTime. Not included in Pages and Bytes.
	ZeroFills     int64
	ZeroFillBytes int64
	ZeroFillTime  time.Duration
}

// DiskStats returns the Store's writes to its file so far.
func (s *Store) DiskStats() DiskStats {
	st := s.db.Stats()
	commits := s.metrics.commits.Load()
	ps := s.db.Info().PageSize
	d := DiskStats{Commits: commits, Writes: st.TxStats.GetWrite(), PageSize: ps, WriteTime: st.TxStats.GetWriteTime()}
	d.Pages = st.TxStats.GetPageAlloc()/int64(ps) + commits
	d.Bytes = d.Pages * int64(ps)
	if !s.opts.NoSync {
		d.Fdatasyncs = 2 * commits
	}
	if fl := s.fill; fl != nil {
		d.ZeroFills, d.ZeroFillBytes, d.ZeroFillTime = fl.fills.Load(), fl.bytes.Load(), time.Duration(fl.elapsed.Load())
		d.Fdatasyncs += d.ZeroFills
	}
	return d
}

// add returns the writes of d and o together.
func (d DiskStats) add(o DiskStats) DiskStats {
	z := DiskStats{}
	return d.Sub(z.Sub(o))
}

// Sub returns the writes made between o and d.
func (d DiskStats) Sub(o DiskStats) DiskStats {
	return DiskStats{
		Commits: d.Commits - o.Commits, Fdatasyncs: d.Fdatasyncs - o.Fdatasyncs, Writes: d.Writes - o.Writes,
		Pages: d.Pages - o.Pages, Bytes: d.Bytes - o.Bytes, PageSize: d.PageSize, WriteTime: d.WriteTime - o.WriteTime,
		ZeroFills: d.ZeroFills - o.ZeroFills, ZeroFillBytes: d.ZeroFillBytes - o.ZeroFillBytes, ZeroFillTime: d.ZeroFillTime - o.ZeroFillTime,
	}
}
