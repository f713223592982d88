package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/termagent/termagent/failpoint"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// Journal states written by the agent. A Nexo transaction is one journal entry
// whose id is also the QR transaction's clientTransactionId and the POI
// transaction id given to the POS, so every view of the payment has one name.
//
// Two writes per payment are durable: the start, with the whole request, before
// anything reaches PPaaS (so recovery can always find, replay idempotently and
// settle the transaction), and the final response before it reaches the POS. The
// QR states in between are deferred: they commit with the final response, and a
// crash that loses them is settled by recovery from PPaaS's own state.
const (
	stateNexoStarted = "nexo.started" // data: nexoStarted
	stateNexoDone    = "nexo.done"    // data: the final SaleToPOIResponse (Nexo JSON)
	stateQRPrefix    = "qr."          // + ppaas.State; data: qr.Transition
	// stateReversal: a reversal advice was queued (data: the advice); it
	// commits with the final response it explains.
	stateReversal = "agent.reversal"
)

type nexoStarted struct {
	Category    nexo.MessageCategory `json:"category"`
	RequestHash string               `json:"requestHash"`
	Request     json.RawMessage      `json:"request,omitempty"` // SaleToPOIRequest, Nexo JSON
	// Method is the PPaaS method the payment's brand mapped to when it began:
	// recovery replays the create with it, whatever the mapping is today.
	Method *qr.Method `json:"method,omitempty"`
}

// journal adapts the store's transaction journal to the Nexo server (nexo.Journal)
// and to the QR engine (qr.Recorder). held, when set, are the reversal advices
// the engine queued for payments still waiting for their final response.
type journal struct {
	st   *store.Store
	held *heldAdvices
	// methods maps a payment request to its PPaaS method (journaled at Begin).
	methods func(nexo.PaymentRequest) (qr.Method, bool)
}

// Begin implements nexo.Journal.
func (j journal) Begin(ctx context.Context, e nexo.JournalEntry) error {
	started := nexoStarted{Category: e.Category, RequestHash: e.RequestHash, Request: e.Request}
	if e.Category == nexo.CategoryPayment && j.methods != nil {
		if req, err := (nexo.JSONCodec{}).DecodeRequest(e.Request); err == nil && req.Payment != nil {
			if m, ok := j.methods(*req.Payment); ok {
				started.Method = &m
			}
		}
	}
	data, err := json.Marshal(started)
	if err != nil {
		return fmt.Errorf("journal begin: %w", err)
	}
	id := uuid.NewString()
	_, err = j.st.StartTxn(ctx, store.TxnRef{ID: id, SaleID: e.SaleID, ServiceID: e.ServiceID, Compact: e.State == nexo.TxDone},
		store.Transition{At: e.Started, State: stateNexoStarted, Data: data})
	if errors.Is(err, store.ErrDuplicateServiceID) {
		// The pair is still reserved but its entry was evicted (journal budget):
		// a retry must not start a second payment.
		return nexo.Errorf(nexo.MessageFormat, "MessageHeader.ServiceID: %q already used by SaleID %q (its outcome is no longer kept)", e.ServiceID, e.SaleID)
	}
	if err != nil {
		return fmt.Errorf("journal begin %s/%s: %w", e.SaleID, e.ServiceID, err)
	}
	if e.State == nexo.TxDone {
		// Refused before anything ran (issue 11): header and refusal only, and
		// no result event, as nothing reached PPaaS.
		if err := j.st.AppendTxn(ctx, id, store.Transition{At: e.Updated, State: stateNexoDone, Final: true, Data: e.Response}); err != nil {
			return fmt.Errorf("journal refusal %s/%s: %w", e.SaleID, e.ServiceID, err)
		}
	}
	failpoint.Hit("journal.begin.after")
	return nil
}

// adviceTxnID names the transaction an outbox advice is about, so that the
// journal budget never evicts it (store.Options.AdviceTxnID).
func adviceTxnID(payload []byte) string {
	var a qr.Advice
	if json.Unmarshal(payload, &a) != nil {
		return ""
	}
	return a.ClientTransactionID
}

