package store

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// openTest opens a store in a fresh temp dir and closes it at cleanup.
func openTest(t testing.TB, opts Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "termagent.db")
	s, err := Open(context.Background(), path, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func reopen(t testing.TB, s *Store, opts Options) *Store {
	t.Helper()
	require.NoError(t, s.Close())
	s2, err := Open(context.Background(), s.Path(), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s2.Close() })
	return s2
}

func appendN(t testing.TB, s *Store, kind Kind, n int) []Record {
	t.Helper()
	out := make([]Record, 0, n)
	for i := range n {
		r, err := s.Append(context.Background(), Event{Kind: kind, Payload: []byte{byte(i), byte(i >> 8)}})
		require.NoError(t, err)
		out = append(out, r)
	}
	return out
}
