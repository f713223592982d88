package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// boltFile is a store file in memory with what a test needs to damage it.
type boltFile struct {
	b      []byte
	ps     int
	meta   int    // offset of the current meta page
	outbox uint64 // the outbox's root page (a branch)
	leaf   uint64 // the outbox's first leaf page
	root   uint64 // the tree of buckets' root page
	free   uint64 // the written free-list page, noFreelist if none
}

func (f *boltFile) page(id uint64) []byte { return f.b[int(id)*f.ps : int(id+1)*f.ps] }

// resum recomputes the current meta page's checksum after an edit.
func (f *boltFile) resum() {
	m := f.b[f.meta+pageHeaderSize:]
	h := fnv.New64a()
	h.Write(m[:metaChecksumAt])
	binary.LittleEndian.PutUint64(m[metaChecksumAt:], h.Sum64())
}

// damagedStoreFile writes a store whose outbox spans a branch page and
// several leaves, closes it and reads it back.
func damagedStoreFile(t *testing.T, opts Options) (string, *boltFile) {
	t.Helper()
	opts.noFill = true // the file ends at its last page: past it is past EOF
	s, path := openTest(t, opts)
	ctx := t.Context()
	for i := range 200 {
		_, err := s.Append(ctx, Event{Kind: KindReceipt, Payload: bytes.Repeat([]byte{byte(i)}, 100)})
		require.NoError(t, err)
	}
	_, err := s.StartTxn(ctx, TxnRef{ID: "t1", SaleID: "POS1", ServiceID: "1"}, Transition{State: "started"})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	f := &boltFile{}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	f.ps = db.Info().PageSize
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		f.outbox = uint64(tx.Bucket(bucketOutbox).Root())
		f.root = uint64(tx.Cursor().Bucket().Root())
		return nil
	}))
	require.NoError(t, db.Close())
	f.b, err = os.ReadFile(path)
	require.NoError(t, err)
	le := binary.LittleEndian
	f.meta = 0
	if le.Uint64(f.b[f.ps+pageHeaderSize+48:]) > le.Uint64(f.b[pageHeaderSize+48:]) {
		f.meta = f.ps
	}
	f.free = le.Uint64(f.b[f.meta+pageHeaderSize+32:])
	br := f.page(f.outbox)
	require.Equal(t, uint16(pageBranch), le.Uint16(br[8:]), "the outbox must span several pages")
	require.Greater(t, le.Uint16(br[10:]), uint16(2))
	f.leaf = le.Uint64(br[pageHeaderSize+8:])
	return path, f
}

