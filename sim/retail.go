package sim

// issue 16: the simulator's Retail API, the cloud path from a POS to a
// terminal. Devices keep a websocket to the relay (mutual TLS + the device
// token, as every device API); a cloud POS lists the store's devices, opens a
// session to one and sends Nexo v5 messages, which the relay forwards to the
// device and answers synchronously, or asynchronously to the session's
// webhook. Every path and name here is ours: the PPaaS Retail API's wire
// shape is not public (see the README).

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/termagent/termagent/internal/webhook"
	"github.com/termagent/termagent/ppaas"
)

// Retail API paths (assumptions).
const (
	RetailRelayPath    = "/retail/v1/relay"    // device websocket
	RetailDevicesPath  = "/retail/v1/devices"  // GET: the store's devices
	RetailSessionsPath = "/retail/v1/sessions" // POST: open; /{id}/messages, DELETE /{id}
	// RetailDefaultKey is the simulator's POS API key unless RetailConfig
	// sets one (the real platform authenticates the POS with OAuth).
	RetailDefaultKey = "sim-retail-key"
)

// RetailConfig configures the Retail API (zero values: defaults).
type RetailConfig struct {
	// Key is the bearer key a POS presents (default RetailDefaultKey).
	Key string
	// RelayTimeout bounds the wait for a device's answer (default 6 min:
	// longer than a payment).
	RelayTimeout time.Duration
	// MaxAsync bounds the mode=async exchanges waiting for their answer
	// (default 64); beyond it a message is refused with 429 and
	// Retry-After, before it is relayed.
	MaxAsync int
	// WebhookHosts are the hosts (names or IPs, as written in the URL)
	// webhooks may be posted to besides loopback. Empty (the default): a
	// session's webhookUrl must name a loopback address (127.0.0.0/8, ::1,
	// localhost), and the webhook client dials loopback addresses only.
	WebhookHosts []string
}

// RetailFaults are the relay faults, each consumed by the next messages
// relayed (set through POST /control/retail/faults).
type RetailFaults struct {
	// DropAfterRelay: close the device's connection right after relaying
	// this many next messages (the device gets them; their answers find no
	// connection).
	DropAfterRelay int `json:"dropAfterRelay"`
	// DropAnswer: lose the next this many answers with the connection (the
	// relay closes it as the answer arrives, before taking it): the device
	// must deliver them again when it reconnects.
	DropAnswer int `json:"dropAnswer"`
	// Duplicate: deliver this many next messages twice.
	Duplicate int `json:"duplicate"`
	// SlowDevice delays every relayed message by this long (0: off).
	SlowDevice Duration `json:"slowDevice"`
}

// RetailStats counts the relay's work.
type RetailStats struct {
	Connects   int `json:"connects"`   // device connections accepted
	Relayed    int `json:"relayed"`    // messages sent to devices (duplicates included)
	Answers    int `json:"answers"`    // answers received
	Late       int `json:"late"`       // answers for an exchange nobody waits for any more
	Lost       int `json:"lost"`       // exchanges failed by a lost connection
	Webhooks   int `json:"webhooks"`   // async answers posted
	WebhookErr int `json:"webhookErr"` // async answers the POS did not take
}

// RetailDevice is one device of the store as the POS sees it.
type RetailDevice struct {
	DeviceID       string   `json:"deviceId"` // the POIID
	Serial         string   `json:"serial"`
	Model          string   `json:"model"`
	Connected      bool     `json:"connected"`
	PaymentMethods []string `json:"paymentMethods"`
}

// RetailSession is a POS-to-device session.
type RetailSession struct {
	SessionID   string `json:"sessionId"`
	DeviceID    string `json:"deviceId"`
	SaleID      string `json:"saleId"`
	WebhookURL  string `json:"webhookUrl,omitempty"`
	MessagesURL string `json:"messagesUrl"`
	serial      string
}

type relayDevice struct {
	serial, model string
	conn          *websocket.Conn // nil while disconnected
}

type relayWaiter struct {
	serial string
	answer chan []byte   // buffered 1
	lost   chan struct{} // closed when the connection is lost (sync only)
	async  bool
}

type retail struct {
	p   *PPaaS
	cfg RetailConfig

	mu       sync.Mutex
	devices  map[string]*relayDevice // by serial
	sessions map[string]*RetailSession
	waiters  map[string]*relayWaiter // by relay id
	faults   RetailFaults
	stats    RetailStats
	seq      uint64
	hooks    sync.WaitGroup // async exchanges in flight (owned: stopped by closeRetail)
	async    int            // async exchanges in flight (≤ cfg.MaxAsync)
	ctx      context.Context
	stop     context.CancelFunc // ends the async exchanges at Close
	webhook  *http.Client
}

