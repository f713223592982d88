package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"time"
)

// The store opens bbolt with NoFreelistSync, so bbolt rebuilds its free
// list at open by walking every page the committed tree reaches, in a
// goroutine of its own. A damaged page (garbage elements, a child id past
// the end of the file, an overflow count past it) makes that walk index out
// of range or fault on the mapping there, where no recover and no
// SetPanicOnFault reach: the agent died at start with a Go stack. checkFile
// walks the same pages first, reading the file through bounds checks, so
// damage is a CorruptError and bbolt never sees a file its walk cannot
// finish. The checks mirror what bbolt's walk reads (meta choice, page ids
// and types, key order as tx_check.go has it, nested and inline buckets,
// the free-page list when one was written) and nothing it does not, so no
// file bbolt opens today is refused.

// The bbolt file format (go.etcd.io/bbolt/internal/common, version 2).
const (
	pageHeaderSize   = 16 // id u64, flags u16, count u16, overflow u32
	pageElemSize     = 16 // branch: pos u32, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	bucketHeaderSize = 16 // root pgid u64, sequence u64
	metaChecksumAt   = 56 // the checksum covers the meta's first 56 bytes

	boltMagic   = 0xED0CDAED
	boltVersion = 2

	pageBranch   = 0x01
	pageLeaf     = 0x02
	pageFreelist = 0x10
	leafBucket   = 0x01

	noFreelist = ^uint64(0)

	// maxTreeDepth bounds the walk's recursion: a tree of 4 KiB pages is a
	// handful of levels deep; only a damaged chain of branch pages is deeper.
	maxTreeDepth = 1000
)

// errPageCheck marks what checkPages found, for the fuzz target to tell a
// refused file from an I/O failure.
var errPageCheck = errors.New("damaged page")

// checkFile checks the file at path before bbolt opens it for writing. It
// holds the same exclusive lock bbolt takes while it reads (another agent
// writing the file would make a consistent file look damaged), and writes
// nothing. A missing or empty file is left for bbolt to create.
func checkFile(path string, lockTimeout time.Duration) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer f.Close()
	unlock, err := lockWithin(func() (func(), error) { return tryLock(f) }, lockTimeout)
	if err != nil {
		if errors.Is(err, errWouldBlock) {
			return fmt.Errorf("open store %s: %w (lock not acquired within %s)", path, ErrLocked, lockTimeout)
		}
		return fmt.Errorf("open store %s: lock: %w", path, err)
	}
	defer unlock() // before the close: bbolt takes the lock next
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("open store %s: %w", path, err)
	}
	if fi.Size() == 0 {
		return nil
	}
	data, unmap, err := mapFile(f, fi.Size())
	if err != nil {
		return fmt.Errorf("open store %s: map for checking: %w", path, err)
	}
	defer unmap()
	// The walk reads only within the file's bounds; guard is for what it
	// cannot see (the file shrinking under a process that ignores the lock).
	if err := guard(func() error { return checkPages(data) }); err != nil {
		return &CorruptError{Path: path, Err: err}
	}
	return nil
}

// errWouldBlock is tryLock's answer when another holder has the lock.
var errWouldBlock = errors.New("file locked by another holder")

// lockRetry is how long lockWithin waits between attempts (bbolt's
// flockRetryTimeout).
const lockRetry = 50 * time.Millisecond

// lockWithin calls try until it takes the lock, retrying as bbolt does
// while another holder has it, until timeout.
func lockWithin(try func() (unlock func(), err error), timeout time.Duration) (func(), error) {
	deadline := time.Now().Add(timeout)
	for {
		unlock, err := try()
		if err == nil || !errors.Is(err, errWouldBlock) || !time.Now().Add(lockRetry).Before(deadline) {
			return unlock, err
		}
		time.Sleep(lockRetry)
	}
}

// boltMeta is the part of a meta page the walk needs.
type boltMeta struct {
	pageSize               uint32
	root, freelist, highWM uint64
	txid                   uint64
}

