package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/termagent/termagent/ppaas"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/termagent/termagent/failpoint"
	"github.com/termagent/termagent/nexo"
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
	stateQRPrefix    = "qr."          // + qr.State; data: qr.Transition
	// stateReversal: a reversal advice was queued (data: the advice); it
	// commits with the final response it explains.
	stateReversal = "agent.reversal"
	// stateAfterSale: the payment's truth changed after the POS was answered
	// (data: afterSaleRecord; agent/aftersale.go). It commits with the
	// rewritten final response and the POS's EventNotification.
	stateAfterSale = "agent.aftersale"
)

type nexoStarted struct {
	Category    nexo.MessageCategory `json:"category"`
	RequestHash string               `json:"requestHash"`
	Request     json.RawMessage      `json:"request,omitempty"` // SaleToPOIRequest, Nexo JSON
	// Method is the PPaaS method the payment's brand mapped to when it began:
	// recovery replays the create with it, whatever the mapping is today.
	Method *qr.Method `json:"method,omitempty"`
}

// journal is the one owner of a payment's record: its schema (the states
// above), every write to it (Begin and Finish for the Nexo server, Record for
// the QR engine, finish for recovery, settle for the outbox) and the question
// recovery and a reversal ask of it, where the payment stands at PPaaS
// (standing). held, when set, are the reversal advices the engine queued for
// payments still waiting for their final response.
type journal struct {
	st   *store.Store
	held *heldAdvices
	// methods maps a payment request to its PPaaS method (journaled at Begin).
	methods func(nexo.PaymentRequest) (qr.Method, bool)
	// qr asks PPaaS (standing); nil in tools and tests that never ask.
	qr *qr.Engine
	// after-sale updates and digital receipts: agent/aftersale.go, receipt.go
	after    *afterSale
	receipts bool
}

