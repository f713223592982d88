package qr

import (
	"context"
	"fmt"
)

// Connected reports whether the subscription is active now.
func (s *Subscriber) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.up
}

// WaitDown blocks until the subscription is lost or ctx is done.
func (s *Subscriber) WaitDown(ctx context.Context) error {
	for {
		s.mu.Lock()
		up, ch := s.up, s.changed
		s.mu.Unlock()
		if !up {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for mqtt disconnection: %w", ctx.Err())
		case <-ch:
		}
	}
}
