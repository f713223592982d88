package sim

import (
	"crypto/tls"
	"log/slog"
	"net"
	"sync"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// brokerListener is the embedded broker's TLS listener. Unlike mochi's own TCP
// listener it owns every connection it accepted: Close closes them all and waits
// for their handlers. A device caught between TCP accept and its MQTT CONNECT is
// not yet a broker client, so mochi's Close neither closes nor times it out and
// would wait for it forever (and race the late registration).
type brokerListener struct {
	id, addr string
	tls      *tls.Config

	ln       net.Listener
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
	handlers sync.WaitGroup
}

var _ listeners.Listener = (*brokerListener)(nil)

func newBrokerListener(id, addr string, cfg *tls.Config) *brokerListener {
	return &brokerListener{id: id, addr: addr, tls: cfg, conns: map[net.Conn]struct{}{}}
}

func (l *brokerListener) Init(*slog.Logger) error {
	ln, err := tls.Listen("tcp", l.addr, l.tls)
	if err != nil {
		return err
	}
	l.ln = ln
	return nil
}

func (l *brokerListener) Serve(establish listeners.EstablishFn) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			return
		}
		l.conns[c] = struct{}{}
		l.handlers.Add(1)
		l.mu.Unlock()
		go func() {
			defer l.handlers.Done()
			_ = establish(l.id, c) // the broker logs client errors itself
			l.mu.Lock()
			delete(l.conns, c)
			l.mu.Unlock()
			c.Close()
		}()
	}
}

func (l *brokerListener) ID() string       { return l.id }
func (l *brokerListener) Protocol() string { return "tcp" }

func (l *brokerListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

// Close stops accepting, disconnects the broker's clients, closes every
// connection still being established, and waits for their handlers.
func (l *brokerListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	closeClients(l.id)
	if l.ln != nil {
		_ = l.ln.Close()
	}
	l.mu.Lock()
	for c := range l.conns {
		_ = c.Close()
	}
	l.mu.Unlock()
	l.handlers.Wait()
}
