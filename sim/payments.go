package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/termagent/termagent/ppaas"
)

// ProviderMode is how the providers decide: by the control API, or at once.
type ProviderMode string

const (
	// ProviderManual waits for the control API: pay, decline or abandon.
	ProviderManual ProviderMode = "manual"
	// ProviderApprove approves every transaction right after create (benchmarks, demo).
	ProviderApprove ProviderMode = "approve"
	// ProviderDecline declines every transaction right after create.
	ProviderDecline ProviderMode = "decline"
)

// PaymentFaults are the fault knobs of the qrcode-payment side. Counts apply to
// the next N occurrences and decrease as they are used.
type PaymentFaults struct {
	// CreateErrors answers 503 to the next N creates *after* the transaction was
	// created, as if the response were lost: only idempotency saves a double charge.
	CreateErrors int `json:"createErrors"`
	// DropEvents silently drops the next N events.
	DropEvents int `json:"dropEvents"`
	// DuplicateEvents publishes the next N events twice.
	DuplicateEvents int `json:"duplicateEvents"`
	// ReorderEvents holds back the next N events and publishes each one after the
	// event that follows it.
	ReorderEvents int `json:"reorderEvents"`
	// DelayEvents holds each of the next N events back for EventDelayMS
	// (default 1000) before publishing it: a slow provider or broker path.
	DelayEvents  int `json:"delayEvents"`
	EventDelayMS int `json:"eventDelayMs"`
}

// SimTransaction is the simulator's record of a QR transaction.
type SimTransaction struct {
	ppaas.Transaction
	Serial       string    `json:"serial"`
	CreateCalls  int       `json:"createCalls"` // create requests seen with this clientTransactionId
	Events       int       `json:"events"`      // events published (before faults)
	Abandoned    bool      `json:"abandoned"`
	FinalEventAt time.Time `json:"finalEventAt"` // when the event carrying the final status was handed to the broker
	// Charges counts the moves to approved: more than one would be a double charge.
	Charges int `json:"charges"`
	// RefundPending is the amount of refunds accepted but not completed yet
	// (asynchronous refunds); RefundedAmount grows when each completes.
	RefundPending int64 `json:"refundPending"`
	// Provider is the provider's raw view carried by the last event (replaced,
	// never mutated, so copies handed out stay valid).
	Provider map[string]string `json:"provider,omitempty"`
	refunds  map[string]ppaas.Refund
	ps       any // the provider's own per-transaction state
}

// publisher delivers an event payload to a device's topic (the broker).
type publisher interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

type outgoing struct {
	topic   string
	payload []byte
	queued  time.Time // when pushLocked queued it (queueWait)
}

// payments is the qrcode-payment API and its providers.
type payments struct {
	log       *slog.Logger
	now       func() time.Time
	pub       publisher
	busy      *atomic.Int64 // nanoseconds spent publishing events (the simulator's time)
	spans     *busyTime     // the same spans, for the wall-time union (PaymentAPITime)
	queueWait atomic.Int64  // ns events waited between their decision and their publishing (EventQueueWait)
	cfg       ProvidersConfig
	providers map[string]provider // by paymentType; read-only after newPayments

	mu       sync.Mutex
	mode     ProviderMode
	faults   PaymentFaults
	held     *outgoing // an event held back by ReorderEvents
	byID     map[string]*SimTransaction
	byClient map[string]*SimTransaction // serial + "/" + clientTransactionId
	byRef    map[string]*SimTransaction // providerReference, for provider notifications
	charges  map[string]int             // serial → approved transactions
	rejected int                        // provider notifications dropped for a bad signature
	// spellings rewrite statuses in API answers and events (the adversarial
	// PPaaS's "real platform spellings"); refunds says how refunds complete.
	spellings map[ppaas.State]string
	refunds   RefundMode
	// decision is the text written on every final status (adversary.go).
	decision DecisionText

	// Provider timers (delayed confirmation, deadlines, callback retries): each
	// one counted in timerWG until it ran or close stopped it.
	timers    map[uint64]*time.Timer
	nextTimer uint64
	closed    bool
	timerWG   sync.WaitGroup

	queue chan outgoing
	stop  chan struct{}
	wg    sync.WaitGroup
}