func TestOpenDamagedPages(t *testing.T) {
	le := binary.LittleEndian
	garbage := func(b []byte) {
		r := rand.New(rand.NewPCG(1, 2))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
	}
	tests := []struct {
		name     string
		synced   bool // the file carries a written free list
		damage   func(f *boltFile)
		contains string
	}{
		{"garbage in a branch page", false, func(f *boltFile) { garbage(f.page(f.outbox)[pageHeaderSize:]) }, ""},
		{"a branch page all garbage", false, func(f *boltFile) { garbage(f.page(f.outbox)) }, "identifies as"},
		{"garbage in a leaf page", false, func(f *boltFile) { garbage(f.page(f.leaf)[pageHeaderSize:]) }, ""},
		{"garbage in the tree of buckets", false, func(f *boltFile) { garbage(f.page(f.root)[pageHeaderSize:]) }, ""},
		{"a child id past the end of the file", false, func(f *boltFile) {
			le.PutUint64(f.page(f.outbox)[pageHeaderSize+8:], uint64(len(f.b)/f.ps)+3)
		}, "outside"},
		{"a child id far past the mapping", false, func(f *boltFile) {
			le.PutUint64(f.page(f.outbox)[pageHeaderSize+8:], 1<<40)
		}, "outside"},
		{"a child id naming a meta page", false, func(f *boltFile) {
			le.PutUint64(f.page(f.outbox)[pageHeaderSize+8:], 1)
		}, "outside"},
		{"a child naming its own page", false, func(f *boltFile) {
			le.PutUint64(f.page(f.outbox)[pageHeaderSize+8:], f.outbox)
		}, "reached twice"},
		{"two children naming one page", false, func(f *boltFile) {
			le.PutUint64(f.page(f.outbox)[pageHeaderSize+16+8:], f.leaf)
		}, "reached twice"},
		{"an overflow past the end of the file", false, func(f *boltFile) {
			le.PutUint32(f.page(f.leaf)[12:], 1<<20)
		}, "overflows"},
		{"an unknown page type", false, func(f *boltFile) { le.PutUint16(f.page(f.leaf)[8:], 0x40) }, "type"},
		{"a key past the page", false, func(f *boltFile) {
			le.PutUint32(f.page(f.leaf)[pageHeaderSize+4:], 1<<30)
		}, "past the page"},
		{"an element count past the page", false, func(f *boltFile) { le.PutUint16(f.page(f.leaf)[10:], 0xFFF0) }, "past the page"},
		{"keys out of order", false, func(f *boltFile) {
			p := f.page(f.leaf)
			e := p[pageHeaderSize+pageElemSize:] // element 1's key: zero it, below element 0's
			clear(p[pageHeaderSize+pageElemSize+int(le.Uint32(e[4:])):][:le.Uint32(e[8:])])
		}, "not above"},
		{"a bucket header cut short", false, func(f *boltFile) {
			p := f.page(f.root)
			for i := range int(le.Uint16(p[10:])) {
				if e := p[pageHeaderSize+i*pageElemSize:]; le.Uint32(e)&leafBucket != 0 {
					le.PutUint32(e[12:], 4)
					return
				}
			}
			t.Fatal("no bucket entry on the root page")
		}, "bucket header"},
		{"both meta pages zeroed", false, func(f *boltFile) { clear(f.b[:2*f.ps]) }, "meta"},
		{"the meta names a root past the end", false, func(f *boltFile) {
			le.PutUint64(f.b[f.meta+pageHeaderSize+16:], uint64(len(f.b)/f.ps)+10)
			f.resum()
		}, ""},
		{"a free list naming a page in use", true, func(f *boltFile) {
			p := f.page(f.free)
			le.PutUint16(p[10:], 1)
			le.PutUint64(p[pageHeaderSize:], f.outbox)
		}, "in use"},
		{"a free list count past the page", true, func(f *boltFile) { le.PutUint16(f.page(f.free)[10:], 0xFFFE) }, "do not fit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, f := damagedStoreFile(t, Options{syncFreelist: tt.synced})
			if tt.synced {
				require.NotEqual(t, noFreelist, f.free)
			}
			tt.damage(f)
			require.NoError(t, os.WriteFile(path, f.b, 0o600))
			fi, err := os.Stat(path)
			require.NoError(t, err)

			_, err = Open(t.Context(), path, Options{syncFreelist: tt.synced})
			require.ErrorIs(t, err, ErrCorrupt)
			var ce *CorruptError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, path, ce.Path)
			require.Contains(t, err.Error(), "--recover")
			require.Contains(t, err.Error(), tt.contains)

			// Nothing was written to the damaged file.
			after, err := os.ReadFile(path)
			require.NoError(t, err)
			require.True(t, bytes.Equal(f.b, after), "the damaged file was modified")
			fi2, err := os.Stat(path)
			require.NoError(t, err)
			require.Equal(t, fi.ModTime(), fi2.ModTime())

			// The lock was released: Recover moves the file aside and a
			// fresh store opens.
			rep, err := Recover(path)
			require.NoError(t, err)
			require.FileExists(t, rep.MovedTo)
			s, err := Open(t.Context(), path, Options{Verify: true})
			require.NoError(t, err)
			require.NoError(t, s.Close())
		})
	}
}

