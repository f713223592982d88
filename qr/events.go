package qr

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/termagent/termagent/ppaas"
)

// Credentials yields the device JWT, used as the MQTT password. It is asked on
// every (re)connect so an expired token is never replayed. When the broker
// refuses a token, the Subscriber passes it to Invalidate so that the next
// Token is a freshly issued one (mtls.Authenticator drops it from its cache;
// credentials without a cache have nothing to do).
type Credentials interface {
	Token(ctx context.Context) (string, error)
	Invalidate(token string)
}

// EventLog de-duplicates events: SeenEvent reports whether id is marked,
// MarkEvent marks it. The Subscriber marks an event only once its handler
// applied it, so an event whose application failed (a journal write that did
// not commit) is applied again when the broker redelivers it, never dropped
// as a duplicate. It must be durable for the de-dup to survive a restart (the
// agent backs it with bbolt; tests use internal/fake's in-memory one).
type EventLog interface {
	SeenEvent(ctx context.Context, id string) (bool, error)
	MarkEvent(ctx context.Context, id string) error
}

// EventHandler applies an event; a nil error means applied and recorded (the
// Engine implements it; see HandleEvent for when the record is durable).
type EventHandler interface {
	HandleEvent(ctx context.Context, ev ppaas.Event) error
}

// selfDeduplicating is an EventHandler that recognises some redeliveries
// itself. For an event it says so of, the subscriber does not read the
// event log first: that read (a bbolt read transaction, on pages the last
// commit has just rewritten) sat on the path of every approval, between the
// broker's delivery and the payment waiting for it. The event is still
// marked once applied (EventLog.MarkEvent).
type selfDeduplicating interface {
	// DeduplicatesEvent reports whether applying ev a second time would be
	// recognised and ignored by the handler itself.
	DeduplicatesEvent(ev ppaas.Event) bool
}

// ErrNotAuthorized is returned (wrapped) when the broker refuses the device.
var ErrNotAuthorized = errors.New("mqtt: not authorized")

// SubscriberConfig configures a Subscriber.
type SubscriberConfig struct {
	BrokerURL   string // e.g. ssl://127.0.0.1:8883 (tcp:// only for tests)
	Serial      string // client id, username and topic
	TLS         *tls.Config
	Credentials Credentials
	Events      EventLog
	Handler     EventHandler
	Logger      *slog.Logger
	// Statuses decodes status spellings (nil: ours only; unknown ones are
	// pending).
	Statuses *ppaas.Statuses

	MinBackoff    time.Duration // first reconnect delay, default 500 ms
	MaxBackoff    time.Duration // reconnect delay cap, default 30 s
	DeniedBackoff time.Duration // delay after "not authorized", default 5 min
	KeepAlive     time.Duration // default 30 s
	Timeout       time.Duration // connect/subscribe timeout, default 10 s
	// HeldRetry is how long a session goes on while an event that keeps
	// failing is held unacked: then it ends, for the broker to deliver the
	// event again. Default 1 min.
	HeldRetry time.Duration
}

// Subscriber keeps one MQTT session to the broker and feeds events to the
// handler, acknowledging each only once it is applied.
type Subscriber struct {
	cfg SubscriberConfig
	log *slog.Logger

	mu      sync.Mutex
	up      bool
	upOnce  bool          // up at some point during the last session
	changed chan struct{} // closed and replaced whenever up changes

	token string // the password of the last connect, to invalidate it when refused

	// ended counts, per event (its payload's hash), the sessions its failure
	// ended. Past maxSessionEnds an event that keeps failing no longer ends
	// the session: it stays unacked, for the broker's next session, while
	// the events after it are applied (a poison event must not hold back
	// every payment's). Bounded: cleared when full. Sessions run one at a
	// time; mu guards it anyway.
	ended map[[sha256.Size]byte]int

	oversized atomic.Uint64 // events dropped for their size (dropOversized)
}

// maxSessionEnds is how many sessions one failing event may end.
const maxSessionEnds = 3

// maxEndedTracked bounds Subscriber.ended.
const maxEndedTracked = 256