func newPayments(log *slog.Logger, now func() time.Time, mode ProviderMode, pc ProvidersConfig) (*payments, error) {
	if mode == "" {
		mode = ProviderManual
	}
	pc = pc.withDefaults()
	if err := pc.validate(); err != nil {
		return nil, fmt.Errorf("providers: %w", err)
	}
	return &payments{
		log: log, now: now, mode: mode, cfg: pc, providers: newProviders(pc),
		byID: map[string]*SimTransaction{}, byClient: map[string]*SimTransaction{}, byRef: map[string]*SimTransaction{},
		charges: map[string]int{}, timers: map[uint64]*time.Timer{},
		queue: make(chan outgoing, 1024), stop: make(chan struct{}),
	}, nil
}

// afterLocked runs f with pm.mu held after d, unless close comes first. Timer
// callbacks are the providers' only goroutines; close stops and waits for them.
func (pm *payments) afterLocked(d time.Duration, f func()) {
	if pm.closed {
		return
	}
	id := pm.nextTimer
	pm.nextTimer++
	pm.timerWG.Add(1)
	pm.timers[id] = time.AfterFunc(d, func() {
		defer pm.timerWG.Done()
		pm.mu.Lock()
		defer pm.mu.Unlock()
		if _, ok := pm.timers[id]; !ok {
			return // close got here first
		}
		delete(pm.timers, id)
		f()
	})
}

// start runs the single publishing goroutine: one goroutine keeps the events of
// a transaction in the order they were decided.
func (pm *payments) start(pub publisher) {
	pm.pub = pub
	pm.wg.Add(1)
	go func() {
		defer pm.wg.Done()
		for {
			select {
			case <-pm.stop:
				return
			case o := <-pm.queue:
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				pm.spans.enter()
				began := time.Now()
				pm.queueWait.Add(int64(began.Sub(o.queued)))
				err := pm.pub.Publish(ctx, o.topic, o.payload)
				if pm.busy != nil {
					pm.busy.Add(int64(time.Since(began)))
				}
				pm.spans.exit()
				if err != nil {
					// The broker is down or refused: the event is lost, as a real
					// one would be; the device's polling recovers the state.
					pm.log.Warn("simulated PPaaS event not published", "topic", o.topic, "err", err)
				}
				cancel()
			}
		}
	}()
}

func (pm *payments) close() {
	// Timers first: a timer firing now would otherwise queue an event to a
	// publisher that is going away.
	pm.mu.Lock()
	pm.closed = true
	for id, t := range pm.timers {
		if t.Stop() {
			pm.timerWG.Done()
		}
		delete(pm.timers, id)
	}
	pm.mu.Unlock()
	pm.timerWG.Wait()
	select {
	case <-pm.stop:
	default:
		close(pm.stop)
	}
	pm.wg.Wait()
}

func (pm *payments) routes(mux *http.ServeMux, device func(http.HandlerFunc) http.HandlerFunc) {
	mux.HandleFunc("POST /qrcode-payment/v1/transactions", device(pm.handleCreate))
	mux.HandleFunc("GET /qrcode-payment/v1/transactions/{id}", device(pm.handleGet))
	mux.HandleFunc("GET /qrcode-payment/v1/transactions", device(pm.handleList)) // issue 14: assumed listing
	mux.HandleFunc("POST /qrcode-payment/v1/transactions/{id}/cancel", device(pm.handleCancel))
	mux.HandleFunc("POST /qrcode-payment/v1/transactions/{id}/refund", device(pm.handleRefund))
}

func apiError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": code, "message": msg})
}

