package nexo

import (
	"context"
	"errors"
	"strings"
	"time"
)

// PaymentEngine carries out payments and reversals. Failures are *Error:
// PaymentRestriction when it cannot take the payment, Refusal when declined,
// UnreachableHost when the outcome is unknown, Aborted when ctx was
// cancelled with cause ErrAborted. Any other error is treated as an unknown
// outcome (UnreachableHost).
//
// txn names the transaction the call serves: the POS's SaleID and ServiceID,
// and the POI transaction id the journal gave it at Begin (the engine's own
// name for the payment, e.g. the QR transaction's clientTransactionId).
type PaymentEngine interface {
	Pay(ctx context.Context, txn Txn, req PaymentRequest) (PaymentResult, error)
	Reverse(ctx context.Context, txn Txn, req ReversalRequest) (ReversalResult, error)
}

// Txn names one journaled transaction (Payment or Reversal) on its way down
// the payment path: the server gets POITransactionID from Journal.Begin and
// passes the whole value to the engine and to Journal.Finish, so nobody looks
// the transaction up again by SaleID and ServiceID.
type Txn struct {
	SaleID           string
	ServiceID        string
	POITransactionID string
}

// RoutedEngine is a PaymentEngine that says which payments it takes (by
// brand, instrument type, currency…).
type RoutedEngine interface {
	PaymentEngine
	Accepts(req PaymentRequest) bool
}

// Router is a PaymentEngine that hands each payment to the first engine that
// accepts it.
type Router struct {
	engines []RoutedEngine
}

// NewRouter returns a Router over engines, tried in order.
func NewRouter(engines ...RoutedEngine) *Router { return &Router{engines: engines} }

// Pay implements PaymentEngine.
func (r *Router) Pay(ctx context.Context, txn Txn, req PaymentRequest) (PaymentResult, error) {
	for _, e := range r.engines {
		if e.Accepts(req) {
			return e.Pay(ctx, txn, req)
		}
	}
	what := "no brand or instrument type"
	switch {
	case len(req.AllowedBrands) > 0:
		what = "brand " + strings.Join(req.AllowedBrands, ",")
	case req.InstrumentType != "":
		what = "instrument type " + req.InstrumentType
	}
	return PaymentResult{}, Errorf(PaymentRestriction, "no payment method accepts %s", what)
}

// Precheck refuses, before anything is journaled in full or sent anywhere, a
// payment that no engine accepts, or that the engine accepting it refuses up
// front (when it is a Prechecker too).
func (r *Router) Precheck(req PaymentRequest) error {
	for _, e := range r.engines {
		if e.Accepts(req) {
			if pc, ok := e.(Prechecker); ok {
				return pc.Precheck(req)
			}
			return nil
		}
	}
	_, err := r.Pay(context.Background(), Txn{}, req) // no engine: only builds the refusal
	return err
}

// Prechecker is a PaymentEngine that can refuse a payment up front, without
// calling anything. The server journals such a refusal compactly (the
// request's header and the refusal, not the request), so a POS sending
// payments nothing will take cannot fill the journal.
type Prechecker interface {
	Precheck(req PaymentRequest) error
}

// Reverse implements PaymentEngine. A reversal names only the POI
// transaction, so each engine is asked in turn; an engine that does not know
// the transaction answers NotFound.
func (r *Router) Reverse(ctx context.Context, txn Txn, req ReversalRequest) (ReversalResult, error) {
	for _, e := range r.engines {
		res, err := e.Reverse(ctx, txn, req)
		var ne *Error
		if errors.As(err, &ne) && ne.Condition == NotFound {
			continue
		}
		return res, err
	}
	return ReversalResult{}, Errorf(NotFound, "no transaction %s", req.OriginalPOITransactionID.ID)
}

// TxState is the state of a journaled transaction.
type TxState string

// Transaction states.
const (
	TxInProgress TxState = "InProgress"
	TxDone       TxState = "Done"
)