// Begin implements nexo.Journal. The id it returns names the payment
// everywhere: the POI transaction id and the QR transaction's
// clientTransactionId.
func (j journal) Begin(ctx context.Context, e nexo.JournalEntry) (string, error) {
	started := nexoStarted{Category: e.Category, RequestHash: e.RequestHash, Request: e.Request}
	if e.Category == nexo.CategoryPayment && j.methods != nil {
		p := e.Payment
		if p == nil { // a caller that gave only the encoded request
			if req, err := (nexo.JSONCodec{}).DecodeRequest(e.Request); err == nil {
				p = req.Payment
			}
		}
		if p != nil {
			if m, ok := j.methods(*p); ok {
				started.Method = &m
			}
		}
	}
	data, err := json.Marshal(started)
	if err != nil {
		return "", fmt.Errorf("journal begin: %w", err)
	}
	id := uuid.NewString()
	_, err = j.st.StartTxn(ctx, store.TxnRef{ID: id, SaleID: e.SaleID, ServiceID: e.ServiceID, Compact: e.State == nexo.TxDone},
		store.Transition{At: e.Started, State: stateNexoStarted, Data: data})
	if errors.Is(err, store.ErrDuplicateServiceID) {
		// The pair is still reserved but its entry was evicted (journal budget):
		// a retry must not start a second payment.
		return "", nexo.Errorf(nexo.MessageFormat, "MessageHeader.ServiceID: %q already used by SaleID %q (its outcome is no longer kept)", e.ServiceID, e.SaleID)
	}
	if err != nil {
		return "", fmt.Errorf("journal begin %s/%s: %w", e.SaleID, e.ServiceID, err)
	}
	if e.State == nexo.TxDone {
		// Refused before anything ran (issue 11): header and refusal only, and
		// no result event, as nothing reached PPaaS.
		if err := j.st.AppendTxn(ctx, id, store.Transition{At: e.Updated, State: stateNexoDone, Final: true, Data: e.Response}); err != nil {
			return "", fmt.Errorf("journal refusal %s/%s: %w", e.SaleID, e.ServiceID, err)
		}
	}
	failpoint.Hit("journal.begin.after")
	return id, nil
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

// Finish implements nexo.Journal: txn is what Begin journaled, so nothing is
// looked up first.
func (j journal) Finish(ctx context.Context, txn nexo.Txn, response []byte, at time.Time) error {
	if txn.POITransactionID == "" {
		return fmt.Errorf("journal finish %s/%s: no POI transaction id", txn.SaleID, txn.ServiceID)
	}
	return j.finish(ctx, store.Txn{TxnRef: store.TxnRef{ID: txn.POITransactionID, SaleID: txn.SaleID, ServiceID: txn.ServiceID}}, response, at, nil)
}

// errReversalOwns: a Success was about to be journaled for a transaction that
// has a reversal advice. It never is: the queued reversal owns the outcome.
var errReversalOwns = errors.New("a queued reversal owns this transaction's outcome; it is never journaled approved")

// finish is the one place a transaction's final response is journaled. The
// response, the transaction result the platform is owed and the reversal
// advice (adv, or the one the engine queued and held for t) commit in one
// bbolt transaction: after a crash all of them are in the file or none is.
// It keeps the invariant: once a reversal advice exists for a transaction, the
// journal never reports that transaction approved. t's transitions may be
// empty (the server's Finish reads nothing): a reversal advice is journaled
// only with a final response, so a Success is journaled only while the
// transaction is unfinished, checked in the same bbolt transaction.
func (j journal) finish(ctx context.Context, t store.Txn, response []byte, at time.Time, adv *qr.Advice) error {
	resp, derr := nexo.JSONCodec{}.DecodeResponse(response)
	if handled, err := j.finishRefund(ctx, t, resp, derr, response, at); handled { // refunds: agent/refund.go
		return err
	}
	held, isHeld := j.held.take(t.ID)
	if adv == nil && isHeld {
		adv = &held
	}
	giveBack := func() {
		if isHeld {
			j.held.put(held)
		}
	}
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
		evs = append(evs, j.receiptEvents(t, resp)...) // agent/receipt.go

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
	write := j.st.AppendTxnEvents
	if derr == nil && resp.Status.Result == nexo.Success {
		write = j.st.FinishTxnEvents
	}
	if err := write(ctx, t.ID, trs, evs...); err != nil {
		giveBack()
		if errors.Is(err, store.ErrTxnFinal) {
			err = fmt.Errorf("%w (already final, perhaps with a reversal)", errReversalOwns)
		}
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
	return toEntry(t), true, nil
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
			if json.Unmarshal(tr.Data, &s) != nil {
				continue
			}
			v.method = s.Method
			if len(s.Request) > 0 {
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

// createRequest rebuilds the create call of a journaled payment, for idempotent
// replay: the same method (the one journaled when the payment began, not
// today's brand mapping), amount and order as Pay made.
func (j journal) createRequest(ctid string, v qrView) (ppaas.CreateRequest, bool) {
	p := v.payment
	if p == nil {
		return ppaas.CreateRequest{}, false
	}
	m := v.method
	if m == nil {
		if j.qr == nil {
			return ppaas.CreateRequest{}, false
		}
		brand, ok := apmEngine{qr: j.qr}.brand(*p)
		if !ok {
			return ppaas.CreateRequest{}, false
		}
		mm, _ := j.qr.Method(brand)
		m = &mm
	}
	return ppaas.CreateRequest{
		PaymentType: m.PaymentType, PaymentScenario: m.Scenario, ClientTransactionID: ctid,
		PaymentAmount: ppaas.Amount{Amount: p.Amount.Minor, Currency: p.Amount.Currency},
		Order:         ppaas.Order{OrderID: orderIDFor(*p, ctid), OrderDescription: p.SaleReferenceID},
	}, true
}

// errNotFinished: an advice was carried out for a payment whose final response
// is not journaled yet; the forwarder retries the advice.
var errNotFinished = errors.New("payment not finished in the journal yet")

// settle rewrites the final Nexo response of a transaction whose outcome was
// reported unknown, once the truth is known, so TransactionStatus tells it. The
// result stays a Failure: no money moved. It fails with errNotFinished while
// the POS payment it belongs to has no final response yet.
func (j journal) settle(ctx context.Context, id, text string) error {
	t, err := j.st.Txn(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil // no journal entry: nothing to tell a POS
	}
	if err != nil {
		return fmt.Errorf("settle %s: %w", id, err)
	}
	e := toEntry(t)
	if e.State != nexo.TxDone {
		if e.SaleID != "" && e.Category == nexo.CategoryPayment {
			return fmt.Errorf("settle %s: %w", id, errNotFinished)
		}
		return nil
	}
	resp, err := nexo.JSONCodec{}.DecodeResponse(e.Response)
	if err != nil || resp.Status.Result != nexo.Failure {
		return nil
	}
	resp.Status.AdditionalResponse = text
	b, err := nexo.JSONCodec{}.EncodeResponse(resp)
	if err != nil {
		return nil
	}
	if err := j.appendSettled(ctx, t, store.Transition{At: time.Now(), State: stateNexoDone, Final: true, Data: b}, text); err != nil { // agent/aftersale.go
		return fmt.Errorf("settle %s: %w", id, err)
	}
	failpoint.Hit("journal.settle.after")
	return nil
}

// errCannotAsk: the journal knows too little of a payment to ask PPaaS about
// it (no PPaaS id, and no create it could replay).
var errCannotAsk = errors.New("neither a PPaaS transaction id nor a create to replay is journaled")

// standing answers where payment id (with v, its QR view) stands at PPaaS,
// through the QR engine (qr.Engine.Where, the question Reverse asks too): by
// its PPaaS id when the journal has it, else by replaying its create with the
// journaled method. Bounded to 15 s: recovery must not hang on one payment.
func (j journal) standing(ctx context.Context, id string, v qrView) (ppaas.Transaction, error) {
	if j.qr == nil {
		return ppaas.Transaction{}, fmt.Errorf("where does %s stand: no PPaaS client", id)
	}
	var create ppaas.CreateRequest
	if v.transactionID == "" {
		c, ok := j.createRequest(id, v)
		if !ok {
			return ppaas.Transaction{}, fmt.Errorf("where does %s stand: %w", id, errCannotAsk)
		}
		create = c
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return j.qr.Where(ctx, v.transactionID, create)
}
