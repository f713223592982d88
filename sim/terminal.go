package sim

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/termagent/termagent/display"
)

// Terminals is the virtual terminal hub: the latest screen of every simulated
// terminal and the live subscribers of each. A screen reaches it in the display
// JSON form (POST /terminal/{serial}/display, what agent.RemoteDisplay sends) or
// from an in-process agent, and the page receives it in the same form over
// server-sent events.
type Terminals struct {
	mu      sync.Mutex
	screens map[string]display.Screen
	subs    map[string]map[chan display.Screen]struct{}
	now     func() time.Time
}

func newTerminals(now func() time.Time) *Terminals {
	return &Terminals{screens: map[string]display.Screen{}, subs: map[string]map[chan display.Screen]struct{}{}, now: now}
}

// watchBuffer is how many screens a watcher may lag behind before it misses
// the oldest: enough for a payment's whole sequence of screens.
const watchBuffer = 16

// Show sets a terminal's screen and pushes it to the pages watching it. A
// watcher more than watchBuffer screens behind misses the oldest rather than
// block the agent.
func (t *Terminals) Show(s display.Screen) {
	if s.Time.IsZero() {
		s.Time = t.now()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.screens[s.Serial] = s
	for ch := range t.subs[s.Serial] {
		select {
		case ch <- s:
		default:
			select { // drop the oldest screen and keep the newest
			case <-ch:
			default:
			}
			ch <- s
		}
	}
}

// Current returns a terminal's latest screen.
func (t *Terminals) Current(serial string) (display.Screen, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.screens[serial]
	return s, ok
}

// Watch returns a channel of the terminal's screens, starting with the current one,
// closed when ctx ends.
func (t *Terminals) Watch(ctx context.Context, serial string) <-chan display.Screen {
	ch := make(chan display.Screen, watchBuffer)
	t.mu.Lock()
	if t.subs[serial] == nil {
		t.subs[serial] = map[chan display.Screen]struct{}{}
	}
	t.subs[serial][ch] = struct{}{}
	if s, ok := t.screens[serial]; ok {
		ch <- s
	} else {
		ch <- display.Screen{Serial: serial, State: display.Idle, Time: t.now()}
	}
	t.mu.Unlock()
	context.AfterFunc(ctx, func() {
		t.mu.Lock()
		delete(t.subs[serial], ch)
		close(ch) // under mu: Show never sends on it again
		t.mu.Unlock()
	})
	return ch
}

func (t *Terminals) serials() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.screens))
	for s := range t.screens {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

//go:embed terminal.html
var terminalPage string

func (p *PPaaS) terminalRoutes() {
	page := template.Must(template.New("terminal").Parse(terminalPage))
	p.control.HandleFunc("GET /terminal/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html><title>Virtual terminals</title><h1>Virtual terminals</h1><ul>")
		for _, s := range p.terminals.serials() {
			fmt.Fprintf(w, `<li><a href="/terminal/%s">%s</a></li>`, template.HTMLEscapeString(s), template.HTMLEscapeString(s))
		}
		fmt.Fprint(w, "</ul>")
	})
	p.control.HandleFunc("GET /terminal/{serial}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'")
		_ = page.Execute(w, map[string]string{"Serial": r.PathValue("serial")})
	})
	p.control.HandleFunc("GET /terminal/{serial}/events", p.handleTerminalEvents)
	p.control.HandleFunc("POST /terminal/{serial}/display", func(w http.ResponseWriter, r *http.Request) {
		var s display.Screen
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&s); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "display: " + err.Error()})
			return
		}
		s.Serial = r.PathValue("serial")
		p.terminals.Show(s)
		w.WriteHeader(http.StatusNoContent)
	})
	p.control.HandleFunc("GET /terminal/{serial}/screen", func(w http.ResponseWriter, r *http.Request) {
		s, ok := p.terminals.Current(r.PathValue("serial"))
		if !ok {
			s = display.Screen{Serial: r.PathValue("serial"), State: display.Idle}
		}
		writeJSON(w, http.StatusOK, s)
	})
}

// handleTerminalEvents streams a terminal's screens as server-sent events.
func (p *PPaaS) handleTerminalEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	rc := http.NewResponseController(w)
	ch := p.terminals.Watch(r.Context(), r.PathValue("serial"))
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-p.closing:
			return
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
		case s, ok := <-ch:
			if !ok {
				return
			}
			b, _ := json.Marshal(s)
			fmt.Fprintf(w, "event: screen\ndata: %s\n\n", b)
		}
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		fl.Flush()
	}
}

// Terminals is the virtual terminal hub (for in-process agents and the demo).
func (p *PPaaS) Terminals() *Terminals { return p.terminals }

// TerminalURL is the virtual terminal page of a device.
func (p *PPaaS) TerminalURL(serial string) string { return p.ControlURL() + "/terminal/" + serial }