// TestCheckPagesAcceptsEveryFileBboltOpens: the check refuses no file bbolt
// opens, whatever its shape (inline and paged buckets, nested buckets,
// overflow pages, deletions, both free-list modes).
func TestCheckPagesAcceptsEveryFileBboltOpens(t *testing.T) {
	for _, synced := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "x.db")
		db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: !synced, NoSync: true})
		require.NoError(t, err)
		r := rand.New(rand.NewPCG(3, 4))
		for round := range 30 {
			require.NoError(t, db.Update(func(tx *bolt.Tx) error {
				for b := range 5 {
					bk, err := tx.CreateBucketIfNotExists([]byte{byte('a' + b)})
					if err != nil {
						return err
					}
					nested, err := bk.CreateBucketIfNotExists([]byte("nested"))
					if err != nil {
						return err
					}
					for range r.IntN(50) {
						k := binary.BigEndian.AppendUint32(nil, r.Uint32N(2000))
						v := make([]byte, r.IntN(300))
						if r.IntN(40) == 0 {
							v = make([]byte, 3*4096+r.IntN(4096)) // overflow pages
						}
						if err := bk.Put(k, v); err != nil {
							return err
						}
						if err := nested.Put(k, v[:min(len(v), 8)]); err != nil {
							return err
						}
					}
					if round%3 == 2 { // deletions: merges, freed pages
						c := bk.Cursor()
						for k, v := c.First(); k != nil; k, v = c.Next() {
							if v != nil && r.IntN(3) == 0 {
								if err := c.Delete(); err != nil {
									return err
								}
							}
						}
					}
				}
				return nil
			}))
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			require.NoError(t, checkPages(data), "round %d, free list synced %t", round, synced)
		}
		require.NoError(t, db.Close())
	}
}

// FuzzOpenDamagedPage writes random bytes at a random place of a random
// page of a store file: Open either succeeds or fails with ErrCorrupt,
// never panics, and what it opens can be read and closed.
func FuzzOpenDamagedPage(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join("testdata", "damage-seed.db"))
	require.NoError(f, err)
	f.Add(uint16(0), uint16(0), []byte{0})
	f.Add(uint16(3), uint16(16), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add(uint16(4), uint16(8), []byte{0x01, 0x00})
	f.Add(uint16(5), uint16(12), []byte{0xff, 0xff, 0x00, 0x00})
	f.Add(uint16(6), uint16(24), []byte{0x00, 0x00, 0x00, 0x40})
	f.Fuzz(func(t *testing.T, page, off uint16, junk []byte) {
		const ps = 4096
		b := bytes.Clone(seed)
		start := int(page)%(len(b)/ps)*ps + int(off)%ps
		copy(b[start:min(len(b), start+len(junk))], junk)
		path := filepath.Join(t.TempDir(), "termagent.db")
		require.NoError(t, os.WriteFile(path, b, 0o600))
		// A damaged file must not hang Open or a read either: past 10 s,
		// fail with every goroutine's stack.
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				buf := make([]byte, 1<<20)
				panic(fmt.Sprintf("damaged page %d offset %d: stuck for 10 s\n%s", page, off, buf[:runtime.Stack(buf, true)]))
			}
		}()
		s, err := Open(t.Context(), path, Options{PruneInterval: -1, NoSync: true})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v, want nil or ErrCorrupt", err)
			}
			return
		}
		// Damage to data rather than structure shows when it is read.
		_, _ = s.List(t.Context(), 1000)
		_, _ = s.Txn(t.Context(), "t1")
		require.NoError(t, s.Close())
	})
}

// TestWriteDamageSeed regenerates testdata/damage-seed.db, the file
// FuzzOpenDamagedPage damages: TERMAGENT_WRITE_TESTDATA=1 go test -run TestWriteDamageSeed ./store/
func TestWriteDamageSeed(t *testing.T) {
	if os.Getenv("TERMAGENT_WRITE_TESTDATA") == "" {
		t.Skip("set TERMAGENT_WRITE_TESTDATA=1 to regenerate testdata/damage-seed.db")
	}
	path, f := damagedStoreFile(t, Options{NoSync: true})
	_ = path
	require.NoError(t, os.WriteFile(filepath.Join("testdata", "damage-seed.db"), f.b, 0o644))
}