func (pm *payments) handleCreate(w http.ResponseWriter, r *http.Request) {
	dev, _ := DeviceFrom(r.Context())
	var req ppaas.CreateRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", "body: "+err.Error())
		return
	}
	if err := req.Validate(); err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if _, err := uuid.Parse(req.ClientTransactionID); err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", "clientTransactionId is not a UUID")
		return
	}
	prov := pm.providers[req.PaymentType]
	if prov == nil {
		apiError(w, http.StatusUnprocessableEntity, "unsupported_payment_type", "paymentType "+req.PaymentType+" is not offered to this merchant")
		return
	}
	key := dev.Serial + "/" + req.ClientTransactionID
	var snap *ppaas.Transaction
	pm.mu.Lock()
	tx, existed := pm.byClient[key]
	if existed {
		if tx.PaymentAmount != req.PaymentAmount || tx.PaymentType != req.PaymentType {
			pm.mu.Unlock()
			apiError(w, http.StatusConflict, "duplicate_client_transaction_id", "clientTransactionId already used with different content")
			return
		}
	} else {
		now := pm.now()
		tx = &SimTransaction{
			Transaction: ppaas.Transaction{
				TransactionID:       "qr-" + uuid.NewString(),
				ClientTransactionID: req.ClientTransactionID,
				PaymentType:         req.PaymentType,
				PaymentScenario:     req.PaymentScenario,
				Status:              ppaas.AwaitingConsumer,
				PaymentAmount:       req.PaymentAmount,
				Order:               req.Order,
				CreatedAt:           now,
				UpdatedAt:           now,
				Enrichment:          enrichment(dev), // sim/enrich.go
			},
			Serial:  dev.Serial,
			refunds: map[string]ppaas.Refund{},
		}
		if err := prov.create(pm, tx, req); err != nil {
			pm.mu.Unlock()
			apiError(w, http.StatusUnprocessableEntity, "provider_refused", err.Error())
			return
		}
		pm.byClient[key] = tx
		pm.byID[tx.TransactionID] = tx
		pm.byRef[tx.ProviderReference] = tx
		// The answer is the state before the provider decides: a decision,
		// however quick, reaches the device as events.
		created := tx.Transaction
		snap = &created
		pm.autoLocked(prov, tx)
	}
	tx.CreateCalls++
	lost := pm.faults.CreateErrors > 0
	if lost {
		pm.faults.CreateErrors--
	}
	body := tx.Transaction
	if snap != nil {
		body = *snap
	}
	out := pm.spelledLocked(body)
	pm.mu.Unlock()

	if lost {
		apiError(w, http.StatusServiceUnavailable, "injected_fault", "response lost after create")
		return
	}
	status := http.StatusCreated
	if existed {
		status = http.StatusOK
	}
	writeJSON(w, status, out)
}

// owned returns the device's transaction or writes 404.
func (pm *payments) owned(w http.ResponseWriter, r *http.Request) (*SimTransaction, bool) {
	dev, _ := DeviceFrom(r.Context())
	tx := pm.byID[r.PathValue("id")]
	if tx == nil || tx.Serial != dev.Serial {
		apiError(w, http.StatusNotFound, "not_found", "no such transaction")
		return nil, false
	}
	return tx, true
}