// readMeta decodes the meta held by the page at b (b starts at the page
// header); ok is false when bbolt's Validate would refuse it.
func readMeta(b []byte) (boltMeta, bool) {
	if len(b) < pageHeaderSize+64 {
		return boltMeta{}, false
	}
	m := b[pageHeaderSize : pageHeaderSize+64]
	le := binary.LittleEndian
	h := fnv.New64a()
	h.Write(m[:metaChecksumAt])
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion || le.Uint64(m[metaChecksumAt:]) != h.Sum64() {
		return boltMeta{}, false
	}
	return boltMeta{
		pageSize: le.Uint32(m[8:]),
		root:     le.Uint64(m[16:]),
		freelist: le.Uint64(m[32:]),
		highWM:   le.Uint64(m[40:]),
		txid:     le.Uint64(m[48:]),
	}, true
}

// pageSizeOf finds the page size as bbolt's getPageSize does: from the meta
// page at offset 0, else from the second meta page at one of the sizes bbolt
// supports, else the OS page size if either could be read at all.
func pageSizeOf(data []byte) (int, error) {
	if len(data) >= 4096 {
		if m, ok := readMeta(data); ok {
			return int(m.pageSize), nil
		}
	}
	canRead := len(data) >= 4096
	for i := range 15 {
		pos := 1024 << i
		if pos >= len(data)-1024 {
			break
		}
		canRead = true
		if m, ok := readMeta(data[pos:min(pos+4096, len(data))]); ok {
			return int(m.pageSize), nil
		}
	}
	if canRead {
		return os.Getpagesize(), nil
	}
	return 0, errors.New("no valid meta page")
}

// readPages finds the page size and the meta bbolt would use, and returns
// a walker over the file held in data.
func readPages(data []byte) (*pageWalker, boltMeta, error) {
	ps, err := pageSizeOf(data)
	if err != nil {
		return nil, boltMeta{}, fmt.Errorf("%w: %v", errPageCheck, err)
	}
	if ps < 1024 || ps > 1<<24 || len(data) < 2*ps {
		return nil, boltMeta{}, fmt.Errorf("%w: page size %d for a file of %d bytes", errPageCheck, ps, len(data))
	}
	// bbolt takes the meta with the higher transaction id if it is valid,
	// else the other one.
	m0, ok0 := readMeta(data[0:ps])
	m1, ok1 := readMeta(data[ps : 2*ps])
	a, okA, b, okB := m0, ok0, m1, ok1
	if m1.txid > m0.txid {
		a, okA, b, okB = m1, ok1, m0, ok0
	}
	var m boltMeta
	switch {
	case okA:
		m = a
	case okB:
		m = b
	default:
		return nil, boltMeta{}, fmt.Errorf("%w: both meta pages invalid", errPageCheck)
	}
	w := &pageWalker{data: data, ps: uint64(ps), hwm: m.highWM}
	w.seen = make([]uint64, (uint64(len(data))/w.ps+64)/64)
	return w, m, nil
}

// checkPages walks the committed tree of the bbolt file held in data.
func checkPages(data []byte) error {
	w, m, err := readPages(data)
	if err != nil {
		return err
	}
	var free []byte
	if m.freelist != noFreelist {
		span, err := w.page(m.freelist, pageFreelist)
		if err != nil {
			return fmt.Errorf("%w: free list: %v", errPageCheck, err)
		}
		if free, err = freelistIDs(span); err != nil {
			return fmt.Errorf("%w: free list page %d: %v", errPageCheck, m.freelist, err)
		}
	}
	if err := w.bucket(m.root, 0); err != nil {
		return fmt.Errorf("%w: %v", errPageCheck, err)
	}
	// bbolt trusts a written free list: a page both free and in the tree
	// would be handed out again and overwritten while still in use.
	for i := 0; i+8 <= len(free); i += 8 {
		id := binary.LittleEndian.Uint64(free[i:])
		if id < 2 || id >= m.highWM {
			return fmt.Errorf("%w: free list names page %d outside [2, %d)", errPageCheck, id, m.highWM)
		}
		if id/64 >= uint64(len(w.seen)) {
			continue // past the file: never reached by the tree
		}
		if w.marked(id) {
			return fmt.Errorf("%w: page %d is free and also in use (or listed twice)", errPageCheck, id)
		}
		w.mark(id)
	}
	return nil
}