func (p *PPaaS) retailRoutes() {
	rt := &retail{p: p, cfg: p.cfg.Retail, devices: map[string]*relayDevice{}, sessions: map[string]*RetailSession{},
		waiters: map[string]*relayWaiter{}}
	rt.ctx, rt.stop = context.WithCancel(context.Background())
	rt.webhook = newWebhookClient(rt.cfg.WebhookHosts)
	if rt.cfg.MaxAsync <= 0 {
		rt.cfg.MaxAsync = 64
	}
	if rt.cfg.Key == "" {
		rt.cfg.Key = RetailDefaultKey
	}
	if rt.cfg.RelayTimeout <= 0 {
		rt.cfg.RelayTimeout = 6 * time.Minute
	}
	p.retail = rt
	p.mux.HandleFunc("GET "+RetailRelayPath, p.deviceWithCert(rt.handleRelay))
	p.mux.HandleFunc("GET "+RetailDevicesPath, rt.pos(rt.handleDevices))
	p.mux.HandleFunc("POST "+RetailSessionsPath, rt.pos(rt.handleOpen))
	p.mux.HandleFunc("DELETE "+RetailSessionsPath+"/{id}", rt.pos(rt.handleClose))
	p.mux.HandleFunc("POST "+RetailSessionsPath+"/{id}/messages", rt.pos(rt.handleMessage))
	p.control.HandleFunc("POST /control/retail/faults", rt.handleFaults)
	p.control.HandleFunc("GET /control/retail", func(w http.ResponseWriter, _ *http.Request) {
		rt.mu.Lock()
		defer rt.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"stats": rt.stats, "faults": rt.faults})
	})
}

// RetailStats returns the relay's counters.
func (p *PPaaS) RetailStats() RetailStats {
	p.retail.mu.Lock()
	defer p.retail.mu.Unlock()
	return p.retail.stats
}

// SetRetailFaults replaces the relay faults.
func (p *PPaaS) SetRetailFaults(f RetailFaults) {
	p.retail.mu.Lock()
	p.retail.faults = f
	p.retail.mu.Unlock()
}

// RetailURL is the Retail API's base for a POS, e.g. https://127.0.0.1:9021.
func (p *PPaaS) RetailURL() string { return p.URL() }

// RelayURL is where devices connect: the agent's cloud_url.
func (p *PPaaS) RelayURL() string { return "wss://" + p.apiLn.Addr().String() + RetailRelayPath }

// closeRetail ends the async exchanges and waits for them (Close has ended
// the streams).
func (p *PPaaS) closeRetail() {
	p.retail.stop()
	p.retail.mu.Lock()
	for _, d := range p.retail.devices {
		if d.conn != nil {
			d.conn.CloseNow()
		}
	}
	p.retail.mu.Unlock()
	p.retail.hooks.Wait()
	p.retail.webhook.CloseIdleConnections()
}

func retailError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": code, "message": msg})
}

