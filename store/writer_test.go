package store

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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
}