// freelistIDs returns the bytes of the page ids a free-list page holds.
func freelistIDs(span []byte) ([]byte, error) {
	idx, count := uint64(0), uint64(binary.LittleEndian.Uint16(span[10:]))
	if count == 0xFFFF {
		if len(span) < pageHeaderSize+8 {
			return nil, errors.New("count past the page")
		}
		idx, count = 1, binary.LittleEndian.Uint64(span[pageHeaderSize:])
	}
	room := uint64(len(span)-pageHeaderSize) / 8
	if idx > room || count > room-idx {
		return nil, fmt.Errorf("%d ids do not fit in the page", count)
	}
	start := pageHeaderSize + idx*8
	return span[start : start+count*8], nil
}

// pageWalker reads pages of a bbolt file through bounds checks.
type pageWalker struct {
	data []byte
	ps   uint64
	hwm  uint64   // the meta's high-water mark: every page in use is below it
	seen []uint64 // bitset of the pages reached so far
}

func (w *pageWalker) marked(id uint64) bool { return w.seen[id/64]&(1<<(id%64)) != 0 }
func (w *pageWalker) mark(id uint64)        { w.seen[id/64] |= 1 << (id % 64) }

// page returns page id and its overflow pages, checked to lie below the
// high-water mark and within the file, to carry its own id and the type
// the caller expects (0: branch or leaf), and to be reached for the first
// time (a page reached twice is a cycle or a shared subtree).
func (w *pageWalker) page(id uint64, want uint16) ([]byte, error) {
	if id < 2 || id >= w.hwm {
		return nil, fmt.Errorf("page id %d outside [2, %d)", id, w.hwm)
	}
	n := uint64(len(w.data))
	if id >= n/w.ps {
		return nil, fmt.Errorf("page %d past the end of the file (%d bytes)", id, n)
	}
	off := id * w.ps
	hdr := w.data[off : off+pageHeaderSize]
	if got := binary.LittleEndian.Uint64(hdr); got != id {
		return nil, fmt.Errorf("page %d identifies as page %d", id, got)
	}
	flags := binary.LittleEndian.Uint16(hdr[8:])
	switch {
	case want != 0 && flags != want,
		want == 0 && flags != pageBranch && flags != pageLeaf:
		return nil, fmt.Errorf("page %d has type %#x", id, flags)
	}
	last := id + uint64(binary.LittleEndian.Uint32(hdr[12:]))
	if last >= w.hwm || last >= n/w.ps {
		return nil, fmt.Errorf("page %d overflows to page %d, past the end (%d pages in use, file of %d)", id, last, w.hwm, n/w.ps)
	}
	for p := id; p <= last; p++ {
		if w.marked(p) {
			return nil, fmt.Errorf("page %d reached twice", p)
		}
		w.mark(p)
	}
	return w.data[off : (last+1)*w.ps], nil
}

// bucket walks the tree of a bucket whose root is page root.
func (w *pageWalker) bucket(root uint64, depth int) error {
	_, err := w.subtree(root, nil, nil, depth)
	return err
}

// subtree checks page id and the pages below it, its keys within
// [minKey, maxKey), the way bbolt's recursivelyCheckPageKeyOrderInternal
// does, and returns the last key of the subtree.
func (w *pageWalker) subtree(id uint64, minKey, maxKey []byte, depth int) ([]byte, error) {
	if depth > maxTreeDepth {
		return nil, fmt.Errorf("page %d: tree deeper than %d", id, maxTreeDepth)
	}
	span, err := w.page(id, 0)
	if err != nil {
		return nil, err
	}
	count := int(binary.LittleEndian.Uint16(span[10:]))
	if binary.LittleEndian.Uint16(span[8:]) == pageBranch {
		if count == 0 {
			return nil, fmt.Errorf("branch page %d is empty", id)
		}
		var lastInSubtree []byte
		running := minKey
		for i := range count {
			key, child, err := branchElem(span, i)
			if err != nil {
				return nil, fmt.Errorf("page %d: %w", id, err)
			}
			if err := keyInOrder(i, key, running, maxKey); err != nil {
				return nil, fmt.Errorf("branch page %d: %w", id, err)
			}
			next := maxKey
			if i < count-1 {
				if next, _, err = branchElem(span, i+1); err != nil {
					return nil, fmt.Errorf("page %d: %w", id, err)
				}
			}
			if lastInSubtree, err = w.subtree(child, key, next, depth+1); err != nil {
				return nil, err
			}
			running = lastInSubtree
		}
		return lastInSubtree, nil
	}
	var last []byte
	running := minKey
	for i := range count {
		flags, key, val, err := leafElem(span, i)
		if err != nil {
			return nil, fmt.Errorf("page %d: %w", id, err)
		}
		if err := keyInOrder(i, key, running, maxKey); err != nil {
			return nil, fmt.Errorf("leaf page %d: %w", id, err)
		}
		running, last = key, key
		if flags&leafBucket == 0 {
			continue
		}
		if err := w.nested(val, depth+1); err != nil {
			return nil, fmt.Errorf("bucket %q on page %d: %w", key, id, err)
		}
	}
	return last, nil
}