// pos checks the POS's key.
func (rt *retail) pos(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw, ok := bearer(r)
		if !ok || subtle.ConstantTimeCompare([]byte(raw), []byte(rt.cfg.Key)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="retail"`)
			retailError(w, http.StatusUnauthorized, "unauthorized", "a valid POS key is required")
			return
		}
		h(w, r)
	}
}

func poiidOf(model, serial string) string { return model + "-" + serial }

func (rt *retail) handleDevices(w http.ResponseWriter, _ *http.Request) {
	methods := slices.Sorted(maps.Keys(rt.p.pay.providers))
	rt.mu.Lock()
	list := make([]RetailDevice, 0, len(rt.devices))
	for _, d := range rt.devices {
		list = append(list, RetailDevice{DeviceID: poiidOf(d.model, d.serial), Serial: d.serial, Model: d.model, Connected: d.conn != nil, PaymentMethods: methods})
	}
	rt.mu.Unlock()
	slices.SortFunc(list, func(a, b RetailDevice) int { return strings.Compare(a.DeviceID, b.DeviceID) })
	writeJSON(w, http.StatusOK, map[string]any{"devices": list})
}

func (rt *retail) handleOpen(w http.ResponseWriter, r *http.Request) {
	var req struct {
		DeviceID   string `json:"deviceId"`
		SaleID     string `json:"saleId"`
		WebhookURL string `json:"webhookUrl"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&req); err != nil {
		retailError(w, http.StatusBadRequest, "invalid_request", "body: "+err.Error())
		return
	}
	if req.SaleID == "" || len(req.SaleID) > 64 {
		retailError(w, http.StatusBadRequest, "invalid_request", "saleId: 1 to 64 characters")
		return
	}
	if req.WebhookURL != "" {
		if len(req.WebhookURL) > 2048 {
			retailError(w, http.StatusBadRequest, "invalid_request", "webhookUrl: at most 2048 characters")
			return
		}
		u, err := url.Parse(req.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			retailError(w, http.StatusBadRequest, "invalid_request", "webhookUrl: an http(s) URL")
			return
		}
		if err := webhookHostAllowed(u.Hostname(), rt.cfg.WebhookHosts); err != nil {
			retailError(w, http.StatusBadRequest, "webhook_not_allowed", "webhookUrl: "+err.Error())
			return
		}
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var dev *relayDevice
	for _, d := range rt.devices {
		if poiidOf(d.model, d.serial) == req.DeviceID {
			dev = d
		}
	}
	if dev == nil {
		retailError(w, http.StatusNotFound, "unknown_device", "no device "+strconv.Quote(req.DeviceID)+" in this store")
		return
	}
	if len(rt.sessions) >= 10000 {
		retailError(w, http.StatusTooManyRequests, "too_many_sessions", "close sessions first")
		return
	}
	rt.seq++
	id := "S" + strconv.FormatUint(rt.seq, 10)
	s := &RetailSession{SessionID: id, DeviceID: req.DeviceID, SaleID: req.SaleID, WebhookURL: req.WebhookURL,
		MessagesURL: RetailSessionsPath + "/" + id + "/messages", serial: dev.serial}
	rt.sessions[id] = s
	writeJSON(w, http.StatusCreated, s)
}

func (rt *retail) handleClose(w http.ResponseWriter, r *http.Request) {
	rt.mu.Lock()
	_, ok := rt.sessions[r.PathValue("id")]
	delete(rt.sessions, r.PathValue("id"))
	rt.mu.Unlock()
	if !ok {
		retailError(w, http.StatusNotFound, "unknown_session", "no such session")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleMessage relays one Nexo message: synchronously by default, or with
// ?mode=async answered 202 and the device's answer posted to the webhook.
func (rt *retail) handleMessage(w http.ResponseWriter, r *http.Request) {
	rt.mu.Lock()
	s := rt.sessions[r.PathValue("id")]
	rt.mu.Unlock()
	if s == nil {
		retailError(w, http.StatusNotFound, "unknown_session", "no such session")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		retailError(w, http.StatusRequestEntityTooLarge, "invalid_request", "body over 64 KiB")
		return
	}
	if !json.Valid(body) {
		retailError(w, http.StatusBadRequest, "invalid_request", "the body must be a Nexo v5 JSON message")
		return
	}
	async := r.URL.Query().Get("mode") == "async"
	if async && s.WebhookURL == "" {
		retailError(w, http.StatusBadRequest, "invalid_request", "mode=async needs a session opened with a webhookUrl")
		return
	}
	if async {
		// The slot is taken before the message is relayed: a refused
		// message never reaches the device.
		rt.mu.Lock()
		full := rt.async >= rt.cfg.MaxAsync || rt.ctx.Err() != nil
		if !full {
			rt.async++
			rt.hooks.Add(1)
		}
		rt.mu.Unlock()
		if full {
			w.Header().Set("Retry-After", "5")
			retailError(w, http.StatusTooManyRequests, "too_many_async",
				fmt.Sprintf("%d asynchronous exchanges are waiting for their answer; retry later or send synchronously", rt.cfg.MaxAsync))
			return
		}
	}
	id, wt, err := rt.send(r.Context(), s.serial, body, async)
	if err != nil {
		if async {
			rt.releaseAsync()
		}
		retailError(w, http.StatusServiceUnavailable, "device_unavailable", err.Error())
		return
	}
	if async {
		go rt.awaitAsync(s, id, wt)
		w.Header().Set("Location", r.URL.Path+"/"+id)
		writeJSON(w, http.StatusAccepted, map[string]string{"messageId": id})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), rt.cfg.RelayTimeout)
	defer cancel()
	ans, err := rt.wait(ctx, id, wt)
	switch {
	case errors.Is(err, errRelayLost):
		retailError(w, http.StatusBadGateway, "connection_lost", err.Error())
	case err != nil:
		retailError(w, http.StatusGatewayTimeout, "no_answer", err.Error())
	case len(ans) == 0:
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Retail-Message-Id", id)
		_, _ = w.Write(ans)
	}
}

// awaitAsync waits for the answer of an async exchange and posts it to the
// session's webhook. It is owned: counted in hooks and async (taken by the
// handler, given back here) and ended by closeRetail.
func (rt *retail) awaitAsync(s *RetailSession, id string, wt *relayWaiter) {
	defer rt.releaseAsync()
	ctx, cancel := context.WithTimeout(rt.ctx, rt.cfg.RelayTimeout)
	defer cancel()
	ans, err := rt.wait(ctx, id, wt)
	if err != nil {
		rt.p.log.Warn("retail async exchange failed", "id", id, "err", err)
		return
	}
	rt.postWebhook(ctx, s, id, ans)
}

// releaseAsync gives back the slot of an async exchange.
func (rt *retail) releaseAsync() {
	rt.mu.Lock()
	rt.async--
	rt.mu.Unlock()
	rt.hooks.Done()
}

var errRelayLost = errors.New("the device's connection was lost before its answer; ask the outcome with a MessageStatus request")

// send relays body to the device's connection, applying the faults.
func (rt *retail) send(ctx context.Context, serial string, body []byte, async bool) (string, *relayWaiter, error) {
	// The token was checked at the upgrade; a device revoked since loses
	// its connection (and gets no new one until restored).
	rt.p.mu.Lock()
	revoked := rt.p.merchant[serial].Revoked
	rt.p.mu.Unlock()
	rt.mu.Lock()
	if d := rt.devices[serial]; revoked && d != nil && d.conn != nil {
		d.conn.CloseNow()
		d.conn = nil
	}
	d := rt.devices[serial]
	if d == nil || d.conn == nil {
		rt.mu.Unlock()
		return "", nil, fmt.Errorf("device %s is not connected to the relay", serial)
	}
	rt.seq++
	id := "R" + strconv.FormatUint(rt.seq, 10)
	wt := &relayWaiter{serial: serial, answer: make(chan []byte, 1), lost: make(chan struct{}), async: async}
	rt.waiters[id] = wt
	conn := d.conn
	slow := time.Duration(rt.faults.SlowDevice)
	dup := rt.faults.Duplicate > 0
	if dup {
		rt.faults.Duplicate--
	}
	drop := rt.faults.DropAfterRelay > 0
	if drop {
		rt.faults.DropAfterRelay--
	}
	rt.mu.Unlock()
	fail := func(err error) (string, *relayWaiter, error) {
		rt.mu.Lock()
		delete(rt.waiters, id)
		rt.mu.Unlock()
		return "", nil, err
	}
	if slow > 0 {
		t := time.NewTimer(slow)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fail(ctx.Err())
		}
	}
	frame, err := json.Marshal(ppaas.CloudFrame{Type: ppaas.CloudRequest, ID: id, Nexo: body})
	if err != nil {
		return fail(err)
	}
	n := 1
	if dup {
		n = 2
	}
	for range n {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = conn.Write(wctx, websocket.MessageText, frame)
		cancel()
		if err != nil {
			return fail(fmt.Errorf("relay to device %s: %w", serial, err))
		}
		rt.mu.Lock()
		rt.stats.Relayed++
		rt.mu.Unlock()
	}
	if drop {
		rt.p.log.Info("retail fault: dropping the device connection after the relay", "serial", serial, "id", id)
		// A close handshake, so the request sent before it arrives first.
		_ = conn.Close(websocket.StatusGoingAway, "fault: connection dropped")
	}
	return id, wt, nil
}

// wait waits for the answer of relay id.
func (rt *retail) wait(ctx context.Context, id string, wt *relayWaiter) ([]byte, error) {
	defer func() {
		rt.mu.Lock()
		delete(rt.waiters, id)
		rt.mu.Unlock()
	}()
	select {
	case ans := <-wt.answer:
		return ans, nil
	case <-wt.lost:
		return nil, errRelayLost
	case <-ctx.Done():
		return nil, fmt.Errorf("no answer from the device in time: %w", ctx.Err())
	}
}

func (rt *retail) postWebhook(ctx context.Context, s *RetailSession, id string, ans []byte) {
	err := webhook.Post(ctx, rt.webhook, s.WebhookURL, "application/json", ans,
		http.Header{"X-Retail-Session-Id": {s.SessionID}, "X-Retail-Message-Id": {id}})
	rt.mu.Lock()
	if err != nil {
		rt.stats.WebhookErr++
	} else {
		rt.stats.Webhooks++
	}
	rt.mu.Unlock()
	if err != nil {
		rt.p.log.Warn("retail webhook failed", "session", s.SessionID, "id", id, "err", err)
	}
}

// handleRelay is a device's websocket: it carries relayed requests out and
// answers back, until either side closes it.
func (rt *retail) handleRelay(w http.ResponseWriter, r *http.Request) {
	dev, _ := DeviceFrom(r.Context())
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered
	}
	defer conn.CloseNow()
	conn.SetReadLimit(72 << 10)
	model := dev.Model
	if peer, err := peerDevice(r); err == nil && peer.Model != "" {
		model = peer.Model
	}
	rt.mu.Lock()
	d := rt.devices[dev.Serial]
	if d == nil {
		d = &relayDevice{serial: dev.Serial}
		rt.devices[dev.Serial] = d
	}
	if d.conn != nil {
		d.conn.CloseNow() // the device reconnected: the old connection is dead
	}
	d.model, d.conn = model, conn
	rt.stats.Connects++
	rt.mu.Unlock()
	rt.p.log.Info("retail relay: device connected", "serial", dev.Serial)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() { // ended by cancel at return
		select {
		case <-rt.p.closing:
			conn.CloseNow()
		case <-ctx.Done():
		}
	}()
	defer func() {
		rt.mu.Lock()
		if d.conn == conn {
			d.conn = nil
		}
		for id, wt := range rt.waiters {
			if wt.serial == dev.Serial && !wt.async {
				close(wt.lost)
				delete(rt.waiters, id)
				rt.stats.Lost++
			}
		}
		rt.mu.Unlock()
		rt.p.log.Info("retail relay: device disconnected", "serial", dev.Serial)
	}()
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			return
		}
		var f ppaas.CloudFrame
		if json.Unmarshal(b, &f) != nil || f.Type != ppaas.CloudAnswer || f.ID == "" {
			continue
		}
		rt.mu.Lock()
		if rt.faults.DropAnswer > 0 {
			rt.faults.DropAnswer--
			rt.mu.Unlock()
			rt.p.log.Info("retail fault: answer lost with the connection", "serial", dev.Serial, "id", f.ID)
			return
		}
		rt.stats.Answers++
		wt := rt.waiters[f.ID]
		if wt != nil {
			delete(rt.waiters, f.ID)
			wt.answer <- []byte(f.Nexo) // buffered; one answer per waiter
		} else {
			rt.stats.Late++
		}
		rt.mu.Unlock()
		ack, _ := json.Marshal(ppaas.CloudFrame{Type: ppaas.CloudAck, ID: f.ID})
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		err = conn.Write(wctx, websocket.MessageText, ack)
		wcancel()
		if err != nil {
			return
		}
	}
}

