package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// Journal states written by the agent. A Nexo transaction is one journal entry
// whose id is also the QR transaction's clientTransactionId and the POI
// transaction id given to the POS, so every view of the payment has one name.
const (
	stateNexoStarted = "nexo.started" // data: nexoStarted
	stateNexoDone    = "nexo.done"    // data: the final SaleToPOIResponse (Nexo JSON)
	stateQRLink      = "qr.link"      // data: qrLink, written before anything is sent to PPaaS
	stateQRPrefix    = "qr."          // + qr.State; data: qr.Transition
)

type nexoStarted struct {
	Category    nexo.MessageCategory `json:"category"`
	RequestHash string               `json:"requestHash"`
}

// qrLink is what the agent needs to rebuild the idempotent create request of a
// transaction whose create call never answered.
type qrLink struct {
	Brand            string `json:"brand"`
	Amount           int64  `json:"amount"`
	Currency         string `json:"currency"`
	OrderID          string `json:"orderId"`
	OrderDescription string `json:"orderDescription,omitempty"`
}

// journal adapts the store's transaction journal to the Nexo server (nexo.Journal)
// and to the QR engine (qr.Recorder).
type journal struct{ st *store.Store }

// Begin implements nexo.Journal.
func (j journal) Begin(ctx context.Context, e nexo.JournalEntry) error {
	data, err := json.Marshal(nexoStarted{Category: e.Category, RequestHash: e.RequestHash})
	if err != nil {
		return fmt.Errorf("journal begin: %w", err)
	}
	_, err = j.st.StartTxn(ctx, store.TxnRef{ID: uuid.NewString(), SaleID: e.SaleID, ServiceID: e.ServiceID},
		store.Transition{At: e.Started, State: stateNexoStarted, Data: data})
	if err != nil {
		return fmt.Errorf("journal begin %s/%s: %w", e.SaleID, e.ServiceID, err)
	}
	return nil
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
	return j.st.AppendTxn(ctx, t.ID, store.Transition{At: at, State: stateNexoDone, Final: true, Data: response})
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
				e.Category, e.RequestHash = s.Category, s.RequestHash
			}
		case stateNexoDone:
			e.State, e.Response = nexo.TxDone, tr.Data
		}
	}
	return e
}

// Record implements qr.Recorder: every QR state transition lands in the journal
// entry of its transaction before it takes effect.
func (j journal) Record(ctx context.Context, t qr.Transition) error {
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("journal qr transition: %w", err)
	}
	err = j.st.AppendTxn(ctx, t.ClientTransactionID, store.Transition{At: t.At, State: stateQRPrefix + string(t.To), Data: data})
	if errors.Is(err, store.ErrNotFound) {
		// A transaction that did not start from a Nexo request (a test, a tool):
		// journal it on its own.
		_, err = j.st.StartTxn(ctx, store.TxnRef{ID: t.ClientTransactionID}, store.Transition{At: t.At, State: stateQRPrefix + string(t.To), Data: data})
	}
	if err != nil {
		return fmt.Errorf("journal qr transition %s: %w", t.ClientTransactionID, err)
	}
	return nil
}

// qrView is what the journal knows of a transaction's QR side.
type qrView struct {
	link          *qrLink
	transactionID string
	state         qr.State
}

func viewQR(t store.Txn) qrView {
	var v qrView
	for _, tr := range t.Transitions {
		switch {
		case tr.State == stateQRLink:
			var l qrLink
			if json.Unmarshal(tr.Data, &l) == nil {
				v.link = &l
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
	orderID := req.SaleTransactionID.ID
	if orderID == "" {
		orderID = ctid
	}
	link := qrLink{Brand: brand, Amount: req.Amount.Minor, Currency: req.Amount.Currency, OrderID: orderID, OrderDescription: req.SaleReferenceID}
	data, _ := json.Marshal(link)
	// The link is durable before anything reaches PPaaS: after a crash the agent
	// knows which clientTransactionId to look for.
	if err := e.st.AppendTxn(ctx, ctid, store.Transition{At: time.Now(), State: stateQRLink, Data: data}); err != nil && !errors.Is(err, store.ErrNotFound) {
		return nexo.PaymentResult{}, nexo.Errorf(nexo.UnavailableService, "journal unavailable")
	}
	out, err := e.qr.Pay(ctx, qr.PaymentRequest{
		Brand:               brand,
		Amount:              qr.Amount{Amount: req.Amount.Minor, Currency: req.Amount.Currency},
		OrderID:             orderID,
		OrderDescription:    req.SaleReferenceID,
		ClientTransactionID: ctid,
	})
	if err != nil {
		var ae *qr.APIError
		if errors.As(err, &ae) {
			return nexo.PaymentResult{}, nexo.Errorf(nexo.Refusal, "refused by PPaaS: %s", ae.Message)
		}
		return nexo.PaymentResult{}, nexo.Errorf(nexo.MessageFormat, "%v", err)
	}
	e.metrics.apmOutcome(string(out.Result), out.Method.PaymentType)
	return outcomeToNexo(out, brand, req)
}

func outcomeToNexo(out qr.Outcome, brand string, req nexo.PaymentRequest) (nexo.PaymentResult, error) {
	reason := out.Reason
	switch out.Result {
	case qr.ResultApproved:
		return nexo.PaymentResult{
			POITransactionID:  nexo.TransactionID{ID: out.ClientTransactionID, TimeStamp: time.Now().UTC()},
			Type:              nexo.PaymentNormal,
			Brand:             brand,
			InstrumentType:    "QRCode",
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
	v := viewQR(t)
	if v.link == nil && v.transactionID == "" {
		return nexo.ReversalResult{}, nexo.Errorf(nexo.NotFound, "POI transaction %q is not an APM payment", id)
	}
	rr := qr.ReverseRequest{ClientTransactionID: id, TransactionID: v.transactionID, Reason: "reversal requested by the POS: " + req.Reason}
	if rr.TransactionID == "" {
		rr.Create = e.createRequest(id, *v.link)
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

// createRequest rebuilds the create call of a transaction, for idempotent replay.
func (e apmEngine) createRequest(ctid string, l qrLink) qr.CreateRequest {
	m, _ := e.qr.Method(l.Brand)
	return qr.CreateRequest{
		PaymentType: m.PaymentType, PaymentScenario: m.Scenario, ClientTransactionID: ctid,
		PaymentAmount: qr.Amount{Amount: l.Amount, Currency: l.Currency},
		Order:         qr.Order{OrderID: l.OrderID, OrderDescription: l.OrderDescription},
	}
}