// Finish implements nexo.Journal.
func (j journal) Finish(ctx context.Context, saleID, serviceID string, response []byte, at time.Time) error {
	t, ok, err := j.st.TxnByServiceID(ctx, saleID, serviceID)
	if err != nil {
		return fmt.Errorf("journal finish %s/%s: %w", saleID, serviceID, err)
	}
	if !ok {
		return fmt.Errorf("journal finish %s/%s: no such transaction", saleID, serviceID)
	}
	return j.finish(ctx, t, response, at, nil)
}

// errReversalOwns: a Success was about to be journaled for a transaction that
// has a reversal advice. It never is: the queued reversal owns the outcome.
var errReversalOwns = errors.New("a queued reversal owns this transaction's outcome; it is never journaled approved")

// finish is the one place a transaction's final response is journaled. The
// response, the transaction result the platform is owed and the reversal
// advice (adv, or the one the engine queued and held for t) commit in one
// bbolt transaction: after a crash all of them are in the file or none is.
// It keeps the invariant: once a reversal advice exists for a transaction, the
// journal never reports that transaction approved.
func (j journal) finish(ctx context.Context, t store.Txn, response []byte, at time.Time, adv *qr.Advice) error {
	held, isHeld := j.held.take(t.ID)
	if adv == nil && isHeld {
		adv = &held
	}
	giveBack := func() {
		if isHeld {
			j.held.put(held)
		}
	}
	resp, derr := nexo.JSONCodec{}.DecodeResponse(response)
	if (adv != nil || reversalQueued(t)) && (derr != nil || resp.Status.Result == nexo.Success) {
		giveBack()
		return fmt.Errorf("journal finish %s: %w", t.ID, errReversalOwns)
	}
	var (
		trs []store.Transition
		evs []store.Event
	)
	if derr == nil {
		if ev, ok := resultEvent(t.ID, resp); ok {
			evs = append(evs, ev)
		}
	}
	if adv != nil {
		ev, err := adviceEvent(*adv)
		if err != nil {
			giveBack()
			return fmt.Errorf("journal finish %s: %w", t.ID, err)
		}
		evs = append(evs, ev)
		trs = append(trs, store.Transition{At: at, State: stateReversal, Data: ev.Payload})
	}
	trs = append(trs, store.Transition{At: at, State: stateNexoDone, Final: true, Data: response})
	failpoint.Hit("journal.finish.before")
	if adv != nil {
		failpoint.Hit("journal.finish.advice.before")
	}
	if err := j.st.AppendTxnEvents(ctx, t.ID, trs, evs...); err != nil {
		giveBack()
		return fmt.Errorf("journal finish %s/%s: %w", t.SaleID, t.ServiceID, err)
	}
	failpoint.Hit("journal.finish.after")
	return nil
}

// reversalQueued reports whether a reversal advice was journaled for t.
func reversalQueued(t store.Txn) bool {
	for _, tr := range t.Transitions {
		if tr.State == stateReversal {
			return true
		}
	}
	return false
}

// TransactionResult is the event the agent sends PPaaS (through the outbox, to
// the device events endpoint) when a payment or reversal ends.
type TransactionResult struct {
	POITransactionID   string    `json:"poiTransactionId"`
	SaleID             string    `json:"saleId"`
	ServiceID          string    `json:"serviceId"`
	Category           string    `json:"category"`
	Result             string    `json:"result"`
	ErrorCondition     string    `json:"errorCondition,omitempty"`
	AdditionalResponse string    `json:"additionalResponse,omitempty"`
	Amount             int64     `json:"amount,omitempty"` // minor units
	Currency           string    `json:"currency,omitempty"`
	Brand              string    `json:"brand,omitempty"`
	ProviderReference  string    `json:"providerReference,omitempty"`
	Time               time.Time `json:"time"`
}

func resultEvent(id string, resp *nexo.Response) (store.Event, bool) {
	r := TransactionResult{
		POITransactionID: id, SaleID: resp.Header.SaleID, ServiceID: resp.Header.ServiceID, Category: string(resp.Header.Category),
		Result: string(resp.Status.Result), ErrorCondition: string(resp.Status.ErrorCondition), AdditionalResponse: resp.Status.AdditionalResponse,
		Time: time.Now().UTC(),
	}
	if p := resp.Payment; p != nil && p.Result != nil {
		r.Amount, r.Currency = p.Result.AuthorizedAmount.Minor, p.Result.AuthorizedAmount.Currency
		r.Brand, r.ProviderReference = p.Result.Brand, p.Result.ProviderReference
	}
	b, err := json.Marshal(r)
	if err != nil {
		return store.Event{}, false
	}
	return store.Event{Kind: store.KindTransactionResult, Payload: b, Key: stableKey("result", id)}, true
}

