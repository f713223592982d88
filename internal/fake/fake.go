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

// SeenEvent records id and reports whether it had been recorded before.
func (l *EventLog) SeenEvent(_ context.Context, id string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string]struct{}{}
	}
	if _, ok := l.seen[id]; ok {
		return true, nil
	}
	l.seen[id] = struct{}{}
	return false, nil
}
