package qr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/termagent/termagent/display"
	"github.com/termagent/termagent/failpoint"
	"github.com/termagent/termagent/ppaas"
)

// Recorder durably records every state transition (the agent's journal).
type Recorder interface {
	Record(ctx context.Context, t Transition) error
	// RecordScan records, durably before it returns, the code the terminal's
	// scanner read for merchantscan payment clientTransactionID (scan.go):
	// its create is sent only then, so that after a crash the create can be
	// replayed as it was sent (same clientTransactionId, same code). The
	// code is a consumer's payment credential: never logged.
	RecordScan(ctx context.Context, clientTransactionID, code string) error
}

// Advisor queues work that must happen once PPaaS is reachable again (the
// agent's outbox). The Engine hands it an Advice when an outcome is unknown.
type Advisor interface {
	Advise(ctx context.Context, a Advice) error
}

// Display shows the transaction to the consumer (the terminal screen). The
// engine's screens carry their QR code undrawn (display.Screen.QR, a *QRImage):
// the display draws it.
type Display interface {
	Show(ctx context.Context, s display.Screen) error
}

// QRImage is a QR code to show. It renders on first use, in the display's
// goroutine: encoding costs ~1.5 ms of CPU that the payment path need not wait
// for (and an instantly approved payment never needs).
type QRImage struct {
	Payload string
	level   Level
	size    int
	once    sync.Once
	png     []byte
	text    string
	err     error
	// imageOnly: the provider sent only an image (no Payload); see image.go.
	imageOnly bool
}

// NewQRImage returns a QRImage for payload; providerPNG, when the provider sent
// its own image, is used as is.
func NewQRImage(payload string, l Level, size int, providerPNG []byte) *QRImage {
	return &QRImage{Payload: payload, level: l, size: size, png: providerPNG}
}

func (q *QRImage) render() {
	q.once.Do(func() {
		if q.imageOnly {
			return // the provider's image, checked by showable; no text form
		}
		img, err := renderBoth(q.Payload, q.level, q.size)
		if err != nil {
			q.err = err
			return
		}
		if q.png == nil {
			q.png = img.png
		}
		q.text = img.text
	})
}

// PNG returns the image for the display.
func (q *QRImage) PNG() ([]byte, error) {
	q.render()
	return q.png, q.err
}

// Text returns the half-block rendering for logs and text consoles.
func (q *QRImage) Text() (string, error) {
	q.render()
	return q.text, q.err
}

// AdviceKind says what an Advice asks for.
type AdviceKind string

// AdviceReverse asks to make sure no money moved for a transaction whose outcome
// the POS was told is a failure: cancel it if undecided, refund it if approved.
const AdviceReverse AdviceKind = "reverse"

// Advice is deferred work for a transaction left in an unknown state.
type Advice struct {
	Kind                AdviceKind
	ClientTransactionID string
	TransactionID       string              // empty when create never answered
	Create              ppaas.CreateRequest // replayed (idempotently) to learn TransactionID; a merchantscan one is located instead (Locate)
	Amount              ppaas.Amount        // the payment's amount (for the people reading a failed reversal)
	Reason              string
	At                  time.Time
	// Started is when the payment began, before its create was sent (zero
	// in advices of older versions): where Locate starts looking.
	Started time.Time
}

// Method is what an APM brand maps to at PPaaS.
type Method struct {
	PaymentType string
	Scenario    ppaas.Scenario
}

// Config configures an Engine. Zero values take the defaults noted.
type Config struct {
	// Brands maps a brand or payment-instrument name (case-insensitive) to the
	// PPaaS method. Default: {"KB": KB consumerscan}.
	Brands        map[string]Method
	Timeout       time.Duration // consumer must pay within this, default 120 s
	PollAfter     time.Duration // poll when no event arrived for this long, default 5 s
	PollMax       time.Duration // cap of the polling backoff, default 30 s
	CancelTimeout time.Duration // bound of the cancel sent on abort/timeout, default 10 s
	CreateTimeout time.Duration // bound of create including retries, default 30 s
	// ConfirmTimeout bounds the wait for the provider's confirmation of a
	// payment the consumer has paid (Confirming), which no timeout or abort
	// cancels; default 10 min. ConfirmTimeouts overrides it per paymentType.
	ConfirmTimeout  time.Duration
	ConfirmTimeouts map[string]time.Duration
	QRLevel         Level // default M
	QRSize          int   // PNG size in pixels, default 256
	Logger          *slog.Logger

	// issue 13: polling as a first-class event source (see events.go).
	// PushEvents reports whether provider events are being pushed now (the
	// MQTT subscription is up); nil means they always are, and PollAfter
	// governs every wait. While it reports false the first poll comes after
	// PollFirst (default 1 s) and the backoff is capped at PollCap (default 5 s).
	PushEvents func() bool
	PollFirst  time.Duration
	PollCap    time.Duration

	// LocateMargin is how long past the latest moment a create can have
	// been sent Locate waits before concluding none was made (the
	// platform's processing of a create); default 2 min. The listing's
	// window itself is wider (locateSkew, for the clocks).
	LocateMargin time.Duration
}