// webhookHostAllowed accepts a loopback host, or one of allow.
func webhookHostAllowed(host string, allow []string) error {
	if slices.Contains(allow, host) {
		return nil
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	if len(allow) == 0 {
		return fmt.Errorf("host %q is not loopback; the simulator posts webhooks to loopback only unless RetailConfig.WebhookHosts lists the host", host)
	}
	return fmt.Errorf("host %q is neither loopback nor in the allowed webhook hosts", host)
}

// newWebhookClient posts webhooks to allowed hosts only: each redirect is
// checked as the session's URL was, and with no allow-list the dialer
// refuses any address that is not loopback (a name that resolves elsewhere).
func newWebhookClient(allow []string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if len(allow) == 0 {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return fmt.Errorf("webhook to %s refused: not a loopback address", host)
			}
			return nil
		}
	}
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("webhook: too many redirects")
			}
			return webhookHostAllowed(req.URL.Hostname(), allow)
		},
	}
}

func (rt *retail) handleFaults(w http.ResponseWriter, r *http.Request) {
	var f RetailFaults
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	if f.SlowDevice < 0 || f.SlowDevice.D() > 10*time.Minute {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "slowDevice: 0 to 10m"})
		return
	}
	if min(f.DropAfterRelay, f.DropAnswer, f.Duplicate) < 0 || max(f.DropAfterRelay, f.DropAnswer, f.Duplicate) > 1000 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "dropAfterRelay, dropAnswer and duplicate: 0 to 1000"})
		return
	}
	rt.mu.Lock()
	rt.faults = f
	rt.mu.Unlock()
	writeJSON(w, http.StatusOK, f)
}
