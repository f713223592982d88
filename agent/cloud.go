package agent

// issue 16: the cloud connector. The agent keeps one outbound websocket to
// the platform's device relay (mutual TLS with the device certificate and the
// device bearer token) and serves the Nexo v5 requests of cloud POS relayed
// on it through the same nexo.Server path as POST /nexo.

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sync/errgroup"

	"github.com/termagent/termagent/mtls"
	"github.com/termagent/termagent/ppaas"
)

// CloudConfig tunes the cloud connector; zero values take the defaults.
type CloudConfig struct {
	MinBackoff time.Duration // first reconnection delay; default 500 ms
	MaxBackoff time.Duration // cap of the reconnection delay; default 30 s
	// StableAfter: a connection that lasted this long resets the backoff;
	// default 10 s.
	StableAfter time.Duration
	Ping        time.Duration // keepalive ping interval; default 15 s
	// MaxPending bounds the answers kept for redelivery; default 256.
	MaxPending int
	// MaxInFlight bounds the relayed requests served at once; default 8.
	MaxInFlight int
	// MaxQueued bounds the relayed requests waiting for one of those slots;
	// default 16. The connection is read all the while (keepalive answered,
	// acknowledgements taken); a request beyond both bounds is answered at
	// once with Busy, without being served.
	MaxQueued int
	// Busy renders that answer for a relayed Nexo message
	// (nexo.Server.Busy); nil: the request is refused with an answer frame
	// that carries no Nexo message.
	Busy func(body []byte, why string) []byte
	// MaxMessageBytes bounds a frame read; default 72 KiB (the Nexo server's
	// 64 KiB plus the frame).
	MaxMessageBytes int64
}

func (c *CloudConfig) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.MinBackoff, 500*time.Millisecond)
	def(&c.MaxBackoff, 30*time.Second)
	def(&c.StableAfter, 10*time.Second)
	def(&c.Ping, 15*time.Second)
	if c.MaxPending <= 0 {
		c.MaxPending = 256
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 8
	}
	if c.MaxQueued <= 0 {
		c.MaxQueued = 16
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 72 << 10
	}
}

// CloudConnector keeps the connection to the platform's relay and serves the
// requests relayed on it.
//
// At most once: a relayed request whose id is being served, or whose answer
// is kept, is not served again (the kept answer is sent instead); any other
// repeat reaches the Nexo server, whose ServiceID / ExchangeIdentification
// rule replays the journaled answer of a finished exchange instead of running
// it again.
//
// Undelivered answers are kept in memory, bounded by MaxPending (oldest
// dropped first), and sent again on every new connection until the relay
// acknowledges them. Memory, not the outbox: every payment's outcome is
// already durable in the journal before its answer exists, and MessageStatus
// reads it from there, so what a restart or the bound loses is the push of an
// answer, never the outcome.
type CloudConnector struct {
	cfg   CloudConfig
	dial  func(ctx context.Context) (*websocket.Conn, error)
	serve func(ctx context.Context, body []byte) []byte
	log   *slog.Logger

	mu       sync.Mutex
	conn     *websocket.Conn     // the live connection; nil while down
	inflight map[string]bool     // ids being served
	pending  map[string][]byte   // id → encoded answer frame, not yet acknowledged
	asked    map[string][32]byte // id → hash of the request it answers (in flight or pending)
	order    []string            // pending ids, oldest first
	admitted int                 // requests served or waiting for a slot (≤ MaxInFlight+MaxQueued)
	up       chan struct{}       // closed while connected (replaced when down)
	stats    CloudStats
}

// CloudStats counts what the connector did.
type CloudStats struct {
	Connects   int // connections established
	Served     int // requests passed to the Nexo server
	Duplicates int // requests not served again (in flight or answer kept)
	Resent     int // answers sent again after a reconnection or a duplicate
	Dropped    int // kept answers dropped by the MaxPending bound
	Refused    int // requests answered Busy: MaxInFlight and MaxQueued reached
	Pongs      int // keepalive pings the relay answered
}