func (c Config) withDefaults() Config {
	if len(c.Brands) == 0 {
		c.Brands = map[string]Method{"KB": {PaymentType: "KB", Scenario: ppaas.ConsumerScan}}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Timeout, 120*time.Second)
	def(&c.PollAfter, 5*time.Second)
	def(&c.PollMax, 30*time.Second)
	def(&c.PollFirst, time.Second)
	def(&c.PollCap, 5*time.Second)
	def(&c.CancelTimeout, 10*time.Second)
	def(&c.CreateTimeout, 30*time.Second)
	def(&c.ConfirmTimeout, 10*time.Minute)
	def(&c.LocateMargin, 2*time.Minute)
	if c.QRLevel == "" {
		c.QRLevel = LevelMedium
	}
	if c.QRSize <= 0 {
		c.QRSize = 256
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// PaymentRequest asks for one APM payment.
type PaymentRequest struct {
	Brand            string // looked up in Config.Brands
	Amount           ppaas.Amount
	OrderID          string
	OrderDescription string
	ScannedPaymentID string // the wallet QR read by the terminal (merchantscan)
	// ClientTransactionID may be set by the caller (to journal it before Pay);
	// a UUID is generated otherwise.
	ClientTransactionID string
}

// Result is how a payment ended, from the POS's point of view.
type Result string

const (
	ResultApproved  Result = "approved"
	ResultDeclined  Result = "declined"
	ResultCancelled Result = "cancelled" // cancelled at PPaaS by the provider or consumer
	ResultExpired   Result = "expired"   // the consumer did not pay in time; cancelled by the agent
	ResultAborted   Result = "aborted"   // the POS aborted; cancelled by the agent
	ResultUnknown   Result = "unknown"   // PPaaS unreachable; an AdviceReverse was queued
)

// Outcome is the result of Pay or Reverse.
type Outcome struct {
	Result              Result
	State               ppaas.State
	ClientTransactionID string
	TransactionID       string
	ProviderReference   string
	Method              Method
	Brand               string
	Amount              ppaas.Amount
	Reason              string
	// Enrichment is the merchant and acquirer PPaaS added to the transaction
	// (empty when the platform sent none).
	Enrichment ppaas.Enrichment
}

// Engine runs APM payments. It owns no goroutines: each Pay runs in its
// caller's goroutine and events are applied in the subscriber's.
type Engine struct {
	cfg     Config
	client  *Client
	rec     Recorder
	adv     Advisor
	display Display
	log     *slog.Logger

	mu       sync.Mutex
	byClient map[string]*txn
	byID     map[string]*txn
	scans    []*scanWait // merchantscan payments waiting for the terminal's scanner (scan.go)
}

// NewEngine returns an Engine. display may be nil.
func NewEngine(cfg Config, c *Client, rec Recorder, adv Advisor, display Display) (*Engine, error) {
	if c == nil || rec == nil || adv == nil {
		return nil, errors.New("new qr engine: client, recorder and advisor are required")
	}
	cfg = cfg.withDefaults()
	for name, m := range cfg.Brands {
		if m.PaymentType == "" || !m.Scenario.Valid() {
			return nil, fmt.Errorf("new qr engine: brand %q maps to invalid method %+v", name, m)
		}
	}
	if _, err := cfg.QRLevel.recovery(); err != nil {
		return nil, fmt.Errorf("new qr engine: %w", err)
	}
	return &Engine{
		cfg: cfg, client: c, rec: rec, adv: adv, display: display, log: cfg.Logger,
		byClient: map[string]*txn{}, byID: map[string]*txn{},
	}, nil
}

// Client is the PPaaS client the engine calls.
func (e *Engine) Client() *Client { return e.client }

// Method returns the method a brand maps to.
func (e *Engine) Method(brand string) (Method, bool) {
	for name, m := range e.cfg.Brands {
		if strings.EqualFold(name, brand) {
			return m, true
		}
	}
	return Method{}, false
}

// txn is one transaction in flight.
type txn struct {
	ctid   string
	brand  string
	method Method
	create ppaas.CreateRequest
	done   chan struct{} // closed when the state becomes final
	moved  chan struct{} // signalled (non-blocking) on every applied transition
	began  time.Time     // Pay was called; its create was sent later

	mu        sync.Mutex
	m         machine
	id        string
	reference string
	reason    string
	enrich    ppaas.Enrichment
}

type source struct {
	kind    string
	eventID string
	seq     int64
	reason  string
	ref     string
	id      string
	// passed, when set, is how an event's caller (ApplyEvent) learns that
	// the payment's state was final already: the update is not applied (nor
	// logged as ignored), the caller hands it on.
	passed *bool
}

// Pay runs one payment to an outcome. A non-nil error means no money could have
// moved: the request was invalid or PPaaS rejected it outright. Every other end
// — including abort through ctx (any cancellation is treated as the POS's
// Abort) — is an Outcome.
func (e *Engine) Pay(ctx context.Context, req PaymentRequest) (Outcome, error) {
	began := time.Now()
	method, ok := e.Method(req.Brand)
	if !ok {
		return Outcome{}, fmt.Errorf("qr pay: brand %q is not mapped to an APM", req.Brand)
	}
	if req.ClientTransactionID == "" {
		req.ClientTransactionID = uuid.NewString()
	}
	if req.OrderID == "" {
		req.OrderID = req.ClientTransactionID
	}
	terminalScan := method.Scenario == ppaas.MerchantScan && req.ScannedPaymentID == ""
	if terminalScan {
		code, err := e.awaitScan(ctx, req) // scan.go
		if err != nil {
			return Outcome{}, fmt.Errorf("qr pay: %w", err)
		}
		req.ScannedPaymentID = code
	}
	cr := ppaas.CreateRequest{
		PaymentType:         method.PaymentType,
		PaymentScenario:     method.Scenario,
		ScannedPaymentID:    req.ScannedPaymentID,
		ClientTransactionID: req.ClientTransactionID,
		PaymentAmount:       req.Amount,
		Order:               ppaas.Order{OrderID: req.OrderID, OrderDescription: req.OrderDescription},
	}
	if err := cr.Validate(); err != nil {
		return Outcome{}, fmt.Errorf("qr pay: %w", err)
	}
	if terminalScan {
		if err := e.recordScan(ctx, req); err != nil { // scan.go
			return Outcome{}, fmt.Errorf("qr pay: %w", err)
		}
	}
	t := &txn{
		ctid: req.ClientTransactionID, brand: req.Brand, method: method, create: cr, began: began,
		done: make(chan struct{}), moved: make(chan struct{}, 1),
	}
	if err := e.register(t); err != nil {
		return Outcome{}, err
	}
	defer e.unregister(t)
	log := e.log.With("client_transaction_id", t.ctid, "brand", req.Brand)
	if err := e.apply(ctx, t, ppaas.Created, source{kind: "agent"}); err != nil {
		return Outcome{}, fmt.Errorf("qr pay: %w", err)
	}
	start := time.Now()

	// Create is not cut short by an abort: without its answer the agent could
	// not cancel what PPaaS may already have created.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.CreateTimeout)
	failpoint.Hit("qr.create.before")
	created, err := e.client.Create(cctx, cr)
	cancel()
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Transaction == nil && ae.StatusCode != http.StatusConflict && !ae.AfterUncertain {
			_ = e.apply(ctx, t, ppaas.Declined, source{kind: "agent", reason: ae.Error()})
			return e.outcome(t, ""), fmt.Errorf("qr pay: %w", err)
		}
		// A conflict, or a refusal that carries a transaction, says something
		// exists at PPaaS for this clientTransactionId; a refusal of a retry
		// after an attempt that may have created it proves nothing: not a
		// clean refusal.
		log.Warn("qr create outcome unknown", "err", err)
		return e.unknown(ctx, t, "create: "+err.Error()), nil
	}
	failpoint.Hit("qr.created")
	e.index(t, created.TransactionID)
	t.mu.Lock()
	t.enrich = created.Enrichment
	t.mu.Unlock()
	log = log.With("transaction_id", created.TransactionID)
	if err := e.apply(ctx, t, created.Status, source{kind: "agent", seq: created.Sequence, ref: created.ProviderReference, reason: created.StatusReason}); err != nil {
		log.Error("qr record create", "err", err)
	}
	if created.QRCode != nil && !t.final() {
		e.showQR(ctx, t, created.QRCode)
	} else if t.method.Scenario == ppaas.MerchantScan && !t.final() {
		e.showScanned(ctx, t) // scan.go
	}

	timeout := time.NewTimer(e.cfg.Timeout - time.Since(start))
	defer timeout.Stop()
	sched := newPollSchedule(e.cfg)
	poll := time.NewTimer(sched.first())
	defer poll.Stop()
	aborted := ctx.Done()
	// confirm is armed when the timeout or an abort finds the consumer has
	// paid (Confirming): such a payment is not cancelled, it waits for its
	// provider's confirmation, up to the provider's bound.
	var confirm <-chan time.Time
	waitConfirm := func(why string) {
		if confirm != nil {
			return
		}
		d := e.confirmBound(t.method.PaymentType)
		log.Info("qr payment paid, waiting for the provider's confirmation instead of cancelling", "after", why, "bound", d)
		ct := time.NewTimer(d)
		confirm = ct.C
	}
	for {
		select {
		case <-t.done:
			return e.outcome(t, ""), nil
		case <-t.moved:
			poll.Reset(sched.first())
		case <-poll.C:
			poll.Reset(sched.tick(func() time.Duration { return e.pollOnce(ctx, t, log) }))
		case <-timeout.C:
			if t.state() == ppaas.Confirming {
				waitConfirm("timeout")
				continue
			}
			if o, paid := e.cancel(ctx, t, false, log); !paid {
				return o, nil
			}
			waitConfirm("timeout")
		case <-aborted:
			aborted = nil // the wait below must not spin on a closed channel
			log.Info("qr payment aborted", "cause", context.Cause(ctx))
			if t.state() == ppaas.Confirming {
				waitConfirm("abort")
				continue
			}
			if o, paid := e.cancel(ctx, t, true, log); !paid {
				return o, nil
			}
			waitConfirm("abort")
		case <-confirm:
			log.Warn("qr payment paid but not confirmed by its provider in time; outcome unknown, a reversal will refund it once confirmed")
			return e.unknown(ctx, t, "paid but not confirmed by the provider within "+e.confirmBound(t.method.PaymentType).String()), nil
		}
	}
}

// LongestConfirm is the longest a paid payment waits for its provider's
// confirmation, whatever its payment type: how long past an abort or its
// timeout a payment may still be running.
func (e *Engine) LongestConfirm() time.Duration {
	d := e.cfg.ConfirmTimeout
	for _, v := range e.cfg.ConfirmTimeouts {
		d = max(d, v)
	}
	return d
}

// confirmBound is how long a paid payment of paymentType waits for its
// provider's confirmation.
func (e *Engine) confirmBound(paymentType string) time.Duration {
	if d, ok := e.cfg.ConfirmTimeouts[paymentType]; ok && d > 0 {
		return d
	}
	return e.cfg.ConfirmTimeout
}

// cancel ends a transaction the agent gives up on (timeout) or the POS aborted.
// It uses a fresh bounded context: the caller's may already be cancelled. paid
// reports that PPaaS refused the cancel because the consumer has paid and the
// provider's confirmation is awaited (Confirming): the caller waits for it.
func (e *Engine) cancel(ctx context.Context, t *txn, aborted bool, log *slog.Logger) (_ Outcome, paid bool) {
	cctx, stop := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.CancelTimeout)
	defer stop()
	failpoint.Hit("qr.cancel.before")
	got, err := e.client.Cancel(cctx, t.txID())
	var ae *APIError
	switch {
	case err == nil:
		to := got.Status
		if to == ppaas.Cancelled && !aborted {
			to = ppaas.Expired
		}
		if err := e.apply(cctx, t, to, source{kind: "cancel", seq: got.Sequence, reason: reasonFor(aborted)}); err != nil {
			log.Error("qr record cancel", "err", err)
		}
	case errors.As(err, &ae) && ae.Transaction != nil:
		// Decided before the cancel landed: the provider's answer wins.
		if err := e.apply(cctx, t, ae.Transaction.Status, source{kind: "cancel", seq: ae.Transaction.Sequence, ref: ae.Transaction.ProviderReference}); err != nil {
			log.Error("qr record cancel", "err", err)
		}
	default:
		log.Warn("qr cancel failed, outcome unknown", "err", err)
		if !t.final() && t.state() != ppaas.Confirming {
			return e.unknown(cctx, t, "cancel: "+err.Error()), false
		}
	}
	if t.state() == ppaas.Confirming {
		return Outcome{}, true
	}
	if !t.final() {
		// PPaaS accepted the cancel yet reports a live state; treat as unknown
		// so the outbox makes sure it ends.
		return e.unknown(cctx, t, "cancel left transaction in "+string(t.state())), false
	}
	// The cancel's own event may have landed first (state cancelled): what the
	// POS needs to know is why the agent cancelled.
	var res Result
	if s := t.state(); s == ppaas.Cancelled || s == ppaas.Expired {
		res = ResultExpired
		if aborted {
			res = ResultAborted
		}
	}
	return e.outcome(t, res), false
}

