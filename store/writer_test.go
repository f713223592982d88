package store

import (
	"context"
	"encoding/binary"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// A lone write is committed by its caller: no hand-off to the writer
// goroutine and back on the path of a payment's journal step.
func TestLoneWriteCommitsOnTheCallersGoroutine(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true}) // no zero-fill: the writer goroutine never holds wmu
	commits := s.Stats().Commits
	appendN(t, s, KindTransactionResult, 5)
	require.Equal(t, int64(5), s.inline.Load())
	require.Equal(t, commits+5, s.Stats().Commits)
}

// Writes submitted while a commit runs are committed together right after
// it, by the writer goroutine, in one transaction.
func TestWritesQueuedDuringACommitCommitTogether(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	commits := s.Stats().Commits
	s.wmu.Lock() // a commit is running
	const n = 10
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := s.Append(context.Background(), Event{Kind: KindTransactionResult, Payload: []byte{byte(i)}})
			errs <- err
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(s.reqs) < n {
		require.True(t, time.Now().Before(deadline), "writes not queued: %d", len(s.reqs))
		time.Sleep(time.Millisecond)
	}
	s.wmu.Unlock()
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, commits+1, s.Stats().Commits, "one group commit")
	require.Zero(t, s.inline.Load())
	require.Equal(t, int64(n), s.Stats().Depth)

	// Under load (the last commit answered several callers) the next write
	// goes to the writer, which groups; once a commit answered one caller,
	// writes commit inline again.
	appendN(t, s, KindTransactionResult, 1)
	require.Zero(t, s.inline.Load(), "after a group commit, the writer commits")
	// The writer may still hold the write lock after that commit (zero-fill
	// ahead, while idle): a caller finding it held hands its write over.
	// Wait for the writer to be done, as a payment's next write would be.
	// (A kick left pending may make it take the lock once more: a few
	// tries.)
	for try := 0; try < 5 && s.inline.Load() == 0; try++ {
		s.wmu.Lock()
		s.wmu.Unlock() //nolint:staticcheck // an empty critical section: waits for the writer
		appendN(t, s, KindTransactionResult, 1)
	}
	require.Equal(t, int64(1), s.inline.Load(), "after a lone commit, the caller commits")
}

// A commit that panics inside bbolt's Commit (its rebalance reads a damaged
// page the ops never touched) fails alone: the transaction is rolled back,
// and the next write commits instead of waiting for ever on bbolt's write
// lock.
func TestPanicInCommitFailsOnlyThatCommit(t *testing.T) {
	s, path := openTest(t, Options{NoSync: true, PruneInterval: -1})
	ctx := context.Background()
	for i := range 400 {
		_, err := s.Append(ctx, Event{Kind: KindReceipt, Payload: make([]byte, 200+i%3)})
		require.NoError(t, err)
	}
	ps := int64(s.db.Info().PageSize)
	var root int64
	require.NoError(t, s.db.View(func(tx *bolt.Tx) error { root = int64(tx.Bucket(bucketOutbox).Root()); return nil }))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	page := func(id int64, n int) []byte {
		b := make([]byte, n)
		_, err := f.ReadAt(b, id*ps)
		require.NoError(t, err)
		return b
	}
	hdr := page(root, 16+2*16) // page header, then branch elements of 16 bytes: pos, ksize, pgid
	require.Equal(t, uint16(0x01), binary.LittleEndian.Uint16(hdr[8:]), "the outbox's root is a branch")
	first := int64(binary.LittleEndian.Uint64(hdr[16+8:]))
	second := int64(binary.LittleEndian.Uint64(hdr[16+16+8:]))
	// The second leaf goes bad under the running store (bbolt reads it
	// through its shared mapping).
	_, err = f.WriteAt([]byte{0xff, 0xff}, second*ps+10)
	require.NoError(t, err)
	// Emptying the first leaf makes Commit's rebalance merge it with the
	// damaged second one.
	n := binary.LittleEndian.Uint16(page(first, 16)[10:])
	for seq := uint64(1); seq < uint64(n); seq++ {
		require.NoError(t, s.AckDeferred(seq))
	}
	require.Error(t, s.Flush(ctx), "the commit reading the damaged page fails")

	done := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, Event{Kind: KindReceipt, Payload: []byte("x")})
		done <- err
	}()
	select {
	case <-done: // it may fail too (the page is still damaged), but it returns
	case <-time.After(10 * time.Second):
		t.Fatal("the next write is still waiting: the panicked commit's transaction was never rolled back")
	}
}

// A deferred write's after-commit callback that panics does not leave the
// other writes of its commit without their result.
func TestPanickingAfterCallbackLeavesTheBatchAnswered(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	require.NoError(t, s.laterThen(func(*wtx) error { return nil }, func(error) { panic("callback") }))
	done := make(chan error, 1)
	go func() {
		_, err := s.Append(context.Background(), Event{Kind: KindReceipt, Payload: []byte("x")})
		done <- err
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the write committed with the panicking callback's never returned")
	}
}