// nested checks a bucket stored as a leaf value: a bucket header, then
// either a root page id or, inline, a leaf page of its own.
func (w *pageWalker) nested(val []byte, depth int) error {
	if len(val) < bucketHeaderSize {
		return fmt.Errorf("bucket header of %d bytes", len(val))
	}
	if root := binary.LittleEndian.Uint64(val); root != 0 {
		return w.bucket(root, depth)
	}
	p := val[bucketHeaderSize:]
	if len(p) < pageHeaderSize {
		return fmt.Errorf("inline page of %d bytes", len(p))
	}
	if flags := binary.LittleEndian.Uint16(p[8:]); flags != pageLeaf {
		return fmt.Errorf("inline page of type %#x", flags)
	}
	var prev []byte
	for i := range int(binary.LittleEndian.Uint16(p[10:])) {
		flags, key, _, err := leafElem(p, i)
		if err != nil {
			return fmt.Errorf("inline page: %w", err)
		}
		if flags&leafBucket != 0 {
			return errors.New("inline page holds a bucket") // bbolt never inlines a bucket with buckets in it
		}
		if i > 0 && bytes.Compare(prev, key) >= 0 {
			return fmt.Errorf("inline page: key %d out of order", i)
		}
		prev = key
	}
	return nil
}

// keyInOrder is bbolt's verifyKeyOrder: the first key of a page at or above
// the key its parent gives it, each next key above the previous one (for a
// branch, above the last key of the previous child), all below maxKey.
func keyInOrder(i int, key, prev, maxKey []byte) error {
	if i == 0 && prev != nil && bytes.Compare(prev, key) > 0 {
		return fmt.Errorf("key %d %x below its parent's %x", i, key, prev)
	}
	if i > 0 && bytes.Compare(prev, key) >= 0 {
		return fmt.Errorf("key %d %x not above the previous %x", i, key, prev)
	}
	if maxKey != nil && bytes.Compare(key, maxKey) >= 0 {
		return fmt.Errorf("key %d %x not below the next key of its parent %x", i, key, maxKey)
	}
	return nil
}

// elem returns element i's fixed part, checked to lie within span.
func elem(span []byte, i int) ([]byte, error) {
	start := pageHeaderSize + uint64(i)*pageElemSize
	if start+pageElemSize > uint64(len(span)) {
		return nil, fmt.Errorf("element %d past the page", i)
	}
	return span[start : start+pageElemSize], nil
}

// within returns span[base+pos : base+pos+size], or an error if it is not
// all inside span.
func within(span []byte, base, pos, size uint64) ([]byte, bool) {
	start := base + pos
	if start > uint64(len(span)) || size > uint64(len(span))-start {
		return nil, false
	}
	return span[start : start+size], true
}

func branchElem(span []byte, i int) (key []byte, child uint64, err error) {
	e, err := elem(span, i)
	if err != nil {
		return nil, 0, err
	}
	le := binary.LittleEndian
	base := pageHeaderSize + uint64(i)*pageElemSize
	key, ok := within(span, base, uint64(le.Uint32(e[0:])), uint64(le.Uint32(e[4:])))
	if !ok {
		return nil, 0, fmt.Errorf("key of element %d past the page", i)
	}
	return key, le.Uint64(e[8:]), nil
}