func reasonFor(aborted bool) string {
	if aborted {
		return "aborted by the POS"
	}
	return "consumer did not pay in time"
}

// unknown records the unknown state and queues a reverse advice.
func (e *Engine) unknown(ctx context.Context, t *txn, reason string) Outcome {
	ctx = context.WithoutCancel(ctx)
	if err := e.apply(ctx, t, Unknown, source{kind: "agent", reason: reason}); err != nil {
		e.log.Error("qr record unknown", "client_transaction_id", t.ctid, "err", err)
	}
	a := Advice{Kind: AdviceReverse, ClientTransactionID: t.ctid, TransactionID: t.txID(), Create: t.create, Amount: t.create.PaymentAmount, Reason: reason, At: time.Now(), Started: t.began}
	if err := e.adv.Advise(ctx, a); err != nil {
		e.log.Error("qr queue reverse advice", "client_transaction_id", t.ctid, "err", err)
	}
	o := e.outcome(t, ResultUnknown)
	o.Reason = reason
	return o
}

// HandleEvent applies one provider event. It returns once the resulting
// transition is handed to the Recorder; the caller may then acknowledge it. The
// agent's Recorder defers the write to the payment's next durable one: an event
// acknowledged and then lost in a crash is harmless, because restart recovery
// reads the transaction's state back from PPaaS. Events for transactions not in
// flight (late, or after a restart) are logged and accepted: polling and
// TransactionStatus own those.
func (e *Engine) HandleEvent(ctx context.Context, ev ppaas.Event) error {
	_, err := e.handleEvent(ctx, ev, false)
	return err
}