// NewCloudConnector returns a connector that dials with dial and serves each
// relayed message with serve (nexo.Server.Exchange).
func NewCloudConnector(cfg CloudConfig, dial func(context.Context) (*websocket.Conn, error), serve func(context.Context, []byte) []byte, log *slog.Logger) *CloudConnector {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &CloudConnector{cfg: cfg, dial: dial, serve: serve, log: log, inflight: map[string]bool{}, pending: map[string][]byte{}, asked: map[string][32]byte{}, up: make(chan struct{})}
}

// Stats returns the connector's counters.
func (c *CloudConnector) Stats() CloudStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Pending is the number of answers waiting for the relay's acknowledgement.
func (c *CloudConnector) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.order)
}

// WaitConnected blocks until the connection is up or ctx ends.
func (c *CloudConnector) WaitConnected(ctx context.Context) error {
	c.mu.Lock()
	up := c.up
	c.mu.Unlock()
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Connected reports whether the connection is up.
func (c *CloudConnector) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn != nil
}

// Run connects, serves and reconnects with capped, jittered exponential
// backoff until ctx ends; it returns once every request it started has been
// answered (a payment in flight runs to its end and is journaled).
func (c *CloudConnector) Run(ctx context.Context) error {
	var g errgroup.Group // the relayed requests: they outlive a connection
	defer func() { _ = g.Wait() }()
	slots := make(chan struct{}, c.cfg.MaxInFlight)
	attempt := 0
	for ctx.Err() == nil {
		conn, err := c.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			d := c.backoff(attempt)
			attempt++
			c.log.Warn("cloud relay unreachable", "err", err, "retry_in", d.Round(time.Millisecond))
			if !sleep(ctx, d) {
				break
			}
			continue
		}
		start := time.Now()
		err = c.session(ctx, conn, &g, slots)
		if ctx.Err() != nil {
			break
		}
		if time.Since(start) >= c.cfg.StableAfter {
			attempt = 0
		}
		d := c.backoff(attempt)
		attempt++
		c.log.Warn("cloud relay connection lost", "err", err, "retry_in", d.Round(time.Millisecond), "pending_answers", c.Pending())
		if !sleep(ctx, d) {
			break
		}
	}
	return nil
}

// backoff is full jitter over min·2^attempt, capped.
func (c *CloudConnector) backoff(attempt int) time.Duration {
	d := c.cfg.MaxBackoff
	if attempt < 30 {
		if e := c.cfg.MinBackoff << attempt; e > 0 && e < d {
			d = e
		}
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// session serves one connection until it fails or ctx ends.
func (c *CloudConnector) session(ctx context.Context, conn *websocket.Conn, g *errgroup.Group, slots chan struct{}) error {
	conn.SetReadLimit(c.cfg.MaxMessageBytes)
	var wg sync.WaitGroup
	defer wg.Wait() // last: after cancel has stopped the keepalive
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer conn.CloseNow()

	c.mu.Lock()
	c.conn = conn
	c.stats.Connects++
	resend := make([][]byte, 0, len(c.order))
	for _, id := range c.order {
		resend = append(resend, c.pending[id])
	}
	close(c.up)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.conn == conn {
			c.conn = nil
			c.up = make(chan struct{})
		}
		c.mu.Unlock()
	}()
	c.log.Info("cloud relay connected", "resending", len(resend))
	for _, f := range resend {
		if err := c.write(sctx, conn, f); err != nil {
			return err
		}
		c.count(func(s *CloudStats) { s.Resent++ })
	}

	wg.Add(1)
	go func() { // keepalive: a silent relay is a dead one
		defer wg.Done()
		t := time.NewTicker(c.cfg.Ping)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
			pctx, pcancel := context.WithTimeout(sctx, c.cfg.Ping)
			err := conn.Ping(pctx)
			pcancel()
			if err != nil {
				if sctx.Err() == nil {
					c.log.Warn("cloud relay ping failed", "err", err)
				}
				conn.CloseNow()
				return
			}
			c.count(func(s *CloudStats) { s.Pongs++ })
		}
	}()

	for {
		typ, b, err := conn.Read(sctx)
		if err != nil {
			return fmt.Errorf("read from the cloud relay: %w", err)
		}
		f, err := ppaas.ParseCloudFrame(b)
		if typ != websocket.MessageText || err != nil {
			c.log.Warn("cloud relay frame ignored", "bytes", len(b), "err", err)
			continue
		}
		switch f.Type {
		case ppaas.CloudAck:
			c.mu.Lock()
			c.forget(f.ID)
			c.mu.Unlock()
		case ppaas.CloudRequest:
			if err := c.request(sctx, ctx, conn, f, g, slots); err != nil {
				return err
			}
		default:
			c.log.Warn("cloud relay frame ignored", "type", f.Type, "id", f.ID)
		}
	}
}