func leafElem(span []byte, i int) (flags uint32, key, val []byte, err error) {
	e, err := elem(span, i)
	if err != nil {
		return 0, nil, nil, err
	}
	le := binary.LittleEndian
	base := pageHeaderSize + uint64(i)*pageElemSize
	pos, ksize, vsize := uint64(le.Uint32(e[4:])), uint64(le.Uint32(e[8:])), uint64(le.Uint32(e[12:]))
	kv, ok := within(span, base, pos, ksize+vsize)
	if !ok {
		return 0, nil, nil, fmt.Errorf("key or value of element %d past the page", i)
	}
	return le.Uint32(e[0:]), kv[:ksize], kv[ksize:], nil
}

// skips counts what salvage skipped and keeps why for the first few: a
// hostile file (a branch page of garbage spanning many overflow pages) can
// name millions of children that do not exist.
type skips struct {
	n     int
	first []error
}

// maxSkipReports bounds the reasons skips keeps, and so the report's lines
// about one bucket.
const maxSkipReports = 5

func (s *skips) add(err error) {
	s.n++
	if len(s.first) < maxSkipReports {
		s.first = append(s.first, err)
	}
}

// salvage calls fn for every entry of the bucket tree rooted at page root
// that can be read, skipping what cannot (a page failing its checks, an
// element past its page) and counting in sk why each part was skipped. Each
// page is read at most once, so a cycle ends.
func (w *pageWalker) salvage(root uint64, depth int, sk *skips, fn func(flags uint32, k, v []byte)) {
	if depth > maxTreeDepth {
		sk.add(fmt.Errorf("page %d: tree deeper than %d", root, maxTreeDepth))
		return
	}
	span, err := w.page(root, 0)
	if err != nil {
		sk.add(err)
		return
	}
	count := int(binary.LittleEndian.Uint16(span[10:]))
	branch := binary.LittleEndian.Uint16(span[8:]) == pageBranch
	for i := range count {
		if branch { // the key does not matter here, only the child's id
			e, err := elem(span, i)
			if err != nil {
				sk.add(fmt.Errorf("page %d: %w", root, err))
				return
			}
			w.salvage(binary.LittleEndian.Uint64(e[8:]), depth+1, sk, fn)
			continue
		}
		flags, k, v, err := leafElem(span, i)
		if err != nil {
			sk.add(fmt.Errorf("page %d: %w", root, err))
			continue
		}
		fn(flags, k, v)
	}
}

// salvageBucket calls fn for every readable entry of the top-level bucket
// name and returns the bucket's sequence; found is false if the tree of
// buckets holds no readable entry for it.
func (w *pageWalker) salvageBucket(m boltMeta, name []byte, fn func(flags uint32, k, v []byte)) (seq uint64, found bool, skipped skips) {
	var hdr []byte
	w.seen = make([]uint64, len(w.seen)) // every bucket walks the tree of buckets again
	w.salvage(m.root, 0, &skipped, func(flags uint32, k, v []byte) {
		if flags&leafBucket != 0 && bytes.Equal(k, name) && len(v) >= bucketHeaderSize {
			hdr = v
		}
	})
	if hdr == nil {
		return 0, false, skipped
	}
	w.seen = make([]uint64, len(w.seen))
	seq = binary.LittleEndian.Uint64(hdr[8:])
	if root := binary.LittleEndian.Uint64(hdr); root != 0 {
		w.salvage(root, 1, &skipped, fn)
		return seq, true, skipped
	}
	p := hdr[bucketHeaderSize:]
	if len(p) < pageHeaderSize {
		skipped.add(fmt.Errorf("inline page of %d bytes", len(p)))
		return seq, true, skipped
	}
	for i := range int(binary.LittleEndian.Uint16(p[10:])) {
		flags, k, v, err := leafElem(p, i)
		if err != nil {
			skipped.add(fmt.Errorf("inline page: %w", err))
			return seq, true, skipped
		}
		fn(flags, k, v)
	}
	return seq, true, skipped
}
