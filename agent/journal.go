package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/termagent/termagent/ppaas"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/termagent/termagent/failpoint"
	"github.com/termagent/termagent/internal/jsonw"
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
//
// The request and the response are journaled as the envelope-independent
// model (nexo's journal record, nexo/record.go), not as any envelope's bytes:
// TransactionStatus and a duplicate's replay encode them for the envelope
// asking, and reading one costs no JSON parsing. Files written before hold
// Nexo 3.x JSON in both states; they are read as they are, converted on read
// (legacyStarted, readResponse), never rewritten.
const (
	stateNexoStarted = "nexo.started" // data: startedRecord (appendStarted)
	stateNexoDone    = "nexo.done"    // data: the final response's journal record
	stateQRPrefix    = "qr."          // + qr.State; data: qr.Transition
	// stateReversal: a reversal advice was queued (data: the advice); it
	// commits with the final response it explains.
	stateReversal = "agent.reversal"
	// stateAfterSale: the payment's truth changed after the POS was answered
	// (data: afterSaleRecord; agent/aftersale.go). It commits with the
	// rewritten final response and the POS's EventNotification.
	stateAfterSale = "agent.aftersale"
)

// startedRecord is what nexo.started holds: the category and request hash
// (all a duplicate check needs), the PPaaS method and the request.
type startedRecord struct {
	category nexo.MessageCategory
	hash     string
	// method is the PPaaS method the payment's brand mapped to when it began:
	// recovery replays the create with it, whatever the mapping is today.
	method *qr.Method
	// request is the request's journal record (or, legacy, its Nexo 3.x
	// JSON), decoded only by who needs it (decodeRequest).
	request []byte
	legacy  bool
}

// startedVersion leads the nexo.started data (version 1 was a JSON object,
// legacyStarted). Layout, strings a uvarint length then the bytes:
//
//	version(1) category hash hasMethod(1) [paymentType scenario] request
//
// request, the rest of the data, is the request's journal record (empty for
// a payment refused up front).
const startedVersion = 2

func appendStarted(b []byte, category nexo.MessageCategory, hash string, method *qr.Method, req *nexo.Request) ([]byte, error) {
	b = append(b, startedVersion)
	b = appendString(appendString(b, string(category)), hash)
	if method == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = appendString(appendString(b, method.PaymentType), string(method.Scenario))
	}
	if req == nil {
		return b, nil
	}
	return nexo.AppendRequestRecord(b, req)
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// errStartedRecord: a nexo.started record that does not decode.
var errStartedRecord = errors.New("bad nexo.started record")

// readStarted reads a nexo.started record of either layout without decoding
// its request. The result aliases data.
func readStarted(data []byte) (startedRecord, error) {
	if len(data) > 0 && data[0] == '{' {
		return legacyStarted(data)
	}
	if len(data) == 0 || data[0] != startedVersion {
		return startedRecord{}, errStartedRecord
	}
	b := data[1:]
	str := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", false
		}
		v := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return v, true
	}
	cat, ok1 := str()
	hash, ok2 := str()
	if !ok1 || !ok2 || len(b) == 0 {
		return startedRecord{}, errStartedRecord
	}
	s := startedRecord{category: nexo.MessageCategory(cat), hash: hash}
	hasMethod := b[0]
	b = b[1:]
	switch hasMethod {
	case 0:
	case 1:
		pt, ok1 := str()
		sc, ok2 := str()
		if !ok1 || !ok2 {
			return startedRecord{}, errStartedRecord
		}
		s.method = &qr.Method{PaymentType: pt, Scenario: ppaas.Scenario(sc)}
	default:
		return startedRecord{}, errStartedRecord
	}
	if len(b) > 0 {
		s.request = b
	}
	return s, nil
}