func (pm *payments) handleGet(w http.ResponseWriter, r *http.Request) {
	pm.mu.Lock()
	tx, ok := pm.owned(w, r)
	if !ok {
		pm.mu.Unlock()
		return
	}
	body := pm.spelledLocked(tx.Transaction)
	pm.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (pm *payments) handleCancel(w http.ResponseWriter, r *http.Request) {
	pm.mu.Lock()
	tx, ok := pm.owned(w, r)
	if !ok {
		pm.mu.Unlock()
		return
	}
	switch tx.Status {
	case ppaas.Cancelled, ppaas.Expired:
		// Idempotent: a retried cancel gets the same answer.
	case ppaas.Created, ppaas.AwaitingConsumer, ppaas.Pending, pennymaticConfirming:
		// PPaaS takes the cancel even once the consumer has paid (confirming):
		// not cancelling then is the terminal's duty; Pennymatic's record says
		// a refund is owed.
		pm.setLocked(tx, ppaas.Cancelled, "cancelled by the terminal", pm.providers[tx.PaymentType].raw(tx, ppaas.Cancelled))
	default:
		body := pm.spelledLocked(tx.Transaction)
		pm.mu.Unlock()
		writeJSON(w, http.StatusConflict, map[string]any{"error": "already_decided", "message": "transaction is " + string(body.Status), "transaction": body})
		return
	}
	body := pm.spelledLocked(tx.Transaction)
	pm.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (pm *payments) handleRefund(w http.ResponseWriter, r *http.Request) {
	var req ppaas.RefundRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", "body: "+err.Error())
		return
	}
	if req.ClientRefundID == "" || req.Amount.Amount <= 0 {
		apiError(w, http.StatusBadRequest, "invalid_request", "clientRefundId and a positive amount are required")
		return
	}
	pm.mu.Lock()
	defer pm.mu.Unlock()
	tx, ok := pm.owned(w, r)
	if !ok {
		return
	}
	if done, ok := tx.refunds[req.ClientRefundID]; ok {
		writeJSON(w, http.StatusOK, pm.spelledRefundLocked(done))
		return
	}
	if tx.Status != ppaas.Approved {
		writeJSON(w, http.StatusConflict, map[string]any{"error": "not_refundable", "message": "transaction is " + string(tx.Status), "transaction": pm.spelledLocked(tx.Transaction)})
		return
	}
	if req.Amount.Currency != tx.PaymentAmount.Currency || tx.RefundedAmount+tx.RefundPending+req.Amount.Amount > tx.PaymentAmount.Amount {
		apiError(w, http.StatusUnprocessableEntity, "invalid_amount", "refund exceeds the amount paid or currency differs")
		return
	}
	plan, refusal := pm.refundPlanLocked(tx, req) // the provider's refund behaviour: provider_refund.go
	if refusal != "" {
		apiError(w, http.StatusUnprocessableEntity, "not_refundable", refusal)
		return
	}
	ref := ppaas.Refund{RefundID: "rf-" + uuid.NewString(), ClientRefundID: req.ClientRefundID, TransactionID: tx.TransactionID,
		Status: refundDone, Amount: req.Amount, CreatedAt: pm.now()}
	if plan.async {
		// Shared contract 3: accepted, not done; the transaction stays
		// approved until the refund completes.
		ref.Status = refundPending
		tx.refunds[req.ClientRefundID] = ref
		tx.RefundPending += req.Amount.Amount
		if d := plan.delay; d > 0 {
			id := req.ClientRefundID
			pm.afterLocked(d, func() { pm.completeRefundLocked(tx, id) })
		}
		writeJSON(w, http.StatusOK, pm.spelledRefundLocked(ref))
		return
	}
	tx.refunds[req.ClientRefundID] = ref
	tx.RefundedAmount += req.Amount.Amount
	if tx.RefundedAmount == tx.PaymentAmount.Amount {
		pm.setLocked(tx, ppaas.Refunded, "refunded", pm.providers[tx.PaymentType].raw(tx, ppaas.Refunded))
	}
	writeJSON(w, http.StatusOK, pm.spelledRefundLocked(ref))
}

// autoLocked applies the provider mode to a new transaction: manual waits for
// the control API, approve and decline act at once (benchmarks, demo).
func (pm *payments) autoLocked(prov provider, tx *SimTransaction) {
	if _, ok := prov.(generic); ok {
		if pm.mode == ProviderManual && tx.PaymentScenario == ppaas.MerchantScan {
			generic{}.scannedLocked(pm, tx) // the scanned code decides (provider.go)
			return
		}
		switch pm.mode {
		case ProviderApprove:
			pm.decideLocked(tx, ppaas.Approved, "")
		case ProviderDecline:
			pm.decideLocked(tx, ppaas.Declined, "declined by provider")
		}
		return
	}
	action := map[ProviderMode]string{ProviderApprove: "pay", ProviderDecline: "decline"}[pm.mode]
	if action == "" {
		return
	}
	if err := prov.act(pm, tx, action, nil); err != nil {
		pm.log.Warn("simulated provider auto mode", "payment_type", tx.PaymentType, "action", action, "err", err)
	}
}

// decideLocked is the generic provider's decision: pending, then the final status.
func (pm *payments) decideLocked(tx *SimTransaction, final ppaas.State, reason string) {
	raw := generic{}.raw(tx, final)
	pm.setLocked(tx, ppaas.Pending, "consumer confirmed in wallet", raw)
	pm.setLocked(tx, final, reason, raw)
}

// setLocked changes a transaction's status and queues its event, carrying the
// provider's raw view. It returns the event payload (nil if it could not be
// encoded) so a provider can deliver it again.
func (pm *payments) setLocked(tx *SimTransaction, s ppaas.State, reason string, raw map[string]string) []byte {
	prev := tx.Status
	now := pm.now()
	if s.Final() {
		reason = pm.decision.apply(tx, reason)
	}
	tx.Status, tx.StatusReason, tx.UpdatedAt = s, reason, now
	tx.Sequence++
	tx.Events++
	tx.Provider = raw
	if s == ppaas.Approved && prev != ppaas.Approved {
		tx.Charges++
		pm.charges[tx.Serial]++
	}
	ev := ppaas.Event{
		EventID: uuid.NewString(), Type: ppaas.EventTypeStatus,
		TransactionID: tx.TransactionID, ClientTransactionID: tx.ClientTransactionID,
		Status: pm.spellLocked(s), StatusReason: reason, Sequence: tx.Sequence, Time: now,
		ProviderReference: tx.ProviderReference,
		Provider:          raw,
	}
	b, err := json.Marshal(ev)
	if err != nil {
		pm.log.Error("simulated PPaaS encode event", "err", err)
		return nil
	}
	if s.Final() {
		tx.FinalEventAt = time.Now()
	}
	pm.enqueueLocked(outgoing{topic: ppaas.EventTopic(tx.Serial), payload: b})
	return b
}

// redeliverLocked publishes an event again as is (same eventId): a provider
// retried a notification PPaaS had already forwarded.
func (pm *payments) redeliverLocked(tx *SimTransaction, payload []byte) {
	tx.Events++
	pm.enqueueLocked(outgoing{topic: ppaas.EventTopic(tx.Serial), payload: payload})
}

func (pm *payments) enqueueLocked(o outgoing) {
	f := &pm.faults
	var out []outgoing
	switch {
	case f.DropEvents > 0:
		f.DropEvents--
		return
	case pm.held != nil:
		out = []outgoing{o, *pm.held}
		pm.held = nil
	case f.ReorderEvents > 0:
		f.ReorderEvents--
		pm.held = &o
		return
	default:
		out = []outgoing{o}
	}
	if f.DuplicateEvents > 0 {
		f.DuplicateEvents--
		out = append(out, out[0])
	}
	if f.DelayEvents > 0 {
		f.DelayEvents--
		d := time.Duration(f.EventDelayMS) * time.Millisecond
		if d <= 0 {
			d = time.Second
		}
		pm.afterLocked(d, func() { pm.pushLocked(out) })
		return
	}
	pm.pushLocked(out)
}

// pushLocked hands events to the publishing goroutine. An event's span of
// the platform's time (PaymentAPITime) opens when that goroutine takes it:
// its wait in the queue, which on a shared machine may be the device's own
// work holding the CPU, is counted apart (EventQueueWait), not as the
// platform's.
func (pm *payments) pushLocked(out []outgoing) {
	for _, e := range out {
		e.queued = time.Now()
		select {
		case pm.queue <- e:
		default:
			pm.log.Error("simulated PPaaS event queue full; event dropped", "topic", e.topic)
		}
	}
}

// ErrNoTransaction is returned by control actions on an unknown transaction.
var ErrNoTransaction = errors.New("no such transaction")

// act is the consumer or the provider acting (control API); the transaction's
// provider interprets the action.
func (pm *payments) act(id, action string, args url.Values) (SimTransaction, error) {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	tx := pm.byID[id]
	if tx == nil {
		return SimTransaction{}, fmt.Errorf("%s %s: %w", action, id, ErrNoTransaction)
	}
	if handled, err := pm.afterSaleLocked(tx, action); handled { // sim/aftersale.go
		if err != nil {
			return *tx, fmt.Errorf("%s %s (%s): %w", action, id, tx.PaymentType, err)
		}
		return *tx, nil
	}
	if err := pm.providers[tx.PaymentType].act(pm, tx, action, args); err != nil {
		return *tx, fmt.Errorf("%s %s (%s): %w", action, id, tx.PaymentType, err)
	}
	return *tx, nil
}

func (pm *payments) list() ([]SimTransaction, map[string]int) {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	out := make([]SimTransaction, 0, len(pm.byID))
	for _, tx := range pm.byID {
		out = append(out, *tx)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	charges := make(map[string]int, len(pm.charges))
	for k, v := range pm.charges {
		charges[k] = v
	}
	return out, charges
}
