package agent

import "sync"

// foreground counts the POS requests the Nexo server is serving (it is the
// server's nexo.InFlight), from a request's arrival until its answer is
// written, and tells the forwarder when none is (Forwarder's Foreground,
// issue 17). Every request counts, not only payments: at arrival the body
// is not read yet, and a terminal answering its POS is customer-facing
// whatever the question.
type foreground struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0; nil while n is 0
}

// Begin counts a request in.
func (f *foreground) Begin() {
	f.mu.Lock()
	if f.n == 0 {
		f.idle = make(chan struct{})
	}
	f.n++
	f.mu.Unlock()
}

// End counts a request out; an End without its Begin is ignored.
func (f *foreground) End() {
	f.mu.Lock()
	if f.n > 0 {
		f.n--
		if f.n == 0 {
			close(f.idle)
			f.idle = nil
		}
	}
	f.mu.Unlock()
}

// Busy returns nil when no request is being served, else a channel closed
// once none is.
func (f *foreground) Busy() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.idle == nil {
		return nil
	}
	return f.idle
}
