package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// clock is the simulator's clock: the configured one plus an offset that the
// control API changes at run time (clock skew). Tokens, events and the API's
// Date header all read it, so a device sees one consistent platform time.
type clock struct {
	base   func() time.Time
	offset atomic.Int64 // nanoseconds
}

func (c *clock) now() time.Time { return c.base().Add(time.Duration(c.offset.Load())) }

// Fault is one injected failure on the mTLS API: requests that match every
// condition set — path starting with Path, ending with Suffix, method Method,
// about the QR transaction Transaction or the one whose order id is OrderID —
// get Status, or the connection reset, after Latency, for the next Count
// requests (0 = until cleared). At least one of Path, Suffix, Transaction and
// OrderID is set. Rules are tried in the order they were added; the first
// match applies, so a rule with a Count can be followed by another that takes
// over once it is used up. Its JSON is the control API's (faultJSON).
type Fault struct {
	Path   string
	Suffix string // e.g. "/refund" apart from "/cancel"
	Method string
	// Transaction aims the fault at one PPaaS transaction id: the requests on
	// /qrcode-payment/v1/transactions/{id}[/…] (status reads, cancel, refund).
	Transaction string
	// OrderID aims it at the transaction created with this order.orderId (the
	// simulator's POS sends "ORDER-" + the payment's ServiceID), resolved at
	// each request, so the fault can be set before the payment exists.
	OrderID string
	Status  int
	Reset   bool
	Latency time.Duration // JSON: "latency":"2s", or "latencyMs":2000
	Count   int
	Hits    int // requests answered so far
}

// Validate reports what makes a fault apply to nothing or do nothing.
func (f Fault) Validate() error {
	switch {
	case f.Path == "" && f.Suffix == "" && f.Transaction == "" && f.OrderID == "":
		return errors.New("fault: set path, suffix, transactionId or orderId (what it applies to)")
	case f.Path != "" && !strings.HasPrefix(f.Path, "/"):
		return errors.New("fault: path must start with /")
	case f.Suffix != "" && !strings.HasPrefix(f.Suffix, "/"):
		return errors.New("fault: suffix must start with /")
	case f.Status != 0 && (f.Status < 100 || f.Status > 599):
		return errors.New("fault: status must be an HTTP status code")
	case f.Status == 0 && !f.Reset && f.Latency <= 0:
		return errors.New("fault: set status, reset or latency (what happens)")
	case f.Count < 0 || f.Latency < 0:
		return errors.New("fault: count and latency must not be negative")
	}
	return nil
}

type faults struct {
	clock *clock
	// orderOf resolves a PPaaS transaction id to its order id (OrderID rules).
	orderOf func(id string) (string, bool)
	mu      sync.Mutex
	rules   []*Fault
}

func newFaults(c *clock) *faults { return &faults{clock: c} }

// transactionInPath is the {id} of /qrcode-payment/v1/transactions/{id}[/…].
func transactionInPath(path string) string {
	const prefix = "/qrcode-payment/v1/transactions/"
	rest, ok := strings.CutPrefix(path, prefix)
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, "/")
	return id
}

// matches reports whether rule applies to r. Called with f.mu held.
func (f *faults) matches(rule *Fault, r *http.Request) bool {
	path := r.URL.Path
	if !strings.HasPrefix(path, rule.Path) || !strings.HasSuffix(path, rule.Suffix) ||
		(rule.Method != "" && !strings.EqualFold(rule.Method, r.Method)) {
		return false
	}
	if rule.Transaction == "" && rule.OrderID == "" {
		return true
	}
	id := transactionInPath(path)
	if id == "" || (rule.Transaction != "" && id != rule.Transaction) {
		return false
	}
	if rule.OrderID != "" {
		if f.orderOf == nil {
			return false
		}
		order, ok := f.orderOf(id)
		return ok && order == rule.OrderID
	}
	return true
}

// Add installs a fault.
func (f *faults) add(r Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, &r)
}

func (f *faults) match(r *http.Request) (Fault, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, rule := range f.rules {
		if !f.matches(rule, r) {
			continue
		}
		rule.Hits++
		hit := *rule
		if rule.Count > 0 && rule.Hits >= rule.Count {
			f.rules = append(f.rules[:i], f.rules[i+1:]...)
		}
		return hit, true
	}
	return Fault{}, false
}

// wrap applies the faults in front of the API handlers.
func (f *faults) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The platform's time as devices see it (they correct their clocks by it).
		w.Header().Set("Date", f.clock.now().UTC().Format(http.TimeFormat))
		rule, ok := f.match(r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		if rule.Latency > 0 {
			t := time.NewTimer(rule.Latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		switch {
		case rule.Reset:
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
					return
				}
			}
			panic(http.ErrAbortHandler) // HTTP/2: abort the stream
		case rule.Status != 0 && strings.HasPrefix(r.URL.Path, "/qrcode-payment/"):
			// The payment API's own error body, so the device cannot tell
			// an injected answer from a real one.
			apiError(w, rule.Status, apiErrorCode(rule.Status), "injected fault: "+http.StatusText(rule.Status))
		case rule.Status != 0:
			writeJSON(w, rule.Status, map[string]string{"error": "injected_fault", "error_description": http.StatusText(rule.Status)})
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// apiErrorCode is the payment API's error code for an HTTP status.
func apiErrorCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_request"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusConflict:
		return "conflict"
	case http.StatusUnprocessableEntity:
		return "unprocessable"
	}
	if status >= 500 {
		return "unavailable"
	}
	return strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_"))
}