// endSessionFor counts a failure of the event with payload p and reports
// whether it should end the session (the first maxSessionEnds times).
func (s *Subscriber) endSessionFor(p []byte) bool {
	k := sha256.Sum256(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended == nil || len(s.ended) >= maxEndedTracked {
		s.ended = map[[sha256.Size]byte]int{}
	}
	s.ended[k]++
	return s.ended[k] <= maxSessionEnds
}

// applied forgets the failures of the event with payload p.
func (s *Subscriber) applied(p []byte) {
	k := sha256.Sum256(p)
	s.mu.Lock()
	delete(s.ended, k)
	s.mu.Unlock()
}

// invalidate drops the refused token from the credentials' cache.
func (s *Subscriber) invalidate() {
	s.mu.Lock()
	tok := s.token
	s.mu.Unlock()
	s.cfg.Credentials.Invalidate(tok)
}

func (s *Subscriber) wasUp() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.upOnce
	s.upOnce = false
	return w
}

// NewSubscriber validates cfg and returns a Subscriber; Run starts it.
func NewSubscriber(cfg SubscriberConfig) (*Subscriber, error) {
	if cfg.BrokerURL == "" || cfg.Serial == "" || cfg.Credentials == nil || cfg.Events == nil || cfg.Handler == nil {
		return nil, errors.New("new mqtt subscriber: broker URL, serial, credentials, event log and handler are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.MinBackoff, 500*time.Millisecond)
	def(&cfg.MaxBackoff, 30*time.Second)
	def(&cfg.DeniedBackoff, 5*time.Minute)
	def(&cfg.HeldRetry, time.Minute)
	def(&cfg.KeepAlive, 30*time.Second)
	def(&cfg.Timeout, 10*time.Second)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Subscriber{cfg: cfg, log: cfg.Logger.With("broker", cfg.BrokerURL, "serial", cfg.Serial), changed: make(chan struct{})}, nil
}

// Run keeps the subscription alive until ctx is done. The caller owns the
// goroutine running it; Run returns nil once ctx is cancelled.
func (s *Subscriber) Run(ctx context.Context) error {
	attempt := 0
	denied := false       // refused since the last successful session
	loggedDenial := false // so a refusing broker is logged once, not on every retry
	for {
		began := time.Now()
		err := s.session(ctx)
		if s.wasUp() {
			// The session got through: a later denial deserves a fresh-token
			// retry and a log line again.
			denied, loggedDenial = false, false
		}
		s.setUp(false)
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		switch {
		case errors.Is(err, ErrNotAuthorized) && !denied:
			// The cached token may have been revoked or expired early at the
			// platform: one quick retry with a freshly issued token first.
			s.invalidate()
			denied = true
			wait = s.cfg.MinBackoff
			s.log.Warn("mqtt broker refused the token; retrying with a fresh one", "err", err)
		case errors.Is(err, ErrNotAuthorized):
			// Hammering a broker that refuses us only fills its logs and may get
			// the device blocked: log once, then retry rarely with a fresh token.
			if !loggedDenial {
				s.log.Error("mqtt broker refused the device; backing off", "err", err, "retry_in", s.cfg.DeniedBackoff)
			}
			loggedDenial = true
			denied = true
			s.invalidate()
			wait = s.cfg.DeniedBackoff
			wait = wait/2 + rand.N(wait/2+1)
		default:
			denied = false
			if time.Since(began) > s.cfg.MaxBackoff {
				attempt = 0 // a session that lived a while is a fresh start
			}
			attempt++
			wait = backoff(s.cfg.MinBackoff, s.cfg.MaxBackoff, attempt)
			s.log.Warn("mqtt session ended; reconnecting", "err", err, "attempt", attempt, "retry_in", wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// WaitSubscribed blocks until the subscription is active or ctx is done.
func (s *Subscriber) WaitSubscribed(ctx context.Context) error {
	return s.waitUntil(ctx, true, "wait for mqtt subscription")
}

// Connected reports whether the subscription is active now.
func (s *Subscriber) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.up
}

// WaitDown blocks until the subscription is lost or ctx is done.
func (s *Subscriber) WaitDown(ctx context.Context) error {
	return s.waitUntil(ctx, false, "wait for mqtt disconnection")
}

// waitUntil blocks until the subscription is up (or down) or ctx is done.
func (s *Subscriber) waitUntil(ctx context.Context, want bool, what string) error {
	for {
		s.mu.Lock()
		up, ch := s.up, s.changed
		s.mu.Unlock()
		if up == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-ch:
		}
	}
}

func (s *Subscriber) setUp(up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if up {
		s.upOnce = true
	}
	if s.up != up {
		s.up = up
		close(s.changed)
		s.changed = make(chan struct{})
	}
}

// session connects once with a fresh token, subscribes and blocks until the
// connection is lost or ctx is done. A new connection per session
// (mqttConn, qr/mqttconn.go) keeps reconnect policy (backoff, jitter,
// denial) in our hands.
func (s *Subscriber) session(ctx context.Context) error {
	tctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	token, err := s.cfg.Credentials.Token(tctx)
	cancel()
	if err != nil {
		return fmt.Errorf("mqtt connect: get token: %w", err)
	}
	s.mu.Lock()
	s.token = token
	s.mu.Unlock()
	c, err := dialMQTT(ctx, s.cfg.BrokerURL, s.cfg.TLS, s.cfg.Serial, s.cfg.Serial, token, s.cfg.KeepAlive, s.cfg.Timeout) // qr/mqttconn.go
	if err != nil {
		if errors.Is(err, packets.ErrorRefusedNotAuthorised) || errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
			return fmt.Errorf("mqtt connect: %w: %w", ErrNotAuthorized, err)
		}
		return fmt.Errorf("mqtt connect: %w", err)
	}
	// The reader hands every PUBLISH to onMessage in its own goroutine, in
	// order, from the start: messages of the persistent session can arrive
	// before SUBSCRIBE is acknowledged.
	stopped := make(chan struct{})
	read := make(chan error, 1)
	pinged := make(chan error, 1)
	// An event left unacked ends the session: an MQTT 3.1.1 broker delivers
	// it again only on the next one. The messages after it are left unacked
	// too, for the next session to deliver in order. Run's backoff bounds the
	// reconnects; an event that ended maxSessionEnds sessions ends no more
	// at once: it is held (unacked) and the events after it are applied
	// (TestPoisonEventHoldsBackNoOtherPayment). While anything is held the
	// session still ends after HeldRetry, for the broker to deliver it again
	// (nothing else would), and at once past maxHeld held events: each holds
	// one of the broker's in-flight slots (mosquitto's default: 20).
	failed := make(chan error, 1)
	held := make(chan struct{}, 1) // the first held event of the session
	unacked := false               // read by the reader goroutine only
	nheld := 0                     // likewise
	handle := func(m *mqttMessage) {
		if unacked {
			return
		}
		if m.Oversize() > 0 {
			s.dropOversized(m)
			return
		}
		err := s.onMessage(ctx, m)
		switch {
		case err == nil:
			s.applied(m.Payload())
		case nheld+1 >= maxHeld || s.endSessionFor(m.Payload()):
			unacked = true
			failed <- err
		default:
			nheld++
			if nheld == 1 {
				held <- struct{}{}
			}
			s.log.Error("mqtt event keeps failing; held unacked while the events after it are applied, delivered again on the next session",
				"sessions_ended", maxSessionEnds, "held", nheld, "next_session_within", s.cfg.HeldRetry, "err", err)
		}
	}
	go func() { read <- c.run(handle) }()
	go func() { pinged <- c.ping(stopped) }()
	defer func() {
		close(stopped)
		c.close() // ends the reader
		<-read
		<-pinged
	}()
	topic := ppaas.EventTopic(s.cfg.Serial)
	q, err := c.subscribe(ctx, topic)
	if err != nil {
		return fmt.Errorf("mqtt subscribe %s: %w", topic, err)
	}
	if q == 0x80 {
		return fmt.Errorf("mqtt subscribe %s: %w", topic, ErrNotAuthorized)
	}
	s.setUp(true)
	s.log.Info("mqtt subscribed", "topic", topic)
	select {
	case <-ctx.Done():
		return nil
	case err := <-read:
		read <- err // for the deferred wait
		return fmt.Errorf("mqtt connection lost: %w", err)
	case err := <-pinged:
		pinged <- err
		return fmt.Errorf("mqtt connection lost: %w", err)
	case err := <-failed:
		return fmt.Errorf("mqtt session ended for the broker to deliver an unapplied event again: %w", err)
	case <-held:
		t := time.NewTimer(s.cfg.HeldRetry)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil
		case err := <-read:
			read <- err
			return fmt.Errorf("mqtt connection lost: %w", err)
		case err := <-pinged:
			pinged <- err
			return fmt.Errorf("mqtt connection lost: %w", err)
		case err := <-failed:
			return fmt.Errorf("mqtt session ended for the broker to deliver an unapplied event again: %w", err)
		case <-t.C:
			return errors.New("mqtt session ended for the broker to deliver held events again")
		}
	}
}

// maxHeld bounds the events held in one session, well under a broker's
// in-flight window.
const maxHeld = 5

// dropOversized acknowledges, logs and counts an event longer than the
// session reads (maxMQTTPacket), read past without its payload: delivering
// it again could never succeed, and unacknowledged the broker would deliver
// it first on every session, before any other event. The payment it was
// about, if any, learns its state by polling.
func (s *Subscriber) dropOversized(m *mqttMessage) {
	s.oversized.Add(1)
	s.log.Error("mqtt event too large; acknowledged and dropped (its payment is polled)",
		"bytes", m.Oversize(), "limit", maxMQTTPacket, "topic", m.Topic(), "message_id", m.MessageID(), "qos", m.Qos())
	m.Ack()
}

// SubscriberStats are the Subscriber's counters.
type SubscriberStats struct {
	// OversizedEvents counts the events acknowledged and dropped unread for
	// their size (over 256 KiB).
	OversizedEvents uint64
}

// Stats returns the Subscriber's counters.
func (s *Subscriber) Stats() SubscriberStats {
	return SubscriberStats{OversizedEvents: s.oversized.Load()}
}

// onMessage runs in the session's reader goroutine, one message at a time in
// arrival order. It acks only what is handled; anything else is left unacked,
// with an error (the session then ends), and the broker redelivers it on the
// next session.
func (s *Subscriber) onMessage(ctx context.Context, m mqtt.Message) error {
	ev, err := s.cfg.Statuses.DecodeEvent(m.Payload())
	if err != nil {
		// Redelivering a malformed payload can never succeed: ack and drop.
		// An event naming an id over ppaas.MaxIDLen is refused so (counted
		// by Statuses.OversizedCount): nothing of it is stored.
		s.log.Error("mqtt event dropped", "topic", m.Topic(), "bytes", len(m.Payload()), "err", err)
		m.Ack()
		return nil
	}
	log := s.log.With("event_id", ev.EventID, "transaction_id", ev.TransactionID, "status", ev.Status, "sequence", ev.Sequence)
	if d, ok := s.cfg.Handler.(selfDeduplicating); !ok || !d.DeduplicatesEvent(ev) {
		seen, err := s.cfg.Events.SeenEvent(ctx, ev.EventID)
		if err != nil {
			log.Error("mqtt event de-dup failed; left unacked", "err", err)
			return fmt.Errorf("event %s: de-dup: %w", ev.EventID, err)
		}
		if seen {
			log.Info("mqtt duplicate event ignored")
			m.Ack()
			return nil
		}
	}
	if err := s.cfg.Handler.HandleEvent(ctx, ev); err != nil {
		// Not marked seen: the broker redelivers it on the next session and
		// it is applied then (polling may recover the state sooner).
		log.Error("mqtt event not applied; left unacked", "err", err)
		return fmt.Errorf("event %s: %w", ev.EventID, err)
	}
	if err := s.cfg.Events.MarkEvent(ctx, ev.EventID); err != nil {
		// Applied: a redelivery is applied again, which changes nothing.
		log.Warn("mqtt event applied but not marked seen", "err", err)
	}
	// The payment the event decided, if any, is runnable now, queued on
	// this goroutine's P (close(done) put it there): it goes first, the ack
	// after it. The ack is a TLS write, ~50 µs of CPU with its syscall,
	// that would otherwise run before the payment unless another P was free
	// to steal it. The broker needs the ack only before the session ends;
	// it still follows the event's application and mark.
	runtime.Gosched()
	m.Ack()
	return nil
}

// Polling: the first-class event source. The PPaaS document does not say how
// provider events reach a terminal, so with no broker (or the broker down) the
// engine polls the transaction status: first after PollFirst, then with a
// jittered backoff to PollCap, never sooner than a Retry-After asks.

// maxRetryAfter bounds the wait a server's Retry-After can impose: a peer
// controls it, and the payment's own timeout keeps running meanwhile.
const maxRetryAfter = 2 * time.Minute

// ParseRetryAfter reads a Retry-After header value, delay-seconds or an HTTP
// date (relative to now), bounded to [0, 2 min]. An empty or malformed value is
// no constraint (0).
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		d = maxRetryAfter
		if n < int64(maxRetryAfter/time.Second) {
			d = time.Duration(n) * time.Second
		}
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// Poll fetches a transaction's status once (the poll loop is the retry) and
// returns the Retry-After the platform asked for, if any. A transport failure or
// a 5xx/429 wraps ErrUnreachable.
func (c *Client) Poll(ctx context.Context, id string) (ppaas.Transaction, time.Duration, error) {
	const op = "poll transaction"
	ctx, cancel := context.WithTimeout(ctx, c.retry.PerAttempt)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+txPath+"/"+url.PathEscape(id), nil)
	if err != nil {
		return ppaas.Transaction{}, 0, fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return ppaas.Transaction{}, 0, fmt.Errorf("%s: %w: %w", op, ErrUnreachable, err)
	}
	defer resp.Body.Close()
	wait := ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return ppaas.Transaction{}, wait, fmt.Errorf("%s: %w: read response: %w", op, ErrUnreachable, err)
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		t, err := c.statuses.DecodeTransaction(b)
		if err != nil {
			return ppaas.Transaction{}, wait, fmt.Errorf("%s: %w", op, err)
		}
		return t, wait, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return ppaas.Transaction{}, wait, fmt.Errorf("%s: %w: ppaas answered %d", op, ErrUnreachable, resp.StatusCode)
	}
	ae := &APIError{Op: op, StatusCode: resp.StatusCode}
	_ = json.Unmarshal(b, ae)
	ae.clipText()
	ae.Transaction = nil
	return ppaas.Transaction{}, wait, ae
}