// legacyStarted reads nexo.started as files written before the journal
// record hold it: JSON, with the request in Nexo 3.x JSON.
func legacyStarted(data []byte) (startedRecord, error) {
	var v struct {
		Category    nexo.MessageCategory `json:"category"`
		RequestHash string               `json:"requestHash"`
		Request     json.RawMessage      `json:"request,omitempty"`
		Method      *qr.Method           `json:"method,omitempty"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return startedRecord{}, fmt.Errorf("%w: %v", errStartedRecord, err)
	}
	return startedRecord{category: v.Category, hash: v.RequestHash, method: v.Method, request: v.Request, legacy: len(v.Request) > 0}, nil
}

// decodeRequest decodes the journaled request; nil when none is journaled.
func (s startedRecord) decodeRequest() (*nexo.Request, error) {
	switch {
	case len(s.request) == 0:
		return nil, nil
	case s.legacy:
		return nexo.JSONCodec{}.DecodeRequest(s.request)
	}
	return nexo.DecodeRequestRecord(s.request)
}

// responseRecord is the data of nexo.done (and of a pending refund).
func responseRecord(resp *nexo.Response) ([]byte, error) {
	if resp == nil {
		return nil, errors.New("no response")
	}
	return nexo.AppendResponseRecord(nil, resp)
}

// readResponse decodes nexo.done's data in either layout: the journal record,
// or (files written before it) Nexo 3.x JSON.
func readResponse(data []byte) (*nexo.Response, error) {
	if len(data) > 0 && data[0] == '{' {
		return nexo.JSONCodec{}.DecodeResponse(data)
	}
	return nexo.DecodeResponseRecord(data)
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
	// restarted is when this run began (zero: unknown): a previous run's
	// create was sent before it (standing, for a merchantscan payment).
	restarted time.Time
	// last caches what Last decoded (agent/journal_last.go); nil: no cache.
	last *lastEntries
	// journaled: the events Record journaled a transition for, which the
	// event log need not mark (agent/payments.go); nil: none kept.
	journaled *journaledEvents
}

// Begin implements nexo.Journal. The id it returns names the payment
// everywhere: the POI transaction id and the QR transaction's
// clientTransactionId.
func (j journal) Begin(ctx context.Context, e nexo.JournalEntry) (string, error) {
	var method *qr.Method
	if e.Category == nexo.CategoryPayment && j.methods != nil && e.Request != nil && e.Request.Payment != nil &&
		e.Request.Payment.Type != nexo.PaymentRefund { // a refund creates nothing at PPaaS: no method to replay
		if m, ok := j.methods(*e.Request.Payment); ok {
			method = &m
		}
	}
	data, err := appendStarted(make([]byte, 0, 384), e.Category, e.RequestHash, method, e.Request) // one allocation for a payment's record
	if err != nil {
		return "", fmt.Errorf("journal begin %s/%s: %w", e.SaleID, e.ServiceID, err)
	}
	var refusal []byte
	if e.State == nexo.TxDone {
		if refusal, err = responseRecord(e.Response); err != nil {
			return "", fmt.Errorf("journal refusal %s/%s: %w", e.SaleID, e.ServiceID, err)
		}
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
		if err := j.st.AppendTxn(ctx, id, store.Transition{At: e.Updated, State: stateNexoDone, Final: true, Data: refusal}); err != nil {
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
func (j journal) Finish(ctx context.Context, txn nexo.Txn, response *nexo.Response, at time.Time) error {
	if txn.POITransactionID == "" {
		return fmt.Errorf("journal finish %s/%s: no POI transaction id", txn.SaleID, txn.ServiceID)
	}
	err := j.finish(ctx, store.Txn{TxnRef: store.TxnRef{ID: txn.POITransactionID, SaleID: txn.SaleID, ServiceID: txn.ServiceID}}, response, at, nil)
	if err != nil && !errors.Is(err, store.ErrTxnFinal) && !errors.Is(err, errRefundPending) {
		// Unfinished until restart recovery (or its reversal) settles it:
		// the after-sale desk must not wait for its final response. (Final
		// already, or a refund answered pending: nothing to wait for.)
		j.after.finishFailed(txn.POITransactionID)
	}
	return err
}

// errReversalOwns: a Success was about to be journaled for a transaction that
// has a reversal advice. It never is: the queued reversal owns the outcome.
var errReversalOwns = fmt.Errorf("a queued reversal owns this transaction's outcome; it is never journaled approved: %w", nexo.ErrOutcomeOwned)

// finish is the one place a transaction's final response is journaled. The
// response, the transaction result the platform is owed and the reversal
// advice (adv, or the one the engine queued and held for t) commit in one
// bbolt transaction: after a crash all of them are in the file or none is.
// It keeps the invariant: once a reversal advice exists for a transaction, the
// journal never reports that transaction approved. t's transitions may be
// empty (the server's Finish reads nothing): a reversal advice is journaled
// only with a final response, so a Success is journaled only while the
// transaction is unfinished, checked in the same bbolt transaction.
func (j journal) finish(ctx context.Context, t store.Txn, resp *nexo.Response, at time.Time, adv *qr.Advice) error {
	response, err := responseRecord(resp)
	if err != nil {
		return fmt.Errorf("journal finish %s: %w", t.ID, err)
	}
	if handled, err := j.finishRefund(ctx, t, resp, response, at); handled { // refunds: agent/refund.go
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
	if (adv != nil || reversalQueued(t)) && resp.Status.Result == nexo.Success {
		giveBack()
		return fmt.Errorf("journal finish %s: %w", t.ID, errReversalOwns)
	}
	var (
		trs []store.Transition
		evs []store.Event
	)
	if ev, ok := resultEvent(t.ID, resp); ok {
		evs = append(evs, ev)
	}
	evs = append(evs, j.receiptEvents(t, resp)...) // agent/receipt.go
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
	if resp.Status.Result == nexo.Success {
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
	b, err := marshalResult(r)
	if err != nil {
		return store.Event{}, false
	}
	return store.Event{Kind: store.KindTransactionResult, Payload: b, Key: stableKey("result", id)}, true
}

// marshalResult is json.Marshal(r), byte for byte, without reflection: it
// runs on every payment's final write.
func marshalResult(r TransactionResult) ([]byte, error) {
	b := make([]byte, 0, 256+len(r.AdditionalResponse))
	b = append(b, `{"poiTransactionId":`...)
	b = jsonw.String(b, r.POITransactionID)
	b = append(b, `,"saleId":`...)
	b = jsonw.String(b, r.SaleID)
	b = append(b, `,"serviceId":`...)
	b = jsonw.String(b, r.ServiceID)
	b = append(b, `,"category":`...)
	b = jsonw.String(b, r.Category)
	b = append(b, `,"result":`...)
	b = jsonw.String(b, r.Result)
	for _, f := range [...]struct{ key, v string }{{`,"errorCondition":`, r.ErrorCondition}, {`,"additionalResponse":`, r.AdditionalResponse}} {
		if f.v != "" {
			b = jsonw.String(append(b, f.key...), f.v)
		}
	}
	if r.Amount != 0 {
		b = jsonw.Int(append(b, `,"amount":`...), r.Amount)
	}
	for _, f := range [...]struct{ key, v string }{{`,"currency":`, r.Currency}, {`,"brand":`, r.Brand}, {`,"providerReference":`, r.ProviderReference}} {
		if f.v != "" {
			b = jsonw.String(append(b, f.key...), f.v)
		}
	}
	b = append(b, `,"time":`...)
	b, ok := jsonw.Time(b, r.Time)
	if !ok {
		return json.Marshal(r) // its error
	}
	return append(b, '}'), nil
}

// Lookup and Last: agent/journal_last.go

// entryStates are the states entryOf reads: the store copies no other
// transition's data for Lookup and Last.
var entryStates = []string{stateNexoStarted, stateNexoDone, stateRefundManual, stateRecoverManual}

// The parts of a journal entry entryOf decodes besides its head (SaleID,
// ServiceID, category, request hash, state, times).
const (
	withRequest = 1 << iota
	withResponse
)

// entryOf reads t as a Nexo journal entry, decoding the request and the
// response only if parts asks for them (a duplicate check needs neither, a
// TransactionStatus only the response). A part that does not decode is left
// nil.
func entryOf(t store.Txn, parts int) nexo.JournalEntry {
	e := nexo.JournalEntry{SaleID: t.SaleID, ServiceID: t.ServiceID, State: nexo.TxInProgress, Started: t.Started, Updated: t.Updated}
	var (
		started startedRecord
		done    []byte
	)
	for _, tr := range t.Transitions {
		switch tr.State {
		case stateNexoStarted:
			if s, err := readStarted(tr.Data); err == nil {
				started = s
				e.Category, e.RequestHash = s.category, s.hash
			}
		case stateNexoDone:
			e.State, done = nexo.TxDone, tr.Data // the last one: settle rewrites it
		case stateRefundManual: // refunds: agent/refund_desk.go (unfinished, answered "manual action needed")
			e.State, done = nexo.TxDone, tr.Data
		case stateRecoverManual: // a merchantscan payment recovery cannot locate: agent/recover_locate.go
			// Still in progress (PPaaS may yet show it charged): its text
			// goes with the InProgress answer, never as a final Failure.
			done = tr.Data
		}
	}
	if parts&withRequest != 0 {
		e.Request, _ = started.decodeRequest()
	}
	if parts&withResponse != 0 && done != nil {
		e.Response, _ = readResponse(done)
	}
	return e
}

// toEntry reads t as a Nexo journal entry with its request and response.
func toEntry(t store.Txn) nexo.JournalEntry { return entryOf(t, withRequest|withResponse) }

// Record implements qr.Recorder. QR transitions are deferred writes (see the
// journal states above): they commit with the next durable write.
func (j journal) Record(_ context.Context, t qr.Transition) error {
	data, err := marshalTransition(t)
	if err != nil {
		return fmt.Errorf("journal qr transition: %w", err)
	}
	// Alias: the payment is found by its PPaaS id too, which is all some
	// PPaaS events name it by (afterSale.event).
	if err := j.st.AppendTxnDeferred(t.ClientTransactionID, store.Transition{At: t.At, State: stateQRPrefix + string(t.To), Data: data, Alias: t.TransactionID}); err != nil {
		return fmt.Errorf("journal qr transition %s: %w", t.ClientTransactionID, err)
	}
	j.after.aliasQueued(t.TransactionID)
	j.journaled.add(t.EventID)
	return nil
}

// marshalTransition is json.Marshal(t), byte for byte (recovery and
// journaledEvent read it with encoding/json), without reflection: it runs on
// every step of a payment.
func marshalTransition(t qr.Transition) ([]byte, error) {
	b := make([]byte, 0, 224+len(t.ClientTransactionID)+len(t.TransactionID)+len(t.From)+len(t.To)+len(t.Source)+len(t.EventID)+len(t.Reason))
	b = append(b, `{"ClientTransactionID":`...)
	b = jsonw.String(b, t.ClientTransactionID)
	b = append(b, `,"TransactionID":`...)
	b = jsonw.String(b, t.TransactionID)
	b = append(b, `,"From":`...)
	b = jsonw.String(b, string(t.From))
	b = append(b, `,"To":`...)
	b = jsonw.String(b, string(t.To))
	b = append(b, `,"At":`...)
	b, ok := jsonw.Time(b, t.At)
	if !ok {
		return json.Marshal(t) // its error
	}
	b = append(b, `,"Source":`...)
	b = jsonw.String(b, t.Source)
	b = append(b, `,"EventID":`...)
	b = jsonw.String(b, t.EventID)
	b = append(b, `,"Sequence":`...)
	b = jsonw.Int(b, t.Sequence)
	b = append(b, `,"Reason":`...)
	b = jsonw.String(b, t.Reason)
	return append(b, '}'), nil
}

// journaledEvent reports whether event id moved payment t: one of its QR
// transitions names it.
func journaledEvent(t store.Txn, id string) bool {
	if id == "" {
		return false
	}
	// The pre-filter looks for the id as json.Marshal wrote it (it escapes
	// <, >, &, U+2028/9 and invalid UTF-8), not its raw bytes.
	quoted, err := json.Marshal(id)
	if err != nil {
		return false
	}
	for _, tr := range t.Transitions {
		if !strings.HasPrefix(tr.State, stateQRPrefix) || !bytes.Contains(tr.Data, quoted) {
			continue
		}
		var qt qr.Transition
		if json.Unmarshal(tr.Data, &qt) == nil && qt.EventID == id {
			return true
		}
	}
	return false
}

// qrView is what the journal knows of a payment's QR side.
type qrView struct {
	payment       *nexo.PaymentRequest // from the journaled request
	method        *qr.Method           // journaled at Begin (nil in older files)
	transactionID string
	state         ppaas.State
	scanned       string    // the code the terminal's scanner read (agent/scan.go)
	started       time.Time // the payment began: its create was sent later
}

func viewQR(t store.Txn) qrView {
	v := qrView{started: t.Started}
	for _, tr := range t.Transitions {
		switch {
		case tr.State == stateNexoStarted:
			s, err := readStarted(tr.Data)
			if err != nil {
				continue
			}
			v.method = s.method
			if req, err := s.decodeRequest(); err == nil && req != nil && req.Payment != nil {
				v.payment = req.Payment
			}
		case tr.State == stateScanned: // agent/scan.go
			v.scanned = readScanned(tr.Data)
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
// today's brand mapping), amount, order and scanned code as Pay made.
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
		PaymentType: m.PaymentType, PaymentScenario: m.Scenario, ClientTransactionID: ctid, ScannedPaymentID: v.scannedCode(),
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
func (j journal) settle(ctx context.Context, id, kind, text string) error {
	_, err := j.tell(ctx, id, kind, text)
	return err
}

// tell is settle; told is false when the entry's Failure already says text
// (it is left as it is) or there is nothing to tell.
func (j journal) tell(ctx context.Context, id, kind, text string) (bool, error) {
	t, err := j.st.Txn(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil // no journal entry: nothing to tell a POS
	}
	if err != nil {
		return false, fmt.Errorf("settle %s: %w", id, err)
	}
	e := entryOf(t, withResponse)
	if e.State != nexo.TxDone {
		if e.SaleID != "" && e.Category == nexo.CategoryPayment {
			return false, fmt.Errorf("settle %s: %w", id, errNotFinished)
		}
		return false, nil
	}
	resp := e.Response // our own copy
	if resp == nil || resp.Status.Result != nexo.Failure || resp.Status.AdditionalResponse == text {
		return false, nil
	}
	resp.Status.AdditionalResponse = text
	b, err := responseRecord(resp)
	if err != nil {
		return false, nil
	}
	if err := j.appendSettled(ctx, t, store.Transition{At: time.Now(), State: stateNexoDone, Final: true, Data: b}, kind, text); err != nil { // agent/aftersale.go
		return false, fmt.Errorf("settle %s: %w", id, err)
	}
	failpoint.Hit("journal.settle.after")
	return true, nil
}

// errCannotAsk: the journal knows too little of a payment to ask PPaaS about
// it (no PPaaS id, and no create it could replay).
var errCannotAsk = errors.New("neither a PPaaS transaction id nor a create to replay is journaled")

// standing answers where payment id (with v, its QR view) stands at PPaaS,
// through the QR engine (qr.Engine.Where, the question Reverse asks too): by
// its PPaaS id when the journal has it, else by replaying its create with the
// journaled method — except a merchantscan create, which would charge the
// consumer's code: that payment is located in the device's transaction
// listing instead (qr.Engine.Locate; qr.ErrNeverCreated when its create never
// reached PPaaS). Bounded to 15 s: recovery must not hang on one payment.
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
	if v.transactionID == "" && create.PaymentScenario == ppaas.MerchantScan {
		sentBy := j.qr.CreateSentBy(v.started)
		if v.started.Before(j.restarted) && j.restarted.Before(sentBy) {
			sentBy = j.restarted // a previous run's payment: its create was sent before this run began
		}
		return j.qr.Locate(ctx, id, v.started, sentBy)
	}
	return j.qr.Where(ctx, v.transactionID, create)
}
