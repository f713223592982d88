// Package fake holds in-memory stand-ins for the agent's durable stores, for
// the tests of several packages. Being internal and imported by tests only, it
// never ships in the agent or simulator binaries (TestFakesStayOutOfTheBinaries
// checks it).
package fake

import (
	"context"
	"sync"
)

// EventLog is an in-memory qr.EventLog: it de-duplicates events for as long as
// it lives (the agent's is durable, in its bbolt store).
type EventLog struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

// SeenEvent reports whether id was marked.
func (l *EventLog) SeenEvent(_ context.Context, id string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.seen[id]
	return ok, nil
}

// MarkEvent marks id.
func (l *EventLog) MarkEvent(_ context.Context, id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string]struct{}{}
	}
	l.seen[id] = struct{}{}
	return nil
}
