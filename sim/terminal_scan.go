package sim

import (
	"context"
	"errors"
	"net/http"

	"github.com/termagent/termagent/ppaas"
)

// ScanFunc hands a code the virtual terminal's scanner read to the agent
// driving terminal serial, and returns the POI transaction that took it. The
// harness wires it to the agent (the simulator knows no agent): in-process, or
// the agent's admin POST /scan, as a real terminal's scanner process does.
type ScanFunc func(ctx context.Context, serial, code string) (string, error)

// ErrNoScanner is the virtual terminal's answer when no agent takes scans.
var ErrNoScanner = errors.New("no agent takes this terminal's scans")

// SetScanner sets where the virtual terminals' scanned codes go.
func (t *Terminals) SetScanner(f ScanFunc) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.scanner = f
}

// Scan is the virtual terminal's scanner: it reads code (checked as the
// platform checks scannedPaymentId) and hands it to the agent.
func (t *Terminals) Scan(ctx context.Context, serial, code string) (string, error) {
	if err := ppaas.CheckScannedPaymentID(code); err != nil {
		return "", err
	}
	t.mu.Lock()
	f := t.scanner
	t.mu.Unlock()
	if f == nil {
		return "", ErrNoScanner
	}
	return f(ctx, serial, code)
}

// handleTerminalScan is POST /terminal/{serial}/scan {"code":"…"}: the page's
// scan field.
func (p *PPaaS) handleTerminalScan(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Code string `json:"code"`
	}
	if err := decodeControl(w, r, 1<<10, &in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "scan: body must be {\"code\":\"…\"} of at most 1 KiB: " + err.Error()})
		return
	}
	ctid, err := p.terminals.Scan(r.Context(), r.PathValue("serial"), in.Code)
	switch {
	case errors.Is(err, ppaas.ErrScannedPaymentID):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
	case errors.Is(err, ErrNoScanner):
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	case err != nil:
		writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
	default:
		writeJSON(w, http.StatusAccepted, map[string]string{"clientTransactionId": ctid})
	}
}