// pollSchedule decides when one payment's status is polled. While events are
// pushed, polling is only the safety net (after PollAfter without news); while
// they are not (no broker, or it is down), polling is the event source: first
// after PollFirst, then a jittered backoff capped at PollCap. The timer never
// sleeps longer than PollFirst in push mode, so a broker that goes down in the
// middle of a payment switches it to polling within about PollFirst.
type pollSchedule struct {
	cfg   Config
	now   func() time.Time
	delay time.Duration // the last base delay of the backoff
	due   time.Time     // when the next poll is due
}

func newPollSchedule(cfg Config) *pollSchedule { return &pollSchedule{cfg: cfg, now: time.Now} }

// pushing reports whether provider events are being pushed now.
func (s *pollSchedule) pushing() bool { return s.cfg.PushEvents == nil || s.cfg.PushEvents() }

// wake is the timer for a poll due after d: in push mode no later than
// PollFirst, to notice the broker going down.
func (s *pollSchedule) wake(d time.Duration) time.Duration {
	s.due = s.now().Add(d)
	if s.cfg.PushEvents != nil && s.pushing() {
		return min(d, s.cfg.PollFirst)
	}
	return d
}

// first is the timer after the transaction is created or moves.
func (s *pollSchedule) first() time.Duration {
	s.delay = s.cfg.PollAfter
	if !s.pushing() {
		s.delay = s.cfg.PollFirst
	}
	return s.wake(s.delay)
}

