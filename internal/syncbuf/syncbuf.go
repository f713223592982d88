// Package syncbuf is a bytes buffer a running process (or goroutines) and its
// reader share: the output of a child process kept to explain a failure.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer is an output sink a running process (or an agent's
// goroutines) and the test share. With Max set it drops what is written once
// it holds Max bytes (the write that crosses Max is kept whole): enough to
// explain a failure, bounded for a long run.
type Buffer struct {
	Max int
	mu  sync.Mutex
	b   bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Max > 0 && l.b.Len() >= l.Max {
		return len(p), nil
	}
	return l.b.Write(p)
}

// String is what was written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
