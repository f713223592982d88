package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/termagent/termagent/display"
	"github.com/termagent/termagent/internal/webhook"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
)

// Screens receives what the terminal display should show. The agent's display
// adapters feed the payment engine's and the POS's screens into one.
type Screens interface {
	ShowScreen(ctx context.Context, s display.Screen) error
}

// ScreenFunc adapts a function to Screens.
type ScreenFunc func(ctx context.Context, s display.Screen) error

// ShowScreen implements Screens.
func (f ScreenFunc) ShowScreen(ctx context.Context, s display.Screen) error { return f(ctx, s) }

// displayAdapter is the terminal display seen by the QR engine (qr.Display) and by
// the Nexo server (nexo.Display).
type displayAdapter struct {
	out Screens
	now func() time.Time
}

// Show implements qr.Display: it draws the engine's QR code and stamps the
// screen with the agent's time.
func (d displayAdapter) Show(ctx context.Context, s display.Screen) error {
	s, err := s.Drawn()
	if err != nil {
		return err
	}
	s.Time = d.now()
	return d.out.ShowScreen(ctx, s)
}

// nexoDisplay shows the POS's Display requests.
type nexoDisplay displayAdapter

// Show implements nexo.Display. A QR code output (OutputFormat BarCode) is
// drawn on the screen with the texts.
func (d nexoDisplay) Show(ctx context.Context, outputs []nexo.DisplayOutput) error {
	var lines []string
	sc := display.Screen{State: display.Message, Time: d.now()}
	for _, o := range outputs {
		lines = append(lines, o.Text...)
		if o.QRCode != "" && sc.QRPayload == "" {
			png, err := qr.PNG(o.QRCode, qr.LevelMedium, displayQRSize)
			if err != nil {
				return nexo.Errorf(nexo.UnavailableDevice, "the QR code cannot be drawn: %v", err)
			}
			sc.QRPayload, sc.QRPNG = o.QRCode, png
		}
	}
	sc.Message = strings.Join(lines, "\n")
	return d.out.ShowScreen(ctx, sc)
}

// displayQRSize is the PNG size of a QR code the POS asks to show.
const displayQRSize = 256

// RemoteDisplay posts screens to a display URL (the virtual terminal of the
// simulator: http://127.0.0.1:9080/terminal/{serial}/display).
type RemoteDisplay struct {
	URL    string
	Client *http.Client
}

// ShowScreen implements Screens.
func (r RemoteDisplay) ShowScreen(ctx context.Context, s display.Screen) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode screen: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := webhook.Post(ctx, r.Client, r.URL, "application/json", b, nil); err != nil {
		return fmt.Errorf("post screen to the display: %w", err)
	}
	return nil
}

// logDisplay writes screens to the log: the display of a headless agent.
type logDisplay struct{ log *slog.Logger }

func (l logDisplay) ShowScreen(_ context.Context, s display.Screen) error {
	l.log.Info("display", "state", s.State, "message", s.Message, "amount", s.Amount, "currency", s.Currency, "qr", s.QRPayload != "",
		"poi_transaction", s.ClientTransactionID, "ppaas_transaction", s.TransactionID)
	return nil
}

// multiDisplay shows every screen on each display; a failing display does not
// stop the others (the payment goes on without it).
type multiDisplay struct {
	outs []Screens
	log  *slog.Logger
}

func (m multiDisplay) ShowScreen(ctx context.Context, s display.Screen) error {
	for _, o := range m.outs {
		if err := o.ShowScreen(ctx, s); err != nil {
			m.log.Warn("display failed", "err", err)
		}
	}
	return nil
}

// asyncDisplay takes the display off the payment path: Show records the screen
// and returns, and Run renders (the QR PNG costs ~1.5 ms of CPU) and shows it in its
// own goroutine. A new payment screen is drawn one display frame after it was
// set, as a screen refreshes; one superseded within the frame is never drawn (an
// instantly approved payment does not pay for a QR code nobody would see). A final
// screen (approved, declined, ...) is drawn at once.
type asyncDisplay struct {
	inner displayAdapter
	log   *slog.Logger

	mu     sync.Mutex
	latest *display.Screen
	urgent bool // latest is final: no frame wait
	wake   chan struct{}
}

// displayFrame is how long a change waits to be drawn: one refresh of a 60 Hz
// display, far below what a person notices.
const displayFrame = 16 * time.Millisecond

func newAsyncDisplay(inner displayAdapter, log *slog.Logger) *asyncDisplay {
	return &asyncDisplay{inner: inner, log: log, wake: make(chan struct{}, 1)}
}

// Show implements qr.Display.
func (d *asyncDisplay) Show(_ context.Context, s display.Screen) error {
	d.mu.Lock()
	d.latest, d.urgent = &s, ppaas.State(s.State).Final()
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
	return nil
}

// Run shows the latest screen after each change until ctx ends.
func (d *asyncDisplay) Run(ctx context.Context) error {
	frame := time.NewTimer(displayFrame)
	frame.Stop()
	defer frame.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
		}
		d.mu.Lock()
		urgent := d.urgent
		d.mu.Unlock()
		if !urgent {
			frame.Reset(displayFrame)
		wait:
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-frame.C:
					break wait
				case <-d.wake: // a newer screen: a final one is drawn now
					d.mu.Lock()
					urgent = d.urgent
					d.mu.Unlock()
					if urgent {
						frame.Stop()
						break wait
					}
				}
			}
		}
		d.mu.Lock()
		s := d.latest
		d.latest = nil
		d.mu.Unlock()
		if s == nil {
			continue
		}
		if err := d.inner.Show(ctx, *s); err != nil {
			d.log.Warn("display failed", "err", err)
		}
	}
}