// handleEvent is HandleEvent; with pass, an event of a payment no longer in
// flight, or whose state is final already, is neither applied nor logged:
// decided reports it (ApplyEvent).
func (e *Engine) handleEvent(ctx context.Context, ev ppaas.Event, pass bool) (decided bool, err error) {
	e.mu.Lock()
	t := e.byClient[ev.ClientTransactionID]
	if t == nil {
		t = e.byID[ev.TransactionID]
	}
	e.mu.Unlock()
	if t == nil {
		if pass {
			return true, nil
		}
		e.log.Info("qr event for no transaction in flight ignored",
			"event_id", logID(ev.EventID), "transaction_id", logID(ev.TransactionID), "status", ev.Status, "sequence", ev.Sequence)
		return false, nil
	}
	if ev.Type != ppaas.EventTypeStatus {
		e.log.Info("qr event type ignored", "event_id", logID(ev.EventID), "type", logID(ev.Type))
		return false, nil
	}
	src := source{kind: "event", eventID: ev.EventID, seq: ev.Sequence, reason: ev.StatusReason, ref: ev.ProviderReference, id: ev.TransactionID}
	if pass {
		src.passed = &decided
	}
	err = e.apply(ctx, t, ev.Status, src)
	return decided, err
}

// logID bounds a platform-given id for a log line. DecodeEvent refuses an
// event with a longer id; an event HandleEvent is given otherwise (the
// after-sale sweep's, made from a listed transaction) is clipped here.
func logID(v string) string { return ppaas.Clip(v, ppaas.MaxIDLen) }