// faultJSON is a Fault on the control API: GET /control/faults lists
// faults in this form and POST /control/faults takes it back, one object or
// the list. Latency is a Go duration string ("2s", "150ms"); latencyMs
// (milliseconds) is still read for the clients written before it. Hits are
// counted by the simulator: read back, ignored by POST.
type faultJSON struct {
	Path        string    `json:"path,omitempty"`
	Suffix      string    `json:"suffix,omitempty"`
	Method      string    `json:"method,omitempty"`
	Transaction string    `json:"transactionId,omitempty"`
	OrderID     string    `json:"orderId,omitempty"`
	Status      int       `json:"status,omitempty"`
	Reset       bool      `json:"reset,omitempty"`
	Latency     *Duration `json:"latency,omitempty"`
	LatencyMS   *int64    `json:"latencyMs,omitempty"`
	Count       int       `json:"count,omitempty"`
	Hits        int       `json:"hits"`
}

// MarshalJSON writes f in the control API's form (latency as "2s").
func (f Fault) MarshalJSON() ([]byte, error) {
	out := faultJSON{Path: f.Path, Suffix: f.Suffix, Method: f.Method, Transaction: f.Transaction, OrderID: f.OrderID,
		Status: f.Status, Reset: f.Reset, Count: f.Count, Hits: f.Hits}
	if f.Latency != 0 {
		d := Duration(f.Latency)
		out.Latency = &d
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads the control API's form and refuses a field it does not
// know, naming it.
func (f *Fault) UnmarshalJSON(b []byte) error {
	var in faultJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return fmt.Errorf("fault: %w", err)
	}
	lat := time.Duration(0)
	switch {
	case in.Latency != nil && in.LatencyMS != nil:
		return errors.New("fault: set latency (a duration such as \"2s\") or latencyMs (milliseconds), not both")
	case in.Latency != nil:
		lat = in.Latency.D()
	case in.LatencyMS != nil:
		lat = time.Duration(*in.LatencyMS) * time.Millisecond
	}
	*f = Fault{Path: in.Path, Suffix: in.Suffix, Method: in.Method, Transaction: in.Transaction, OrderID: in.OrderID,
		Status: in.Status, Reset: in.Reset, Latency: lat, Count: in.Count, Hits: in.Hits}
	return nil
}

// handleSet is POST /control/faults: one fault, or a list of them (what GET
// returns); nothing is installed unless every one is valid.
func (f *faults) handleSet(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "fault: " + err.Error()})
		return
	}
	list := bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("["))
	var rules []Fault
	if list {
		err = json.Unmarshal(body, &rules)
	} else {
		rules = make([]Fault, 1)
		err = json.Unmarshal(body, &rules[0])
	}
	if err != nil {
		msg := strings.ReplaceAll(err.Error(), "json: ", "")
		if !strings.HasPrefix(msg, "fault: ") {
			msg = "fault: " + msg
		}
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": msg})
		return
	}
	for i := range rules {
		rules[i].Hits = 0 // a new rule has answered nothing yet
		if err := rules[i].Validate(); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
	}
	for _, rule := range rules {
		f.add(rule)
	}
	if list {
		writeJSON(w, http.StatusCreated, rules)
		return
	}
	writeJSON(w, http.StatusCreated, rules[0])
}

func (f *faults) clear() {
	f.mu.Lock()
	f.rules = nil
	f.mu.Unlock()
}

func (f *faults) handleClear(w http.ResponseWriter, _ *http.Request) {
	f.clear()
	w.WriteHeader(http.StatusNoContent)
}

func (f *faults) handleList(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	out := make([]Fault, 0, len(f.rules))
	for _, r := range f.rules {
		out = append(out, *r)
	}
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// AddFault installs a fault (for in-process tests and scenarios); see
// Fault.Validate.
func (p *PPaaS) AddFault(f Fault) { p.faults.add(f) }

// ClearFaults removes every HTTP fault.
func (p *PPaaS) ClearFaults() { p.faults.clear() }

// ExpireTokens makes every token issued so far invalid.
func (p *PPaaS) ExpireTokens() { p.issuer.expireAll() }

// SetClockSkew sets the simulator's clock offset from its configured clock
// (tokens, events, the Date header); 0 removes the skew.
func (p *PPaaS) SetClockSkew(d time.Duration) { p.clock.offset.Store(int64(d)) }

// ClockSkew is the simulator's current clock offset.
func (p *PPaaS) ClockSkew() time.Duration { return time.Duration(p.clock.offset.Load()) }

// RevokeCredentials revokes (revoked true) or restores a device's merchant
// credentials: while revoked, its tokens and its client secret are refused.
func (p *PPaaS) RevokeCredentials(serial string, revoked bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, ok := p.merchant[serial]
	if !ok {
		return fmt.Errorf("revoke credentials: unknown serial %s", serial)
	}
	m.Revoked = revoked
	p.merchant[serial] = m
	return nil
}

// handleClock reads or sets the clock skew: {"skewMs": n}.
func (p *PPaaS) handleClock(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		var in struct {
			SkewMS *int64 `json:"skewMs"`
		}
		if err := decodeControl(w, r, 1024, &in); err != nil || in.SkewMS == nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "clock: body {\"skewMs\": n} expected" + errSuffix(err)})
			return
		}
		p.SetClockSkew(time.Duration(*in.SkewMS) * time.Millisecond)
	}
	writeJSON(w, http.StatusOK, map[string]any{"skewMs": p.ClockSkew().Milliseconds(), "now": p.cfg.Now().UTC()})
}