// BenchmarkOpenCheck is what checkFile adds to Open: the walk alone
// (check-ms) and the whole Open and Close (open-ms), page cache warm. The
// 1,000,000-record file is behind TERMAGENT_BENCH_LONG.
func BenchmarkOpenCheck(b *testing.B) {
	sizes := []int{200, 100_000}
	if os.Getenv("TERMAGENT_BENCH_LONG") != "" {
		sizes = append(sizes, 1_000_000)
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("queued=%d", n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "termagent.db")
			opts := Options{PruneInterval: -1, NoSync: true, MaxCount: 1 << 40, MaxBytes: 1 << 40}
			s, err := Open(b.Context(), path, opts)
			require.NoError(b, err)
			fillOutbox(b, s, n, benchPayload)
			require.NoError(b, s.Close())
			fi, err := os.Stat(path)
			require.NoError(b, err)
			var check, open time.Duration
			for range b.N {
				t0 := time.Now()
				require.NoError(b, checkFile(path, time.Second))
				t1 := time.Now()
				s, err := Open(b.Context(), path, opts)
				require.NoError(b, err)
				open += time.Since(t1)
				check += t1.Sub(t0)
				require.NoError(b, s.Close())
			}
			b.ReportMetric(float64(check.Microseconds())/1000/float64(b.N), "check-ms")
			b.ReportMetric(float64(open.Microseconds())/1000/float64(b.N), "open-ms")
			b.ReportMetric(float64(fi.Size())/(1<<20), "file-MB")
		})
	}
}

// A zeroed meta page is what a torn meta write leaves: bbolt opens the
// file from the other one (the commit before), and so must the check.
func TestOpenWithOneMetaPageZeroed(t *testing.T) {
	for _, current := range []bool{true, false} {
		path, f := damagedStoreFile(t, Options{})
		zero := f.meta
		if !current {
			zero = f.ps - f.meta // the other one
		}
		clear(f.b[zero : zero+f.ps])
		require.NoError(t, checkPages(f.b))
		require.NoError(t, os.WriteFile(path, f.b, 0o600))
		s, err := Open(t.Context(), path, Options{Verify: true})
		require.NoError(t, err, "current meta zeroed: %t", current)
		require.NoError(t, s.Close())
	}
}

// Recover reads the damaged file through the same checks: it skips a
// damaged leaf and keeps every record of the others, and a page naming
// itself as its child ends the walk instead of looping (bbolt's cursor
// descended into it for ever).
func TestRecoverSkipsDamagedPages(t *testing.T) {
	le := binary.LittleEndian
	for _, tt := range []struct {
		name   string
		damage func(f *boltFile)
	}{
		{"a leaf of unknown type", func(f *boltFile) { le.PutUint16(f.page(f.leaf)[8:], 0x40) }},
		{"a child naming its own page", func(f *boltFile) { le.PutUint64(f.page(f.outbox)[pageHeaderSize+8:], f.outbox) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path, f := damagedStoreFile(t, Options{})
			inLeaf := int(le.Uint16(f.page(f.leaf)[10:]))
			require.Positive(t, inLeaf)
			tt.damage(f)
			require.NoError(t, os.WriteFile(path, f.b, 0o600))
			rep, err := Recover(path)
			require.NoError(t, err)
			require.True(t, rep.Opened)
			require.Equal(t, 200-inLeaf, rep.Copied["outbox"], "every record but the damaged leaf's")
			require.NotEmpty(t, rep.Errors)
			s, err := Open(t.Context(), path, Options{Verify: true})
			require.NoError(t, err)
			txn, err := s.Txn(t.Context(), "t1")
			require.NoError(t, err)
			require.Equal(t, "started", txn.State)
			require.NoError(t, s.Close())
		})
	}
}