// tick runs when the timer fires: it polls (poll returns the Retry-After the
// platform asked for) if a poll is due, or events stopped being pushed, and
// returns the next timer.
func (s *pollSchedule) tick(poll func() time.Duration) time.Duration {
	if left := s.due.Sub(s.now()); left > 0 && s.pushing() {
		return min(left, s.cfg.PollFirst)
	}
	return s.wake(s.next(poll()))
}

// next is the delay after a poll: the backoff doubled (jittered) up to its cap,
// and at least what the platform's Retry-After asked.
func (s *pollSchedule) next(retryAfter time.Duration) time.Duration {
	limit := s.cfg.PollMax
	if !s.pushing() {
		limit = s.cfg.PollCap
		s.delay = min(s.delay, limit)
	}
	s.delay = min(2*s.delay, limit)
	d := s.delay/2 + rand.N(s.delay/2+1)
	return max(d, retryAfter)
}

// pollOnce polls t's status, applies it, and returns the Retry-After asked.
func (e *Engine) pollOnce(ctx context.Context, t *txn, log *slog.Logger) time.Duration {
	got, wait, err := e.client.Poll(ctx, t.txID())
	if err != nil {
		log.Warn("qr status poll failed", "err", err, "retry_after", wait)
		return wait
	}
	if err := e.apply(ctx, t, got.Status, source{kind: "poll", seq: got.Sequence, ref: got.ProviderReference, reason: got.StatusReason}); err != nil {
		log.Error("qr record poll", "err", err)
	}
	return wait
}