// Lookup implements nexo.Journal.
func (j journal) Lookup(ctx context.Context, saleID, serviceID string) (nexo.JournalEntry, bool, error) {
	t, ok, err := j.st.TxnByServiceID(ctx, saleID, serviceID)
	if err != nil || !ok {
		return nexo.JournalEntry{}, ok, err
	}
	full, err := j.st.Txn(ctx, t.ID)
	if err != nil {
		return nexo.JournalEntry{}, false, fmt.Errorf("journal lookup %s/%s: %w", saleID, serviceID, err)
	}
	return toEntry(full), true, nil
}

// Last implements nexo.Journal.
func (j journal) Last(ctx context.Context, saleID string) (nexo.JournalEntry, bool, error) {
	t, ok, err := j.st.LastTxnForSale(ctx, saleID)
	if err != nil || !ok {
		return nexo.JournalEntry{}, false, err
	}
	return toEntry(t), true, nil
}

func toEntry(t store.Txn) nexo.JournalEntry {
	e := nexo.JournalEntry{SaleID: t.SaleID, ServiceID: t.ServiceID, State: nexo.TxInProgress, Started: t.Started, Updated: t.Updated}
	for _, tr := range t.Transitions {
		switch tr.State {
		case stateNexoStarted:
			var s nexoStarted
			if json.Unmarshal(tr.Data, &s) == nil {
				e.Category, e.RequestHash, e.Request = s.Category, s.RequestHash, s.Request
			}
		case stateNexoDone:
			e.State, e.Response = nexo.TxDone, tr.Data
		}
	}
	return e
}

// Record implements qr.Recorder. QR transitions are deferred writes (see the
// journal states above): they commit with the next durable write.
func (j journal) Record(_ context.Context, t qr.Transition) error {
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("journal qr transition: %w", err)
	}
	if err := j.st.AppendTxnDeferred(t.ClientTransactionID, store.Transition{At: t.At, State: stateQRPrefix + string(t.To), Data: data}); err != nil {
		return fmt.Errorf("journal qr transition %s: %w", t.ClientTransactionID, err)
	}
	return nil
}

// events is the MQTT event de-dup set (qr.EventLog) over the store. Marks are
// deferred: applying a redelivered event twice is harmless (the state machine
// ignores events that do not move a transaction forward), and the mark commits
// with the payment's final response.
type events struct{ st *store.Store }

// SeenEvent implements qr.EventLog.
func (e events) SeenEvent(ctx context.Context, id string) (bool, error) {
	return e.st.SeenEventDeferred(ctx, id)
}

// qrView is what the journal knows of a payment's QR side.
type qrView struct {
	payment       *nexo.PaymentRequest // from the journaled request
	method        *qr.Method           // journaled at Begin (nil in older files)
	transactionID string
	state         ppaas.State
}

func viewQR(t store.Txn) qrView {
	var v qrView
	for _, tr := range t.Transitions {
		switch {
		case tr.State == stateNexoStarted:
			var s nexoStarted
			if json.Unmarshal(tr.Data, &s) == nil {
				v.method = s.Method
			}
			if json.Unmarshal(tr.Data, &s) == nil && len(s.Request) > 0 {
				if req, err := (nexo.JSONCodec{}).DecodeRequest(s.Request); err == nil && req.Payment != nil {
					v.payment = req.Payment
				}
			}
		case strings.HasPrefix(tr.State, stateQRPrefix):
			var qt qr.Transition
			if json.Unmarshal(tr.Data, &qt) == nil {
				if qt.TransactionID != "" {
					v.transactionID = qt.TransactionID
				}
				v.state = qt.To
			}
		}
	}
	return v
}

// apmEngine is the Nexo payment engine for QR alternative payments.
type apmEngine struct {
	qr      *qr.Engine
	st      *store.Store
	metrics *metrics // nil in tools that need none
}

// method is the PPaaS method a payment request maps to.
func (e apmEngine) method(req nexo.PaymentRequest) (qr.Method, bool) {
	b, ok := e.brand(req)
	if !ok {
		return qr.Method{}, false
	}
	return e.qr.Method(b)
}

