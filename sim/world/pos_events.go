package world

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/termagent/termagent/nexo"
)

// POSEvents is the POS's event URL in a world: it takes the EventNotifications
// the agent sends (Initialised, Shutdown, after-sale updates) and keeps them,
// every delivery counted, so a scenario can check a POS hears of an update
// exactly once.
type POSEvents struct {
	srv *http.Server
	ln  net.Listener

	mu     sync.Mutex
	events []ReceivedEvent
}

// ReceivedEvent is one EventNotification delivered to the POS.
type ReceivedEvent struct {
	ServiceID string // the notification's MessageHeader.ServiceID
	SaleID    string
	Event     nexo.EventNotification
}

// maxPOSEvents bounds what a world keeps (a scenario sees a few).
const maxPOSEvents = 1024

// startPOSEvents listens on a free loopback port.
func startPOSEvents() (*POSEvents, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("POS event URL: %w", err)
	}
	p := &POSEvents{ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /events", p.handle)
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = p.srv.Serve(ln) }() // owned by the world: Close stops it
	return p, nil
}

// URL is the event URL the agent is configured with.
func (p *POSEvents) URL() string { return "http://" + p.ln.Addr().String() + "/events" }

func (p *POSEvents) handle(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req, err := nexo.JSONCodec{}.DecodeRequest(b)
	if err != nil || req.Event == nil {
		http.Error(w, fmt.Sprintf("not an EventNotification: %v", err), http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	if len(p.events) < maxPOSEvents {
		p.events = append(p.events, ReceivedEvent{ServiceID: req.Header.ServiceID, SaleID: req.Header.SaleID, Event: *req.Event})
	}
	p.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// Events returns the notifications received so far, in order.
func (p *POSEvents) Events() []ReceivedEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]ReceivedEvent(nil), p.events...)
}

// Matching returns the received notifications of type event (any when empty)
// whose EventDetails contain every one of parts.
func (p *POSEvents) Matching(event string, parts ...string) []ReceivedEvent {
	var out []ReceivedEvent
	for _, e := range p.Events() {
		if event != "" && e.Event.EventToNotify != event {
			continue
		}
		ok := true
		for _, s := range parts {
			if !strings.Contains(e.Event.EventDetails, s) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, e)
		}
	}
	return out
}

// Close stops the listener.
func (p *POSEvents) Close(ctx context.Context) error {
	if err := p.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("POS event URL: %w", err)
	}
	return nil
}