// request starts serving a relayed request, unless it is already being
// served or answered.
func (c *CloudConnector) request(sctx, ctx context.Context, conn *websocket.Conn, f ppaas.CloudFrame, g *errgroup.Group, slots chan struct{}) error {
	sum := sha256.Sum256(f.Nexo)
	c.mu.Lock()
	if prev, ok := c.asked[f.ID]; ok && prev != sum && !c.inflight[f.ID] {
		// The relay reused an id (after its restart, say) for another
		// message: the kept answer is not this one's.
		c.log.Warn("cloud request id reused for another message: served as new", "id", f.ID)
		c.forget(f.ID)
	}
	kept, answered := c.pending[f.ID]
	running := c.inflight[f.ID]
	full := false
	switch {
	case answered || running:
		c.stats.Duplicates++
	case c.admitted >= c.cfg.MaxInFlight+c.cfg.MaxQueued:
		full = true
		c.stats.Refused++
	default:
		c.admitted++
		c.inflight[f.ID] = true
		c.asked[f.ID] = sum
	}
	c.mu.Unlock()
	switch {
	case full:
		// Not kept: nothing was done, so a repeat is served anew.
		c.log.Warn("cloud request refused: too many in flight", "id", f.ID, "in_flight", c.cfg.MaxInFlight, "queued", c.cfg.MaxQueued)
		return c.write(sctx, conn, c.busyFrame(f, fmt.Sprintf("the POI is serving %d requests and has %d waiting; send it again later", c.cfg.MaxInFlight, c.cfg.MaxQueued)))
	case answered:
		c.log.Info("cloud request repeated: its answer sent again", "id", f.ID)
		c.count(func(s *CloudStats) { s.Resent++ })
		return c.write(sctx, conn, kept)
	case running:
		c.log.Info("cloud request repeated while served: not served twice", "id", f.ID)
		return nil
	}
	// The reader does not wait for a slot: the request does, in its own
	// goroutine (bounded by admitted), while the connection is read.
	g.Go(func() error {
		defer func() {
			c.mu.Lock()
			c.admitted--
			c.mu.Unlock()
		}()
		select {
		case slots <- struct{}{}:
		case <-ctx.Done(): // shutting down: not started, not answered
			c.mu.Lock()
			delete(c.inflight, f.ID)
			delete(c.asked, f.ID)
			c.mu.Unlock()
			return nil
		}
		defer func() { <-slots }()
		c.count(func(s *CloudStats) { s.Served++ })
		// Not the connection's context: a payment outlives a dropped
		// connection, and the agent's shutdown stops it through the Nexo
		// server (which journals it either way).
		out := c.serve(context.WithoutCancel(ctx), f.Nexo)
		c.answer(ctx, f.ID, out)
		return nil
	})
	return nil
}

// busyFrame is the answer frame refusing f without serving it.
func (c *CloudConnector) busyFrame(f ppaas.CloudFrame, why string) []byte {
	var nexo []byte
	if c.cfg.Busy != nil {
		nexo = c.cfg.Busy(f.Nexo, why)
	}
	frame, err := json.Marshal(ppaas.CloudFrame{Type: ppaas.CloudAnswer, ID: f.ID, Nexo: json.RawMessage(nexo)})
	if err != nil {
		frame, _ = json.Marshal(ppaas.CloudFrame{Type: ppaas.CloudAnswer, ID: f.ID})
	}
	return frame
}