// apply moves t to state `to` if legal and in order, recording it first.
func (e *Engine) apply(ctx context.Context, t *txn, to ppaas.State, src source) error {
	t.mu.Lock()
	from := t.m.state
	if src.id != "" && t.id == "" {
		t.id = src.id
	}
	switch {
	case from.Final():
		t.mu.Unlock()
		if src.passed != nil {
			*src.passed = true // the caller hands it on (ApplyEvent)
			return nil
		}
		if to != from {
			e.log.Info("qr late update after final state ignored", "client_transaction_id", t.ctid,
				"state", from, "update", to, "source", src.kind, "event_id", src.eventID, "sequence", src.seq)
		}
		return nil
	case src.seq > 0 && src.seq <= t.m.lastSeq:
		last := t.m.lastSeq
		t.mu.Unlock()
		e.log.Info("qr out-of-order update ignored", "client_transaction_id", t.ctid,
			"state", from, "update", to, "source", src.kind, "event_id", src.eventID, "sequence", src.seq, "last_sequence", last)
		return nil
	case to == from:
		t.m.lastSeq = max(t.m.lastSeq, src.seq)
		t.mu.Unlock()
		return nil
	}
	if from != "" {
		if err := t.m.move(to); err != nil {
			t.mu.Unlock()
			e.log.Warn("qr update ignored", "client_transaction_id", t.ctid, "source", src.kind, "event_id", src.eventID, "err", err)
			return nil
		}
	}
	tr := Transition{
		ClientTransactionID: t.ctid, TransactionID: t.id, From: from, To: to, At: time.Now(),
		Source: src.kind, EventID: src.eventID, Sequence: src.seq, Reason: src.reason,
	}
	if err := e.rec.Record(ctx, tr); err != nil {
		t.mu.Unlock()
		return fmt.Errorf("record transition %s → %s: %w", from, to, err)
	}
	t.m.apply(tr)
	if src.ref != "" {
		t.reference = src.ref
	}
	if src.reason != "" {
		t.reason = src.reason
	}
	amount := t.create.PaymentAmount
	t.mu.Unlock()

	if to.Final() {
		close(t.done)
	} else {
		select {
		case t.moved <- struct{}{}:
		default:
		}
	}
	if e.display != nil && to != ppaas.Created && to != ppaas.AwaitingConsumer {
		if err := e.display.Show(ctx, screen(t.ctid, t.txID(), to, message(to), amount)); err != nil {
			e.log.Warn("qr display status", "err", err)
		}
	}
	return nil
}