func (e apmEngine) brand(req nexo.PaymentRequest) (string, bool) {
	for _, b := range req.AllowedBrands {
		if _, ok := e.qr.Method(b); ok {
			return b, true
		}
	}
	if req.InstrumentType != "" {
		if _, ok := e.qr.Method(req.InstrumentType); ok {
			return req.InstrumentType, true
		}
	}
	return "", false
}

// Accepts implements nexo.RoutedEngine.
func (e apmEngine) Accepts(req nexo.PaymentRequest) bool {
	_, ok := e.brand(req)
	return ok
}

// Precheck implements nexo.Prechecker: what Pay refuses before calling PPaaS
// is refused before the request is journaled in full.
func (e apmEngine) Precheck(req nexo.PaymentRequest) error {
	if req.Type == nexo.PaymentRefund {
		return nexo.Errorf(nexo.PaymentRestriction, "APM refunds are made with a Reversal of the original POI transaction")
	}
	return nil
}

// Pay implements nexo.PaymentEngine.
func (e apmEngine) Pay(ctx context.Context, req nexo.PaymentRequest) (nexo.PaymentResult, error) {
	brand, ok := e.brand(req)
	if !ok {
		return nexo.PaymentResult{}, nexo.Errorf(nexo.PaymentRestriction, "no APM is configured for this brand")
	}
	if req.Type == nexo.PaymentRefund {
		return nexo.PaymentResult{}, nexo.Errorf(nexo.PaymentRestriction, "APM refunds are made with a Reversal of the original POI transaction")
	}
	ctid := uuid.NewString()
	if h, ok := nexo.HeaderFrom(ctx); ok {
		t, found, err := e.st.TxnByServiceID(ctx, h.SaleID, h.ServiceID)
		if err != nil {
			return nexo.PaymentResult{}, nexo.Errorf(nexo.UnavailableService, "journal unavailable")
		}
		if found {
			ctid = t.ID
		}
	}
	orderID := orderIDFor(req, ctid)
	out, err := e.qr.Pay(ctx, qr.PaymentRequest{
		Brand:               brand,
		Amount:              ppaas.Amount{Amount: req.Amount.Minor, Currency: req.Amount.Currency},
		OrderID:             orderID,
		OrderDescription:    req.SaleReferenceID,
		ClientTransactionID: ctid,
	})
	// Pay's transitions are deferred; the nexo server's Finish makes them durable.
	if err != nil {
		var ae *qr.APIError
		if errors.As(err, &ae) {
			return nexo.PaymentResult{}, nexo.Errorf(nexo.Refusal, "refused by PPaaS: %s", ae.Message)
		}
		if errors.Is(err, ppaas.ErrInvalidRequest) {
			return nexo.PaymentResult{}, nexo.Errorf(nexo.MessageFormat, "%v", err)
		}
		// Nothing reached PPaaS (Pay returns an error only then): the agent
		// itself could not take the payment.
		return nexo.PaymentResult{}, nexo.Errorf(nexo.UnavailableService, "%v", err)
	}
	e.metrics.apmOutcome(string(out.Result), out.Method.PaymentType)
	res, err := outcomeToNexo(out, brand, req)
	var ne *nexo.Error
	if errors.As(err, &ne) {
		// The POS gets the id it can ask TransactionStatus or a Reversal about.
		ne.POITransactionID = nexo.TransactionID{ID: ctid, TimeStamp: time.Now().UTC()}
	}
	return res, err
}

func outcomeToNexo(out qr.Outcome, brand string, req nexo.PaymentRequest) (nexo.PaymentResult, error) {
	reason := out.Reason
	switch out.Result {
	case qr.ResultApproved:
		return nexo.PaymentResult{
			POITransactionID:  nexo.TransactionID{ID: out.ClientTransactionID, TimeStamp: time.Now().UTC()},
			Type:              nexo.PaymentNormal,
			Brand:             brand,
			InstrumentType:    nexo.InstrumentMobile, // the Nexo code list has no QR value
			AuthorizedAmount:  nexo.Amount{Minor: out.Amount.Amount, Currency: out.Amount.Currency},
			AcquirerID:        "PPaaS:" + out.Method.PaymentType,
			ProviderReference: out.ProviderReference,
			ApprovalCode:      out.TransactionID,
		}, nil
	case qr.ResultDeclined:
		return nexo.PaymentResult{}, nexo.Errorf(nexo.Refusal, "declined by the provider%s", suffix(reason))
	case qr.ResultCancelled:
		return nexo.PaymentResult{}, nexo.Errorf(nexo.Cancel, "cancelled%s", suffix(reason))
	case qr.ResultExpired:
		return nexo.PaymentResult{}, nexo.Errorf(nexo.Cancel, "the consumer did not pay in time; cancelled at PPaaS")
	case qr.ResultAborted:
		return nexo.PaymentResult{}, nexo.Errorf(nexo.Aborted, "aborted by the POS; cancelled at PPaaS")
	default:
		return nexo.PaymentResult{}, nexo.Errorf(nexo.UnreachableHost, "PPaaS unreachable, outcome unknown; a reversal is queued and TransactionStatus will tell the final outcome%s", suffix(reason))
	}
}

