package agent

import (
	"context"
	"errors"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// events is the MQTT event de-dup set (qr.EventLog) over the store. An event
// is marked once applied, with a deferred write: applying a redelivered event
// twice is harmless (the state machine ignores events that do not move a
// transaction forward, the after-sale desk journals an update once), and the
// mark commits with the next durable write.
//
// An event that moved a payment in flight is not marked: its id is journaled
// with the QR transition it caused (journal.Record), a deferred write of the
// same commit, and that is where a redelivery is recognised, by the engine
// while the payment runs and by the after-sale desk once it has ended
// (afterSale.event). The mark would add a random key, a page or two, to the
// payment's final commit for nothing.
type events struct {
	st        *store.Store
	journaled *journaledEvents // nil: every event is marked
}

// SeenEvent implements qr.EventLog.
func (e events) SeenEvent(ctx context.Context, id string) (bool, error) {
	return e.st.EventSeen(ctx, id)
}

// MarkEvent implements qr.EventLog.
func (e events) MarkEvent(_ context.Context, id string) error {
	if e.journaled.take(id) {
		return nil
	}
	return e.st.MarkEventDeferred(id)
}

// journaledEvents are the ids of the events journal.Record has just queued
// a QR transition for, until the Subscriber marks them (at once, in the same
// goroutine). Bounded: an id it drops is marked as any other.
type journaledEvents struct {
	mu  sync.Mutex
	ids []string // oldest first
}

const maxJournaledEvents = 64

func newJournaledEvents() *journaledEvents { return &journaledEvents{} }

func (j *journaledEvents) add(id string) {
	if j == nil || id == "" {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.ids) == maxJournaledEvents {
		j.ids = append(j.ids[:0], j.ids[1:]...)
	}
	j.ids = append(j.ids, id)
}

// take reports whether id was journaled, forgetting it.
func (j *journaledEvents) take(id string) bool {
	if j == nil {
		return false
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for i, v := range j.ids {
		if v == id {
			j.ids = append(j.ids[:i], j.ids[i+1:]...)
			return true
		}
	}
	return false
}

// apmEngine is the Nexo payment engine for QR alternative payments.
type apmEngine struct {
	qr      *qr.Engine
	journal journal     // the payments' record (read by Reverse)
	metrics *metrics    // nil in tools that need none
	refunds *refundDesk // refunds (agent/refund.go); nil: refunds refused
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
	if req.Type == nexo.PaymentRefund { // refunds: agent/refund.go (the original payment names the method)
		return true
	}
	_, ok := e.brand(req)
	return ok
}

// Precheck implements nexo.Prechecker: what Pay refuses before calling PPaaS
// is refused before the request is journaled in full.
func (e apmEngine) Precheck(req nexo.PaymentRequest) error {
	if req.Type == nexo.PaymentRefund { // refunds: agent/refund.go
		return precheckRefund(req)
	}
	return precheckScan(req) // agent/scan.go
}

// Pay implements nexo.PaymentEngine. The payment's QR clientTransactionId is
// its POI transaction id (txn), so every view of it has one name.
func (e apmEngine) Pay(ctx context.Context, txn nexo.Txn, req nexo.PaymentRequest) (nexo.PaymentResult, error) {
	if req.Type == nexo.PaymentRefund { // refunds: agent/refund.go
		return e.payRefund(ctx, txn, req)
	}
	brand, ok := e.brand(req)
	if !ok {
		return nexo.PaymentResult{}, nexo.Errorf(nexo.PaymentRestriction, "no APM is configured for this brand")
	}
	ctid := txn.POITransactionID
	if ctid == "" { // not journaled (a caller without a journal): a fresh name
		ctid = uuid.NewString()
	}
	orderID := orderIDFor(req, ctid)
	out, err := e.qr.Pay(ctx, qr.PaymentRequest{
		Brand:               brand,
		Amount:              ppaas.Amount{Amount: req.Amount.Minor, Currency: req.Amount.Currency},
		OrderID:             orderID,
		OrderDescription:    req.SaleReferenceID,
		ScannedPaymentID:    req.ScannedCode, // empty: a merchantscan payment waits for the terminal's scanner
		ClientTransactionID: ctid,
	})
	// Pay's transitions are deferred; the nexo server's Finish makes them durable.
	if err != nil {
		var ae *qr.APIError
		if errors.As(err, &ae) {
			return nexo.PaymentResult{}, nexo.Errorf(nexo.Refusal, "refused by PPaaS: %s", ae.Message)
		}
		if ne := scanError(err, e.qr.Config().Timeout); ne != nil { // agent/scan.go
			return nexo.PaymentResult{}, ne
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
	if err == nil {
		enrich(&res, out.Enrichment, e.qr.Logger()) // agent/scan.go
	}
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
			ProviderReference: nexoRef(out.ProviderReference),
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

// suffix quotes the platform's reason in what the POS is told, bounded as
// the after-sale desk quotes one (maxReasonText).
func suffix(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + ppaas.Clip(reason, maxReasonText)
}

// maxNexoRef is the length of the Nexo fields a provider reference fills
// (AcquirerTransactionID's TransactionID, Max35Text), in characters.
const maxNexoRef = 35

// nexoRef fits a provider reference (kept to ppaas.MaxReferenceLen bytes)
// into its Nexo field: longer, its first 34 characters and "…". The receipt
// prints the same value.
func nexoRef(v string) string {
	if len(v) <= maxNexoRef || utf8.RuneCountInString(v) <= maxNexoRef {
		return v
	}
	n := 0
	for i := range v {
		if n == maxNexoRef-1 {
			return v[:i] + "…"
		}
		n++
	}
	return v
}

// Reverse implements nexo.PaymentEngine: a Reversal of an APM payment cancels it
// if it is undecided and refunds it if it was approved.
func (e apmEngine) Reverse(ctx context.Context, txn nexo.Txn, req nexo.ReversalRequest) (nexo.ReversalResult, error) {
	if res, err, done := e.reverseRefunds(ctx, txn, req); done { // refunds: agent/refund.go
		return res, err
	}
	id := req.OriginalPOITransactionID.ID
	defer e.journal.after.reversing(id)() // its "refunded" is this reversal's: agent/aftersale.go
	t, err := e.journal.st.Txn(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nexo.ReversalResult{}, nexo.Errorf(nexo.NotFound, "no POI transaction %q", id)
	}
	if err != nil {
		return nexo.ReversalResult{}, nexo.Errorf(nexo.UnavailableService, "journal unavailable")
	}
	// Only the POS that made a payment may reverse it, and only a payment.
	if txn.SaleID != "" && t.SaleID != "" && t.SaleID != txn.SaleID {
		return nexo.ReversalResult{}, nexo.Errorf(nexo.NotFound, "no POI transaction %q for SaleID %q", id, txn.SaleID)
	}
	if e := entryOf(t, 0); e.SaleID != "" && e.Category != nexo.CategoryPayment {
		return nexo.ReversalResult{}, nexo.Errorf(nexo.NotFound, "POI transaction %q is not a payment", id)
	}
	v := viewQR(t)
	rr := qr.ReverseRequest{ClientTransactionID: id, TransactionID: v.transactionID, Reason: "reversal requested by the POS: " + req.Reason}
	if rr.TransactionID == "" {
		c, ok := e.journal.createRequest(id, v)
		if !ok {
			return nexo.ReversalResult{}, nexo.Errorf(nexo.NotFound, "POI transaction %q is not an APM payment", id)
		}
		rr.Create = c
		rr.Started = t.Started // a merchantscan payment is located, not created again (qr.Engine.Locate)
	}
	out, err := e.qr.Reverse(ctx, rr)
	if err != nil {
		return nexo.ReversalResult{}, nexo.Errorf(nexo.UnreachableHost, "reversal not confirmed by PPaaS: %v", err)
	}
	return nexo.ReversalResult{
		POITransactionID:  nexo.TransactionID{ID: txn.POITransactionID, TimeStamp: time.Now().UTC()}, // the reversal's own journal entry
		ProviderReference: nexoRef(out.ProviderReference),
		ReversedAmount:    reversedAmount(out), // refunds: agent/refund.go (receipts)
	}, nil
}

// orderIDFor is the PPaaS order id of a payment: the POS's own transaction id.
func orderIDFor(p nexo.PaymentRequest, ctid string) string {
	if p.SaleTransactionID.ID != "" {
		return p.SaleTransactionID.ID
	}
	return ctid
}