// screen is what the terminal shows of a transaction.
func screen(ctid, txID string, st ppaas.State, msg string, a ppaas.Amount) display.Screen {
	return display.Screen{ClientTransactionID: ctid, TransactionID: txID, State: string(st), Message: msg, Amount: a.Amount, Currency: a.Currency}
}

func message(s ppaas.State) string {
	switch s {
	case ppaas.Pending:
		return "Processing payment…"
	case ppaas.Confirming:
		return "Paid, waiting for confirmation…"
	case ppaas.Approved:
		return "Payment approved"
	case ppaas.Declined:
		return "Payment declined"
	case ppaas.Cancelled, ppaas.Expired:
		return "Payment cancelled"
	case Unknown:
		return "Payment status unknown"
	}
	return ""
}

func (e *Engine) showQR(ctx context.Context, t *txn, q *ppaas.QRCode) {
	if e.display == nil {
		return
	}
	img, err := showable(q, e.cfg.QRLevel, e.cfg.QRSize)
	if err != nil {
		e.log.Error("qr payload cannot be shown", "client_transaction_id", t.ctid, "err", err)
		return
	}
	s := screen(t.ctid, t.txID(), ppaas.AwaitingConsumer, "Scan to pay", t.create.PaymentAmount)
	s.QRPayload, s.QR = img.Payload, img
	if err := e.display.Show(ctx, s); err != nil {
		e.log.Warn("qr display qr", "err", err)
	}
}

func (e *Engine) register(t *txn) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, dup := e.byClient[t.ctid]; dup {
		return fmt.Errorf("qr pay: clientTransactionId %s already in flight", t.ctid)
	}
	e.byClient[t.ctid] = t
	return nil
}

func (e *Engine) index(t *txn, id string) {
	t.mu.Lock()
	t.id = id
	t.mu.Unlock()
	e.mu.Lock()
	e.byID[id] = t
	e.mu.Unlock()
}

func (e *Engine) unregister(t *txn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.byClient, t.ctid)
	if id := t.txID(); id != "" {
		delete(e.byID, id)
	}
}

func (t *txn) txID() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.id
}

func (t *txn) state() ppaas.State {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m.state
}

func (t *txn) final() bool { return t.state().Final() }

func (e *Engine) outcome(t *txn, override Result) Outcome {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := Outcome{
		State: t.m.state, ClientTransactionID: t.ctid, TransactionID: t.id, ProviderReference: t.reference,
		Method: t.method, Brand: t.brand, Amount: t.create.PaymentAmount, Reason: t.reason, Enrichment: t.enrich,
	}
	switch t.m.state {
	case ppaas.Approved:
		o.Result = ResultApproved
	case ppaas.Declined:
		o.Result = ResultDeclined
	case ppaas.Cancelled:
		o.Result = ResultCancelled
	case ppaas.Expired:
		o.Result = ResultExpired
	default:
		o.Result = ResultUnknown
	}
	if override != "" {
		o.Result = override
	}
	return o
}

// ReverseRequest identifies a transaction to reverse.
type ReverseRequest struct {
	ClientTransactionID string
	TransactionID       string              // may be empty if Create is set
	Create              ppaas.CreateRequest // replayed idempotently to find TransactionID
	Reason              string
	// A merchantscan Create is never replayed (it would charge the
	// consumer's code): the transaction is located (Locate) among those
	// created from Started (when the payment began) to SentBy (zero:
	// CreateSentBy(Started)).
	Started, SentBy time.Time
}

// ErrNotSettled marks a reversal PPaaS has taken but not completed (a cancel
// answered with a live state, an asynchronous refund still pending, a payment
// waiting for its provider's confirmation): not a definitive answer. The caller
// keeps the advice and asks again (a status read tells when it is done).
var ErrNotSettled = errors.New("reversal not settled at PPaaS yet")

// ErrWrongTransaction: the PPaaS transaction a reversal was given belongs to
// another payment (its clientTransactionId is not the reversal's). Nothing
// is cancelled or refunded; a person must look.
var ErrWrongTransaction = errors.New("PPaaS transaction belongs to another payment")