func suffix(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}

// Reverse implements nexo.PaymentEngine: a Reversal of an APM payment cancels it
// if it is undecided and refunds it if it was approved.
func (e apmEngine) Reverse(ctx context.Context, req nexo.ReversalRequest) (nexo.ReversalResult, error) {
	id := req.OriginalPOITransactionID.ID
	t, err := e.st.Txn(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nexo.ReversalResult{}, nexo.Errorf(nexo.NotFound, "no POI transaction %q", id)
	}
	if err != nil {
		return nexo.ReversalResult{}, nexo.Errorf(nexo.UnavailableService, "journal unavailable")
	}
	// Only the POS that made a payment may reverse it, and only a payment.
	if h, ok := nexo.HeaderFrom(ctx); ok && t.SaleID != "" && t.SaleID != h.SaleID {
		return nexo.ReversalResult{}, nexo.Errorf(nexo.NotFound, "no POI transaction %q for SaleID %q", id, h.SaleID)
	}
	if e := toEntry(t); e.SaleID != "" && e.Category != nexo.CategoryPayment {
		return nexo.ReversalResult{}, nexo.Errorf(nexo.NotFound, "POI transaction %q is not a payment", id)
	}
	v := viewQR(t)
	rr := qr.ReverseRequest{ClientTransactionID: id, TransactionID: v.transactionID, Reason: "reversal requested by the POS: " + req.Reason}
	if rr.TransactionID == "" {
		c, ok := e.createRequest(id, v)
		if !ok {
			return nexo.ReversalResult{}, nexo.Errorf(nexo.NotFound, "POI transaction %q is not an APM payment", id)
		}
		rr.Create = c
	}
	out, err := e.qr.Reverse(ctx, rr)
	if err != nil {
		return nexo.ReversalResult{}, nexo.Errorf(nexo.UnreachableHost, "reversal not confirmed by PPaaS: %v", err)
	}
	return nexo.ReversalResult{
		POITransactionID:  nexo.TransactionID{ID: id + "-rev", TimeStamp: time.Now().UTC()},
		ProviderReference: out.ProviderReference,
	}, nil
}

// createRequest rebuilds the create call of a journaled payment, for idempotent
// replay: the same method (the one journaled when the payment began, not
// today's brand mapping), amount and order as Pay made.
func (e apmEngine) createRequest(ctid string, v qrView) (ppaas.CreateRequest, bool) {
	p := v.payment
	if p == nil {
		return ppaas.CreateRequest{}, false
	}
	m := v.method
	if m == nil {
		if e.qr == nil {
			return ppaas.CreateRequest{}, false
		}
		brand, ok := e.brand(*p)
		if !ok {
			return ppaas.CreateRequest{}, false
		}
		mm, _ := e.qr.Method(brand)
		m = &mm
	}
	return ppaas.CreateRequest{
		PaymentType: m.PaymentType, PaymentScenario: m.Scenario, ClientTransactionID: ctid,
		PaymentAmount: ppaas.Amount{Amount: p.Amount.Minor, Currency: p.Amount.Currency},
		Order:         ppaas.Order{OrderID: orderIDFor(*p, ctid), OrderDescription: p.SaleReferenceID},
	}, true
}

// orderIDFor is the PPaaS order id of a payment: the POS's own transaction id.
func orderIDFor(p nexo.PaymentRequest, ctid string) string {
	if p.SaleTransactionID.ID != "" {
		return p.SaleTransactionID.ID
	}
	return ctid
}