// lockWithin is the retry loop every platform's tryLock runs under (on
// Windows, LockFileEx on bbolt's byte range; that call is compiled, not run,
// here): it retries only while another holder has the lock, and gives up
// with errWouldBlock at the timeout.
func TestLockWithin(t *testing.T) {
	other := errors.New("bad handle")
	for _, tt := range []struct {
		name    string
		results []error // what each try returns; past the end, the last again
		timeout time.Duration
		want    error
		tries   int // exactly; for a timeout, at most (a slow sleep makes fewer)
	}{
		{"free at once", []error{nil}, time.Second, nil, 1},
		{"freed after two tries", []error{errWouldBlock, errWouldBlock, nil}, 5 * time.Second, nil, 3},
		{"held past the timeout", []error{errWouldBlock}, 3 * lockRetry, errWouldBlock, 3},
		{"no timeout: one try", []error{errWouldBlock}, 0, errWouldBlock, 1},
		{"another error is not retried", []error{other}, 5 * time.Second, other, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tries, unlocked := 0, false
			unlock, err := lockWithin(func() (func(), error) {
				err := tt.results[min(tries, len(tt.results)-1)]
				tries++
				if err != nil {
					return nil, err
				}
				return func() { unlocked = true }, nil
			}, tt.timeout)
			require.ErrorIs(t, err, tt.want)
			if tt.want == nil {
				require.NoError(t, err)
				unlock()
				require.True(t, unlocked, "the unlock of the try that took the lock")
			}
			if tt.want == errWouldBlock && tt.timeout > 0 {
				require.LessOrEqual(t, tries, tt.tries)
				require.GreaterOrEqual(t, tries, 2, "retried while held")
				return
			}
			require.Equal(t, tt.tries, tries)
		})
	}
}

// checkFile reports another holder's lock as ErrLocked, and takes the lock
// once it is released; it releases its own before returning, for bbolt.
func TestCheckFileHonoursTheLock(t *testing.T) {
	if runtime.GOOS == "solaris" || runtime.GOOS == "aix" {
		t.Skip("the store takes no lock here")
	}
	s, path := openTest(t, Options{})
	require.NoError(t, s.Close())
	holder, err := os.Open(path)
	require.NoError(t, err)
	defer holder.Close()
	unlock, err := tryLock(holder)
	require.NoError(t, err)

	err = checkFile(path, 2*lockRetry)
	require.ErrorIs(t, err, ErrLocked)
	require.NotErrorIs(t, err, ErrCorrupt)

	unlock()
	require.NoError(t, checkFile(path, 0))
	unlock2, err := tryLock(holder)
	require.NoError(t, err, "checkFile released its lock")
	unlock2()
}

// A branch page of garbage names as many children as it can hold, none of
// them real: Recover counts every one but keeps the reasons of only the
// first few, in memory and in its report.
func TestRecoverBoundsItsSkipList(t *testing.T) {
	le := binary.LittleEndian
	path, f := damagedStoreFile(t, Options{})
	br := f.page(f.outbox)
	children := (f.ps - pageHeaderSize) / pageElemSize
	le.PutUint16(br[10:], uint16(children))
	for i := range children {
		e := br[pageHeaderSize+i*pageElemSize:]
		le.PutUint32(e[0:], 0)               // key position
		le.PutUint32(e[4:], 0)               // key size
		le.PutUint64(e[8:], 1<<40+uint64(i)) // a child past the end
	}

	w, m, err := readPages(f.b)
	require.NoError(t, err)
	_, found, skipped := w.salvageBucket(m, bucketOutbox, func(uint32, []byte, []byte) {})
	require.True(t, found)
	require.Equal(t, children, skipped.n, "every missing child counted")
	require.Len(t, skipped.first, maxSkipReports, "reasons kept for the first few only")

	require.NoError(t, os.WriteFile(path, f.b, 0o600))
	rep, err := Recover(path)
	require.NoError(t, err)
	require.True(t, rep.Opened)
	require.Zero(t, rep.Copied["outbox"])
	var lines []string
	for _, l := range rep.Errors {
		if strings.HasPrefix(l, "bucket outbox:") {
			lines = append(lines, l)
		}
	}
	require.Len(t, lines, maxSkipReports+1)
	require.Equal(t, fmt.Sprintf("bucket outbox: %d more damaged pages or elements skipped", children-maxSkipReports), lines[maxSkipReports])
	s, err := Open(t.Context(), path, Options{Verify: true})
	require.NoError(t, err)
	require.NoError(t, s.Close())
}