// Reverse makes sure a transaction does not stand: cancelled if undecided,
// refunded in full if approved. It is idempotent and safe to retry. Only a
// definitive PPaaS answer is an Outcome: a final status read, a cancel answered
// with a final state, a refund answered "refunded" (or a status read showing the
// amount refunded). Every other answer is an error — ErrUnreachable or
// ErrNotSettled to try again later, an *APIError for a refusal — and never
// means "no money moved": a 404 from PPaaS about a transaction it gave the
// agent an id for is an inconsistency to retry, not proof it never existed.
func (e *Engine) Reverse(ctx context.Context, r ReverseRequest) (Outcome, error) {
	return e.reverse(ctx, r, 0)
}

// reverseError names the PPaaS transaction a failed reversal is about.
func reverseError(id string, err error) error {
	return fmt.Errorf("qr reverse of PPaaS transaction %s: %w", id, err)
}

// errNoReference: Where was given neither a PPaaS id nor a create to replay.
var errNoReference = errors.New("neither transactionId nor create request given")

// Where asks PPaaS where a payment stands: by its PPaaS transactionID when
// known, else by replaying its create (idempotent per clientTransactionId),
// which returns the transaction the lost call created, or creates one nothing
// has paid (for the caller to cancel). It is the one place this question is
// asked: Reverse and the agent's recovery after a restart both use it. A
// merchantscan create is never replayed (ErrWouldCharge): PPaaS would charge
// the consumer's code at once; such a payment is found with Locate.
func (e *Engine) Where(ctx context.Context, transactionID string, create ppaas.CreateRequest) (ppaas.Transaction, error) {
	if transactionID != "" {
		return e.client.Get(ctx, transactionID)
	}
	if create.ClientTransactionID == "" {
		return ppaas.Transaction{}, fmt.Errorf("qr: where does the payment stand: %w", errNoReference)
	}
	if create.PaymentScenario == ppaas.MerchantScan {
		return ppaas.Transaction{}, fmt.Errorf("qr: where does payment %s stand: %w", create.ClientTransactionID, ErrWouldCharge)
	}
	return e.client.Create(ctx, create)
}

// locate finds the transaction of a merchantscan payment r names without its
// PPaaS id (see Locate).
func (e *Engine) locate(ctx context.Context, r ReverseRequest) (ppaas.Transaction, error) {
	ctid := r.Create.ClientTransactionID
	if ctid == "" {
		ctid = r.ClientTransactionID
	}
	sentBy := r.SentBy
	if sentBy.IsZero() && !r.Started.IsZero() {
		sentBy = e.CreateSentBy(r.Started)
	}
	return e.Locate(ctx, ctid, r.Started, sentBy)
}