// JournalEntry is one journaled transaction (Payment or Reversal), keyed by
// SaleID and ServiceID.
type JournalEntry struct {
	SaleID    string
	ServiceID string
	Category  MessageCategory
	// RequestHash identifies the request's content, to tell an identical
	// retry from a reuse of the ServiceID.
	RequestHash string
	// Request is the request as the server journals it (the model, whatever
	// envelope the POS used): what recovery after a crash needs to know about
	// the transaction (amount, brand, references). Nil for a payment refused
	// before the engine ran (see Prechecker): Begin then gets an entry
	// already Done, with its Response. Lookup and Last need not fill it (the
	// server reads only the hash, the state and the Response).
	Request *Request
	State   TxState
	// Response is the final response (the model: TransactionStatus and a
	// duplicate's replay encode it for the envelope asking); nil while
	// InProgress. What Lookup and Last return may be shared with other
	// callers (a journal may keep it decoded): it is read-only.
	Response *Response
	Started  time.Time
	Updated  time.Time
}

// Journal persists transactions so that TransactionStatus and duplicate
// ServiceID replay survive a restart.
type Journal interface {
	// Begin records a new transaction, replacing any entry with the same
	// SaleID and ServiceID (the server has checked it is expired), and
	// returns the POI transaction id it is journaled under.
	Begin(ctx context.Context, e JournalEntry) (poiTransactionID string, err error)
	// Finish records the final response of the transaction Begin started.
	Finish(ctx context.Context, txn Txn, response *Response, at time.Time) error
	// Lookup returns the entry for SaleID and ServiceID, ok false if none.
	Lookup(ctx context.Context, saleID, serviceID string) (e JournalEntry, ok bool, err error)
	// Last returns the most recently begun entry of SaleID, ok false if none.
	Last(ctx context.Context, saleID string) (e JournalEntry, ok bool, err error)
}

// Display shows texts on the terminal's display.
type Display interface {
	Show(ctx context.Context, outputs []DisplayOutput) error
}

// Health is what Diagnosis reports.
type Health struct {
	// Hosts are the platform hosts (auth, API, MQTT…) and whether they are
	// reachable; AcquirerID carries their name.
	Hosts       []HostStatus
	OutboxDepth int
	// Attention, when set, says what needs a person (issue 10: records the
	// outbox gave up on); Diagnosis then reports GlobalStatus Maintenance.
	Attention string
}

// Diagnoser reports host reachability and outbox depth.
type Diagnoser interface {
	Diagnose(ctx context.Context) (Health, error)
}

// PendingEvent is an EventNotification that could not be delivered to the
// POS, ready to be POSTed again as is (see DeliverEvent).
type PendingEvent struct {
	URL         string
	ContentType string
	Body        []byte
}

// Outbox queues an event for later delivery.
type Outbox interface {
	EnqueueEvent(ctx context.Context, ev PendingEvent) error
}

// Observer hears about every exchange the server answered, for metrics. It is
// called after the response was written and must not block.
type Observer interface {
	ObserveRequest(category MessageCategory, result Result, condition ErrorCondition, d time.Duration)
}

// InFlight hears when the server starts serving a POS request (on arrival,
// before its body is read) and when it is done with it (its answer written
// and observed, as net/http sends it, or returned by Exchange), so the agent's background work can
// wait for the POS (issue 17). Begin and End come in pairs and must not block.
type InFlight interface {
	Begin()
	End()
}

// Deps are the server's collaborators. Engine and Journal are required;
// without Display, Diagnoser or Outbox the matching service answers
// UnavailableDevice / reports no hosts / Notify fails.
type Deps struct {
	Engine    PaymentEngine
	Journal   Journal
	Display   Display
	Diagnoser Diagnoser
	Outbox    Outbox
	Observer  Observer // optional
	InFlight  InFlight // optional
	// Ledger (optional) serves GetTotals and Reconciliation; Synchroniser
	// (optional) serves AcquirerSynchronisation.
	Ledger       Ledger
	Synchroniser Synchroniser
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}