// answer keeps the answer and sends it on the live connection, if any.
func (c *CloudConnector) answer(ctx context.Context, id string, nexo []byte) {
	frame, err := json.Marshal(ppaas.CloudFrame{Type: ppaas.CloudAnswer, ID: id, Nexo: json.RawMessage(nexo)})
	if err != nil { // an answer that is not JSON (the request was not)
		frame, _ = json.Marshal(ppaas.CloudFrame{Type: ppaas.CloudAnswer, ID: id})
	}
	c.mu.Lock()
	delete(c.inflight, id)
	c.pending[id] = frame
	c.order = append(c.order, id)
	for len(c.order) > c.cfg.MaxPending {
		old := c.order[0]
		c.forget(old)
		c.stats.Dropped++
		c.log.Warn("cloud answer dropped from the redelivery queue (the journal keeps its outcome)", "id", old)
	}
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		c.log.Info("cloud answer kept until the relay is back", "id", id)
		return
	}
	if err := c.write(ctx, conn, frame); err != nil {
		c.log.Warn("cloud answer not delivered; kept for the next connection", "id", id, "err", err)
	}
}

// forget removes a kept answer (c.mu held).
func (c *CloudConnector) forget(id string) {
	if _, ok := c.pending[id]; !ok {
		return
	}
	delete(c.pending, id)
	delete(c.asked, id)
	for i, o := range c.order {
		if o == id {
			c.order = append(c.order[:i], c.order[i+1:]...)
			break
		}
	}
}

func (c *CloudConnector) write(ctx context.Context, conn *websocket.Conn, frame []byte) error {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := conn.Write(wctx, websocket.MessageText, frame); err != nil {
		conn.CloseNow() // the reader sees it and the session reconnects
		return fmt.Errorf("write to the cloud relay: %w", err)
	}
	return nil
}

func (c *CloudConnector) count(f func(*CloudStats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}

// cloudDialer dials the relay with the device certificate (HTTP/1.1: the
// websocket upgrade) and the device bearer token.
func cloudDialer(rawURL string, platform *tls.Config, tokens mtls.TokenSource, clock *mtls.Clock) func(context.Context) (*websocket.Conn, error) {
	tc := platform.Clone()
	tc.NextProtos = []string{"http/1.1"}
	client := &http.Client{Transport: &mtls.Transport{
		Base: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			TLSClientConfig:       tc,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
		},
		Tokens: tokens,
		Clock:  clock,
	}}
	return func(ctx context.Context) (*websocket.Conn, error) {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		conn, resp, err := websocket.Dial(dctx, rawURL, &websocket.DialOptions{HTTPClient: client})
		if err != nil {
			if resp != nil {
				return nil, fmt.Errorf("connect to the cloud relay: %s: %w", resp.Status, err)
			}
			return nil, fmt.Errorf("connect to the cloud relay: %w", err)
		}
		return conn, nil
	}
}

// validateCloud checks the issue 16 block of the configuration.
func (c Config) validateCloud() []error {
	if c.CloudURL == "" {
		return nil
	}
	pu, err := url.Parse(c.CloudURL)
	if err != nil || pu.Scheme != "wss" || pu.Host == "" {
		return []error{&FieldError{Field: "cloud_url", Msg: fmt.Sprintf("must be a wss:// URL (TLS is required), got %q", c.CloudURL)}}
	}
	if !c.usesClientCertificate() {
		return []error{&FieldError{Field: "cloud_url", Msg: "the cloud relay needs the device certificate (grant " + c.Grant + " has none)"}}
	}
	return nil
}

// Cloud is the cloud connector (nil when cloud_url is empty; set by Run).
func (a *Agent) Cloud() *CloudConnector {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cloud
}

// startCloud starts the cloud connector in g when cloud_url is set.
func (a *Agent) startCloud(ctx context.Context, g *errgroup.Group, serve func(context.Context, []byte) []byte, busy func([]byte, string) []byte) {
	if a.cfg.CloudURL == "" {
		return
	}
	cc := NewCloudConnector(CloudConfig{Busy: busy}, cloudDialer(a.cfg.CloudURL, a.platform, a.auth, a.clock), serve, a.log.With("component", "cloud"))
	a.mu.Lock()
	a.cloud = cc
	a.mu.Unlock()
	g.Go(func() error { return cc.Run(ctx) })
}