func (e *Engine) reverse(ctx context.Context, r ReverseRequest, depth int) (Outcome, error) {
	id := r.TransactionID
	var (
		cur ppaas.Transaction
		err error
	)
	if id == "" && r.Create.PaymentScenario == ppaas.MerchantScan {
		// Not replayed (that would charge the consumer's code): located.
		cur, err = e.locate(ctx, r)
		if errors.Is(err, ErrNeverCreated) {
			return Outcome{Result: ResultCancelled, State: NeverCreated, ClientTransactionID: r.ClientTransactionID,
				Method: Method{PaymentType: r.Create.PaymentType, Scenario: r.Create.PaymentScenario}, Amount: r.Create.PaymentAmount, Reason: r.Reason}, nil
		}
	} else {
		cur, err = e.Where(ctx, id, r.Create)
	}
	if id == "" {
		// Through a replayed consumerscan create: in both of its cases nothing
		// is charged yet; or through the listing, which found the transaction
		// the payment's own create made. The state is read again right before
		// acting on it.
		if err != nil {
			return Outcome{}, fmt.Errorf("qr reverse: %w", err)
		}
		id = cur.TransactionID
		cur, err = e.Where(ctx, id, ppaas.CreateRequest{})
	}
	if err != nil {
		return Outcome{}, reverseError(id, err)
	}
	if r.ClientTransactionID != "" && cur.ClientTransactionID != "" && cur.ClientTransactionID != r.ClientTransactionID {
		return Outcome{}, fmt.Errorf("qr reverse: PPaaS transaction %s is clientTransactionId %s, not %s: %w",
			id, cur.ClientTransactionID, r.ClientTransactionID, ErrWrongTransaction)
	}
	ctid := cur.ClientTransactionID
	if ctid == "" {
		ctid = r.ClientTransactionID
	}
	o := Outcome{ClientTransactionID: ctid, TransactionID: id, ProviderReference: cur.ProviderReference,
		Method: Method{PaymentType: cur.PaymentType, Scenario: cur.PaymentScenario}, Amount: cur.PaymentAmount, Reason: r.Reason}
	final := cur.Status
	switch {
	case cur.Status == ppaas.Approved && cur.RefundedAmount >= cur.PaymentAmount.Amount:
		final = ppaas.Refunded // an asynchronous refund completed
	case cur.Status == ppaas.Approved:
		ref, err := e.Refund(ctx, RefundOrder{TransactionID: id, ClientTransactionID: ctid, ClientRefundID: ctid + "-reversal",
			Amount: ppaas.Amount{Amount: cur.PaymentAmount.Amount - cur.RefundedAmount, Currency: cur.PaymentAmount.Currency}})
		if err != nil {
			return Outcome{}, reverseError(id, err)
		}
		if !ref.Done() {
			return Outcome{}, reverseError(id, fmt.Errorf("refund %s is %q: %w", ref.RefundID, ref.Status, ErrNotSettled))
		}
		final = ppaas.Refunded
	case cur.Status == ppaas.Confirming:
		// Paid, waiting for the provider: neither cancellable nor refundable
		// yet. Once confirmed (approved) it is refunded.
		return Outcome{}, reverseError(id, fmt.Errorf("awaits its provider's confirmation: %w", ErrNotSettled))
	case !cur.Status.Final():
		got, err := e.client.Cancel(ctx, id)
		var ae *APIError
		switch {
		case errors.As(err, &ae) && ae.Transaction != nil && ae.Transaction.Status == ppaas.Approved && depth < 2:
			// Approved between get and cancel: go again, which refunds.
			return e.reverse(ctx, ReverseRequest{ClientTransactionID: ctid, TransactionID: id, Reason: r.Reason}, depth+1)
		case errors.As(err, &ae) && ae.Transaction != nil && ae.Transaction.Status.Final() && ae.Transaction.Status != ppaas.Approved:
			final = ae.Transaction.Status
		case errors.As(err, &ae) && ae.Transaction != nil:
			return Outcome{}, reverseError(id, fmt.Errorf("cancel refused, transaction %s: %w", ae.Transaction.Status, ErrNotSettled))
		case err != nil:
			return Outcome{}, reverseError(id, err)
		case !got.Status.Final() || got.Status == ppaas.Approved:
			// PPaaS took the cancel but has not settled it: not yet a reversal.
			// The caller retries (an advice stays queued) until it is final.
			return Outcome{}, reverseError(id, fmt.Errorf("cancel answered %s: %w", got.Status, ErrNotSettled))
		default:
			final = got.Status
			if err := e.rec.Record(ctx, Transition{ClientTransactionID: ctid, TransactionID: id, From: cur.Status, To: final,
				At: time.Now(), Source: "cancel", Reason: r.Reason}); err != nil {
				return Outcome{}, reverseError(id, err)
			}
		}
	}
	o.State = final
	o.Result = ResultCancelled
	if final == ppaas.Declined {
		o.Result = ResultDeclined
	}
	return o, nil
}

// legacyLookback is how far before an advice without Started its create is
// looked for.
const legacyLookback = 24 * time.Hour

// ResolveAdvice carries out an Advice the Engine queued (called by the outbox).
func (e *Engine) ResolveAdvice(ctx context.Context, a Advice) (Outcome, error) {
	if a.Kind != AdviceReverse {
		return Outcome{}, fmt.Errorf("qr resolve advice: unknown kind %q", a.Kind)
	}
	r := ReverseRequest{ClientTransactionID: a.ClientTransactionID, TransactionID: a.TransactionID, Create: a.Create, Reason: a.Reason,
		Started: a.Started, SentBy: a.At}
	if r.Started.IsZero() && !a.At.IsZero() {
		// An older version's advice: the create was sent before the advice
		// was queued, within a day unless the agent stayed down longer.
		r.Started = a.At.Add(-legacyLookback)
	}
	return e.Reverse(ctx, r)
}

// RefundOrder asks to refund (part of) an approved transaction.
type RefundOrder struct {
	TransactionID       string
	ClientTransactionID string
	Amount              ppaas.Amount
	ClientRefundID      string // idempotency key; generated when empty
}

// Refund refunds an approved transaction and records the transition once the
// refund is done (an asynchronous one answers "pending": check ref.Done).
func (e *Engine) Refund(ctx context.Context, r RefundOrder) (ppaas.Refund, error) {
	if r.ClientRefundID == "" {
		r.ClientRefundID = uuid.NewString()
	}
	ref, err := e.client.Refund(ctx, r.TransactionID, ppaas.RefundRequest{ClientRefundID: r.ClientRefundID, Amount: r.Amount})
	if err != nil {
		return ppaas.Refund{}, fmt.Errorf("qr refund: %w", err)
	}
	if !ref.Done() {
		return ref, nil // asynchronous: refunded once a status read says so
	}
	if err := e.rec.Record(ctx, Transition{ClientTransactionID: r.ClientTransactionID, TransactionID: r.TransactionID,
		From: ppaas.Approved, To: ppaas.Refunded, At: time.Now(), Source: "refund", Reason: "refund " + ref.RefundID}); err != nil {
		return ref, fmt.Errorf("qr refund: %w", err)
	}
	return ref, nil
}
