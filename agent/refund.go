package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/termagent/termagent/ppaas"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/termagent/termagent/failpoint"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// Refunds (issue 14): a PaymentRequest with PaymentType Refund naming its
// OriginalPOITransaction, and a Reversal with a ReversedAmount, refund (part
// of) an approved APM payment at PPaaS. The money rules:
//
//   - Never more than was paid. Each refund reserves its amount on the
//     original payment's journal entry (a durable transition, written under
//     the desk's lock) before anything reaches PPaaS; what remains refundable
//     is the payment less every reservation not released, and less what PPaaS
//     itself says is refunded. A refund that asks more is refused, naming the
//     remainder.
//   - Never twice. The refund's own POI transaction id (its journal entry,
//     begun by the Nexo server before the engine runs) is PPaaS's
//     clientRefundId, the idempotency key: a retried ServiceID replays the
//     journaled answer, and every re-send after a crash or a timeout reuses
//     the key, so PPaaS refunds once.
//   - Never a definitive answer a later event can make false. A reservation
//     is released only on PPaaS's definitive refusal (400/409/422 on the
//     first try). A refund PPaaS accepted but has not completed (an
//     asynchronous refund answers {"status":"pending"}), or whose answer was
//     lost, is owned by the refund desk: the POS is answered Failure with
//     ErrorCondition InProgress (never Success), the refund's journal entry
//     stays unfinished (TransactionStatus: InProgress), and the desk re-sends
//     it with the same key until PPaaS says refunded (then the entry gets the
//     Success response, with receipts). A refusal of a re-send is never read
//     as "nothing was refunded" (agent/refund_desk.go): what PPaaS's state
//     cannot settle goes to a person, loudly, the amount still reserved.
const (
	// On the original payment: a refund's amount is reserved (data refundMark).
	stateRefundReserved = "agent.refund.reserved"
	// On the original payment: PPaaS refused that refund; the amount is
	// refundable again (data refundMark).
	stateRefundReleased = "agent.refund.released"
	// On the refund: PPaaS accepted it and has not completed it, or its answer
	// is unknown; the desk owns it (data: the response the POS was given).
	stateRefundPending = "agent.refund.pending"
	// On the refund: the desk gave up deciding it (PPaaS refused a re-send
	// and its state does not settle it, PPaaS reports the refund failed, or
	// it stayed pending past the age limit). Its amount stays reserved; a
	// person must check PPaaS (data: the response TransactionStatus gives,
	// "manual action needed"). The entry stays unfinished, so the desk
	// counts it at every pass (/readyz degraded, Diagnosis).
	stateRefundManual = "agent.refund.manual"
	// On a refund given up to a person: the person closed it as not
	// refunded (`agent refund close`), written before the amount is released
	// (data: the final response). A release found after it is that close,
	// not PPaaS's refusal (refund desk: trySettle).
	stateRefundClosed = "agent.refund.closed"
	// On a full Reversal of an approved payment: it is a refund of the whole
	// payment (data refundMark), written before the reservation.
	stateRefundFull = "agent.refund.full"
)

// refundMark is one reservation (or its release) on the original payment.
type refundMark struct {
	RefundID string `json:"refundId"` // the refund's POI transaction id, PPaaS's clientRefundId
	Amount   int64  `json:"amount"`   // minor units
	Currency string `json:"currency"`
}

// refundDesk serialises reservations (so two refunds of one payment cannot
// both see the same remainder) and bounds how long a refund waits for an
// asynchronous PPaaS refund before the POS is answered InProgress.
type refundDesk struct {
	mu sync.Mutex
	// Wait is how long a refund waits for PPaaS to complete an asynchronous
	// refund before answering InProgress; Poll is the pace of re-sends then.
	Wait, Poll time.Duration
	// Every is the pace at which pending refunds are re-sent in the background.
	Every time.Duration
	// MaxBackoff caps a pending refund's re-send interval (Every, doubled at
	// each inconclusive answer, with jitter); MaxAge is how long a refund may
	// stay pending before the desk gives it up to a person (manual action);
	// MaxPending bounds the refunds of one payment pending at once.
	MaxBackoff, MaxAge time.Duration
	MaxPending         int

	// The desk loop's own state: when each pending refund is next re-sent.
	next map[string]retry
	// manual counts the refunds waiting for manual action (last pass);
	// gaveUp those the desk gave up since start.
	manual, gaveUp atomic.Int64
}

// retry is one pending refund's backoff.
type retry struct {
	attempts int
	at       time.Time
}

// due reports whether refund id is due for a re-send at now.
func (d *refundDesk) due(id string, now time.Time) bool {
	r, ok := d.next[id]
	return !ok || !now.Before(r.at)
}

// later schedules refund id's next re-send: Every doubled at each attempt,
// capped at MaxBackoff, with ±20% jitter so that refunds do not re-send in
// step.
func (d *refundDesk) later(id string, now time.Time) {
	if d.next == nil {
		d.next = map[string]retry{}
	}
	r := d.next[id]
	wait := d.Every
	for i := 0; i < r.attempts && wait < d.MaxBackoff; i++ {
		wait *= 2
	}
	wait = min(wait, d.MaxBackoff)
	wait += time.Duration((rand.Float64()*0.4 - 0.2) * float64(wait))
	r.attempts++
	r.at = now.Add(wait)
	d.next[id] = r
}

// RefundTiming tunes the refund desk; zero values take the defaults.
type RefundTiming struct {
	// Wait bounds how long a refund waits for an asynchronous PPaaS refund to
	// complete before the POS is answered InProgress (default 3 s); Poll is the
	// pace of re-sends meanwhile (default 250 ms).
	Wait, Poll time.Duration
	// Every is the base pace at which pending refunds are re-sent in the
	// background until PPaaS completes or refuses them (default 2 s); each
	// inconclusive answer doubles a refund's interval, up to MaxBackoff
	// (default 10 min).
	Every, MaxBackoff time.Duration
	// MaxAge is how long a refund may stay pending before the desk gives it
	// up to a person: ERROR log, /readyz degraded, TransactionStatus "manual
	// action needed" (default 7 days; Pledg's refunds take up to 48 h).
	MaxAge time.Duration
	// MaxPending bounds the refunds of one payment pending at once (default
	// 8); one more is refused until some complete.
	MaxPending int
}

func (o Options) refundDesk() *refundDesk {
	t := o.Refunds
	d := &refundDesk{Wait: 3 * time.Second, Poll: 250 * time.Millisecond, Every: 2 * time.Second,
		MaxBackoff: 10 * time.Minute, MaxAge: 7 * 24 * time.Hour, MaxPending: 8}
	if t.MaxBackoff > 0 {
		d.MaxBackoff = t.MaxBackoff
	}
	if t.MaxAge > 0 {
		d.MaxAge = t.MaxAge
	}
	if t.MaxPending > 0 {
		d.MaxPending = t.MaxPending
	}
	if t.Wait > 0 {
		d.Wait = t.Wait
	}
	if t.Poll > 0 {
		d.Poll = t.Poll
	}
	if t.Every > 0 {
		d.Every = t.Every
	}
	return d
}

// reversedAmount is what a full reversal refunded: the payment's amount if it
// had been approved (refunded), nothing if it was only cancelled.
func reversedAmount(out qr.Outcome) nexo.Amount {
	if out.State != ppaas.Refunded {
		return nexo.Amount{}
	}
	return nexo.Amount{Minor: out.Amount.Amount, Currency: out.Amount.Currency}
}

// refundOrder is a refund as its journal entry tells it.
type refundOrder struct {
	id        string // the refund's POI transaction id = clientRefundId
	started   time.Time
	category  nexo.MessageCategory
	saleID    string
	serviceID string
	original  string
	amount    nexo.Amount // currency empty for a reversal until the original is read
	reversed  string      // a reversal's ReversedAmount as sent
	payment   *nexo.PaymentRequest
	reversal  *nexo.ReversalRequest
	full      bool // a full Reversal of an approved payment
}

// refundOrderOf reads a journal entry as a refund: a Payment of type Refund,
// or a Reversal with a ReversedAmount. ok is false for anything else.
func refundOrderOf(t store.Txn) (refundOrder, bool) {
	e := entryOf(t, withRequest)
	req := e.Request
	if req == nil {
		return refundOrder{}, false
	}
	o := refundOrder{id: t.ID, started: t.Started, category: e.Category, saleID: t.SaleID, serviceID: t.ServiceID}
	switch {
	case req.Payment != nil && req.Payment.Type == nexo.PaymentRefund && req.Payment.OriginalPOITransactionID.ID != "":
		o.original, o.amount, o.payment = req.Payment.OriginalPOITransactionID.ID, req.Payment.Amount, req.Payment
	case req.Reversal != nil && req.Reversal.ReversedAmount != "":
		o.original, o.reversed, o.reversal = req.Reversal.OriginalPOITransactionID.ID, req.Reversal.ReversedAmount, req.Reversal
	case req.Reversal != nil:
		// A full reversal is a refund once marked so (reverseFull).
		i := slices.IndexFunc(t.Transitions, func(tr store.Transition) bool { return tr.State == stateRefundFull })
		if i < 0 {
			return refundOrder{}, false
		}
		m, ok := markOf(t.Transitions[i])
		if !ok {
			return refundOrder{}, false
		}
		o.original, o.reversal, o.full = req.Reversal.OriginalPOITransactionID.ID, req.Reversal, true
		o.amount = nexo.Amount{Minor: m.Amount, Currency: m.Currency}
	default:
		return refundOrder{}, false
	}
	return o, true
}

// refundOriginal names the original payment an unfinished refund needs (its
// reservation is there): the journal keeps it (store.Options.DependsOn).
func refundOriginal(t store.Txn) string {
	if o, ok := refundOrderOf(t); ok {
		return o.original
	}
	return ""
}

// refundable is the original payment of a refund, as the journal knows it.
type refundable struct {
	txn      store.Txn
	paid     nexo.Amount
	result   nexo.PaymentResult
	ppaasID  string
	reserved map[string]refundMark // by refund id, releases removed
}

func (r refundable) reservedTotal() int64 {
	var n int64
	for _, m := range r.reserved {
		n += m.Amount
	}
	return n
}

// beforeSend is a journal read failure of readRefundable told to the POS
// before anything of the refund was reserved or sent: nothing was refunded.
func beforeSend(err error) error {
	if ne := (*nexo.Error)(nil); errors.As(err, &ne) && ne.Condition == nexo.UnavailableService {
		return nexo.Errorf(nexo.UnavailableService, "%s; nothing was refunded", ne.Text)
	}
	return err
}

// readRefundable reads the original payment id of a refund from saleID. The
// errors are the Nexo answers a POS gets.
func readRefundable(ctx context.Context, st *store.Store, id, saleID string) (refundable, error) {
	t, err := st.Txn(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return refundable{}, nexo.Errorf(nexo.NotFound, "no POI transaction %q to refund", id)
	}
	if err != nil {
		// Says nothing of what was refunded: the refund desk and the
		// after-sale desk read the original too, after sends (refund's
		// callers, before any send, say so: beforeSend).
		return refundable{}, nexo.Errorf(nexo.UnavailableService, "journal unavailable: the payment %q could not be read", id)
	}
	e := entryOf(t, withResponse)
	// Only the POS that took a payment may refund it, as for a Reversal.
	if t.SaleID != saleID || e.Category != nexo.CategoryPayment {
		return refundable{}, nexo.Errorf(nexo.NotFound, "no payment %q for SaleID %q", id, saleID)
	}
	resp := e.Response
	if resp == nil || resp.Status.Result != nexo.Success || resp.Payment == nil || resp.Payment.Result == nil || resp.Payment.Result.Type == nexo.PaymentRefund {
		return refundable{}, nexo.Errorf(nexo.Refusal, "POI transaction %q is not an approved payment; there is nothing to refund", id)
	}
	r := refundable{txn: t, result: *resp.Payment.Result, paid: resp.Payment.Result.AuthorizedAmount, reserved: map[string]refundMark{}}
	r.ppaasID = viewQR(t).transactionID
	if r.ppaasID == "" {
		r.ppaasID = r.result.ApprovalCode // the PPaaS transaction id (outcomeToNexo)
	}
	for _, tr := range t.Transitions {
		var m refundMark
		switch tr.State {
		case stateRefundReserved:
			if json.Unmarshal(tr.Data, &m) == nil {
				r.reserved[m.RefundID] = m
			}
		case stateRefundReleased:
			if json.Unmarshal(tr.Data, &m) == nil {
				delete(r.reserved, m.RefundID)
			}
		}
	}
	return r, nil
}

// refundOutcome is a completed refund.
type refundOutcome struct {
	amount   nexo.Amount
	original refundable
	ref      ppaas.Refund
}

// errRefundPending: the POS was about to be given a definitive failure for a
// refund the desk owns (PPaaS may refund it). The Nexo server then answers
// InProgress instead (see journal.finish).
var errRefundPending = errors.New("refund pending at PPaaS: its outcome is not journaled until PPaaS answers definitively")

// pendingRefund is the POS's answer for a refund PPaaS has not completed.
func pendingRefund(o refundOrder, amount nexo.Amount, why string) *nexo.Error {
	return &nexo.Error{Condition: nexo.InProgress,
		Text: fmt.Sprintf("%s: %s of %s %s; not refunded yet — TransactionStatus says InProgress until PPaaS confirms (do not refund it again)",
			nexo.RefundPending, refundWord(o), amount, why),
		POITransactionID: nexo.TransactionID{ID: o.id, TimeStamp: o.started}}
}

func refundWord(o refundOrder) string {
	if o.full {
		return "reversal"
	}
	if o.category == nexo.CategoryReversal {
		return "partial reversal"
	}
	return "refund"
}

// refund carries out o: checks, reservation, PPaaS. It returns the completed
// refund, or a *nexo.Error (a refusal with nothing refunded, or InProgress for
// a refund the desk now owns).
func (e apmEngine) refund(ctx context.Context, o refundOrder) (refundOutcome, error) {
	desk := e.refunds
	if desk == nil || e.qr == nil {
		return refundOutcome{}, nexo.Errorf(nexo.PaymentRestriction, "refunds are not available on this terminal")
	}
	orig, err := readRefundable(ctx, e.journal.st, o.original, o.saleID)
	if err != nil {
		return refundOutcome{}, beforeSend(err)
	}
	amount := o.amount
	if o.reversed != "" {
		minor, err := nexo.ParseAmount("ReversalRequest.ReversedAmount", o.reversed, orig.paid.Currency)
		if err != nil {
			return refundOutcome{}, err
		}
		amount = nexo.Amount{Minor: minor, Currency: orig.paid.Currency}
	}
	if amount.Currency != orig.paid.Currency {
		return refundOutcome{}, nexo.Errorf(nexo.Refusal, "refund in %s of a payment made in %s", amount.Currency, orig.paid.Currency)
	}
	if orig.ppaasID == "" {
		return refundOutcome{}, nexo.Errorf(nexo.Refusal, "POI transaction %q has no PPaaS transaction to refund", o.original)
	}
	client := e.qr.Client()

	desk.mu.Lock()
	// Read again under the lock: the remainder must count every reservation.
	orig, err = readRefundable(ctx, e.journal.st, o.original, o.saleID)
	if err != nil {
		desk.mu.Unlock()
		return refundOutcome{}, beforeSend(err)
	}
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	cur, err := client.Get(gctx, orig.ppaasID)
	cancel()
	if err != nil {
		desk.mu.Unlock()
		return refundOutcome{}, nexo.Errorf(nexo.UnreachableHost, "PPaaS did not answer the status read of the original payment; nothing was refunded, send the refund again")
	}
	remaining := orig.paid.Minor - orig.reservedTotal()
	switch {
	case cur.Status == ppaas.Refunded:
		remaining = 0
	case cur.Status != ppaas.Approved:
		desk.mu.Unlock()
		return refundOutcome{}, nexo.Errorf(nexo.Refusal, "the payment is %s at PPaaS and cannot be refunded; nothing was refunded", cur.Status)
	default:
		remaining = min(remaining, cur.PaymentAmount.Amount-cur.RefundedAmount)
	}
	if amount.Minor > remaining {
		desk.mu.Unlock()
		return refundOutcome{}, nexo.RefundExceeds(amount, nexo.Amount{Minor: max(remaining, 0), Currency: amount.Currency}, orig.paid, o.original)
	}
	if n := pendingRefunds(ctx, e.journal.st, orig); desk.MaxPending > 0 && n >= desk.MaxPending {
		desk.mu.Unlock()
		return refundOutcome{}, nexo.Errorf(nexo.Refusal,
			"%d refunds of POI transaction %q are still pending at PPaaS (at most %d at once): wait until TransactionStatus shows them settled, then refund what remains; nothing was refunded",
			n, o.original, desk.MaxPending)
	}
	mark, _ := json.Marshal(refundMark{RefundID: o.id, Amount: amount.Minor, Currency: amount.Currency})
	err = e.journal.st.AppendTxn(ctx, o.original, store.Transition{At: time.Now(), State: stateRefundReserved, Data: mark})
	desk.mu.Unlock()
	if err != nil {
		return refundOutcome{}, nexo.Errorf(nexo.UnavailableService, "journal unavailable; nothing was refunded")
	}
	failpoint.Hit("refund.reserved.after")
	orig.reserved[o.id] = refundMark{RefundID: o.id, Amount: amount.Minor, Currency: amount.Currency}

	// From here PPaaS may refund: only a definitive answer ends the refund.
	sctx := context.WithoutCancel(ctx)
	ref, err := sendRefund(sctx, client, orig.ppaasID, o.id, amount)
	failpoint.Hit("refund.sent.after") // PPaaS answered; nothing journaled yet
	if err != nil {
		if refusedByPPaaS(err) {
			return refundOutcome{}, e.release(ctx, o, amount, err)
		}
		return refundOutcome{}, pendingRefund(o, amount, "sent to PPaaS, no answer yet")
	}
	deadline := time.Now().Add(desk.Wait)
	for !ref.Done() && time.Now().Before(deadline) {
		t := time.NewTimer(desk.Poll)
		select {
		case <-t.C:
		case <-ctx.Done():
			// Aborted or timed out: the journal's hook keeps the refund the
			// desk's (the POS is told InProgress).
			t.Stop()
			return refundOutcome{}, pendingRefund(o, amount, "accepted by PPaaS")
		}
		again, err := sendRefund(sctx, client, orig.ppaasID, o.id, amount)
		if err != nil {
			break
		}
		ref = again
	}
	if !ref.Done() {
		return refundOutcome{}, pendingRefund(o, amount, "accepted by PPaaS, pending at the provider")
	}
	return refundOutcome{amount: amount, original: orig, ref: ref}, nil
}

// pendingRefunds counts the refunds of orig whose amount is reserved and
// whose own entry is not final (pending at PPaaS, or waiting for a person).
func pendingRefunds(ctx context.Context, st *store.Store, orig refundable) int {
	n := 0
	for id := range orig.reserved {
		if t, err := st.Txn(ctx, id); err != nil || !t.Final {
			n++ // unreadable counts as pending: the cap errs on the safe side
		}
	}
	return n
}

// sendRefund asks PPaaS to refund amount of transaction ppaasID with the
// idempotency key refundID (the same key on every send of one refund).
func sendRefund(ctx context.Context, c *qr.Client, ppaasID, refundID string, amount nexo.Amount) (ppaas.Refund, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return c.Refund(ctx, ppaasID, ppaas.RefundRequest{ClientRefundID: refundID, Amount: ppaas.Amount{Amount: amount.Minor, Currency: amount.Currency}})
}

// refusedByPPaaS reports whether err is PPaaS's definitive refusal of a refund
// (nothing refunded): 400, 409 or 422 on a call no earlier attempt of which
// may have reached PPaaS. Anything else (a 404 about a transaction PPaaS gave
// us, a 401, a 5xx, a lost answer) leaves the refund pending.
func refusedByPPaaS(err error) bool {
	var ae *qr.APIError
	if !errors.As(err, &ae) || ae.AfterUncertain {
		return false
	}
	return slices.Contains([]int{http.StatusBadRequest, http.StatusConflict, http.StatusUnprocessableEntity}, ae.StatusCode)
}

// release makes a refused refund's amount refundable again and returns the
// refusal. If the release cannot be written the amount stays reserved (never
// refundable twice) and the refund stays pending for the desk.
func (e apmEngine) release(ctx context.Context, o refundOrder, amount nexo.Amount, cause error) error {
	mark, _ := json.Marshal(refundMark{RefundID: o.id, Amount: amount.Minor, Currency: amount.Currency})
	if err := e.journal.st.AppendTxn(context.WithoutCancel(ctx), o.original, store.Transition{At: time.Now(), State: stateRefundReleased, Data: mark}); err != nil {
		return pendingRefund(o, amount, "refused by PPaaS, not yet recorded")
	}
	msg := cause.Error()
	var ae *qr.APIError
	if errors.As(cause, &ae) && ae.Message != "" {
		msg = ae.Message
	}
	return nexo.Errorf(nexo.Refusal, "refund refused by PPaaS: %s; nothing was refunded", msg)
}

// payRefund is Pay for a PaymentType Refund.
func (e apmEngine) payRefund(ctx context.Context, txn nexo.Txn, req nexo.PaymentRequest) (nexo.PaymentResult, error) {
	o, err := orderFor(txn, nexo.CategoryPayment)
	if err != nil {
		return nexo.PaymentResult{}, err
	}
	o.original, o.amount, o.payment = req.OriginalPOITransactionID.ID, req.Amount, &req
	out, err := e.refund(ctx, o)
	if err != nil {
		return nexo.PaymentResult{}, err
	}
	return refundResult(o, out), nil
}

func refundResult(o refundOrder, out refundOutcome) nexo.PaymentResult {
	return nexo.PaymentResult{
		POITransactionID:  nexo.TransactionID{ID: o.id, TimeStamp: o.started},
		Type:              nexo.PaymentRefund,
		Brand:             out.original.result.Brand,
		InstrumentType:    out.original.result.InstrumentType,
		AuthorizedAmount:  out.amount,
		AcquirerID:        out.original.result.AcquirerID,
		ProviderReference: out.original.result.ProviderReference,
		ApprovalCode:      out.original.ppaasID,
	}
}

// reverseRefunds is Reverse's part for refunds: a Reversal with a
// ReversedAmount is a partial refund; a Reversal of the whole payment is
// refused once part of it is refunded (it would refund more than remains,
// and count the whole payment reversed in totals). done is false when the
// reversal is an ordinary one.
//
// A refund itself is never reversed: PPaaS cannot undo a refund, and the
// ordinary reversal would replay a payment under the refund's id.
//
// A full Reversal of an approved payment is a refund of the whole payment
// (reverseFull): reserved like any refund, answered InProgress while PPaaS's
// refund is pending, settled by the desk.
func (e apmEngine) reverseRefunds(ctx context.Context, txn nexo.Txn, req nexo.ReversalRequest) (nexo.ReversalResult, error, bool) {
	if e.journal.st == nil {
		return nexo.ReversalResult{}, nil, false
	}
	id := req.OriginalPOITransactionID.ID
	if t, err := e.journal.st.Txn(ctx, id); err == nil && (txn.SaleID == "" || t.SaleID == txn.SaleID) {
		if _, ok := refundOrderOf(t); ok {
			return nexo.ReversalResult{}, nexo.Errorf(nexo.Refusal,
				"POI transaction %s is a refund: a refund cannot be reversed (PPaaS cannot undo it); take a new payment for the amount instead; nothing was changed", id), true
		}
	}
	if req.ReversedAmount != "" {
		res, err := e.reversePartial(ctx, txn, req)
		return res, err, true
	}
	orig, err := readRefundable(ctx, e.journal.st, id, txn.SaleID)
	if ne := (*nexo.Error)(nil); errors.As(err, &ne) && ne.Condition == nexo.UnavailableService {
		// The journal could not say whether the payment has refunds: the
		// ordinary reversal, which does not count them, must not run on a
		// guess (a partly refunded payment would be reversed in full).
		return nexo.ReversalResult{}, beforeSend(err), true
	}
	if err != nil || e.refunds == nil || e.qr == nil {
		return nexo.ReversalResult{}, nil, false // not an approved payment: the ordinary reversal answers
	}
	if len(orig.reserved) == 0 {
		res, err := e.reverseFull(ctx, txn, req, orig)
		return res, err, true
	}
	done := nexo.Amount{Minor: orig.reservedTotal(), Currency: orig.paid.Currency}
	left := nexo.Amount{Minor: orig.paid.Minor - done.Minor, Currency: orig.paid.Currency}
	if left.Minor <= 0 {
		return nexo.ReversalResult{}, nexo.Errorf(nexo.Refusal,
			"POI transaction %s is already refunded or reversed in full (%s refunded or pending): nothing remains to reverse; TransactionStatus of the earlier refund tells where it stands",
			id, done), true
	}
	return nexo.ReversalResult{}, nexo.Errorf(nexo.Refusal,
		"POI transaction %s is partly refunded (%s refunded or pending of %s): reverse what remains with ReversedAmount (at most %s)",
		id, done, orig.paid, left), true
}

// reverseFull is Reverse for a full Reversal of an approved payment: a refund
// of the whole payment. The mark on the reversal's own entry (durable, before
// the reservation) makes it a refund for the desk and recovery.
func (e apmEngine) reverseFull(ctx context.Context, txn nexo.Txn, req nexo.ReversalRequest, orig refundable) (nexo.ReversalResult, error) {
	o, err := orderFor(txn, nexo.CategoryReversal)
	if err != nil {
		return nexo.ReversalResult{}, err
	}
	o.original, o.reversal, o.full, o.amount = req.OriginalPOITransactionID.ID, &req, true, orig.paid
	mark, _ := json.Marshal(refundMark{RefundID: o.id, Amount: orig.paid.Minor, Currency: orig.paid.Currency})
	if err := e.journal.st.AppendTxn(ctx, o.id, store.Transition{At: time.Now(), State: stateRefundFull, Data: mark}); err != nil {
		return nexo.ReversalResult{}, nexo.Errorf(nexo.UnavailableService, "journal unavailable; nothing was reversed")
	}
	out, err := e.refund(ctx, o)
	if err != nil {
		return nexo.ReversalResult{}, err
	}
	return nexo.ReversalResult{POITransactionID: nexo.TransactionID{ID: o.id, TimeStamp: o.started},
		ProviderReference: out.original.result.ProviderReference, ReversedAmount: out.amount}, nil
}

// reversePartial is Reverse for a Reversal with a ReversedAmount.
func (e apmEngine) reversePartial(ctx context.Context, txn nexo.Txn, req nexo.ReversalRequest) (nexo.ReversalResult, error) {
	o, err := orderFor(txn, nexo.CategoryReversal)
	if err != nil {
		return nexo.ReversalResult{}, err
	}
	o.original, o.reversed, o.reversal = req.OriginalPOITransactionID.ID, req.ReversedAmount, &req
	out, err := e.refund(ctx, o)
	if err != nil {
		return nexo.ReversalResult{}, err
	}
	return nexo.ReversalResult{POITransactionID: nexo.TransactionID{ID: o.id, TimeStamp: o.started},
		ProviderReference: out.original.result.ProviderReference, ReversedAmount: out.amount}, nil
}

// orderFor names the refund after its own journal entry (begun by the Nexo
// server): its id is the idempotency key.
func orderFor(txn nexo.Txn, c nexo.MessageCategory) (refundOrder, error) {
	if txn.POITransactionID == "" {
		return refundOrder{}, nexo.Errorf(nexo.UnavailableService, "refund without a journal entry; nothing was refunded")
	}
	return refundOrder{id: txn.POITransactionID, started: time.Now().UTC(), category: c, saleID: txn.SaleID, serviceID: txn.ServiceID}, nil
}

// precheckRefund refuses up front what no refund can be: one that names no
// original payment.
func precheckRefund(req nexo.PaymentRequest) error {
	if req.OriginalPOITransactionID.ID == "" {
		return nexo.Errorf(nexo.PaymentRestriction, "unreferenced refunds are not supported: PPaaS refunds a payment it took; send PaymentData.OriginalPOITransaction.POITransactionID (the POITransactionID of the payment's response)")
	}
	return nil
}

// finishRefund is journal.finish's hook for refunds: a refund whose amount is
// reserved and not released, answered anything but Success, is not final —
// PPaaS may still refund it. It journals the refund pending (the desk re-sends
// it until PPaaS answers definitively) and reports handled. The POS's
// InProgress answer is journaled as given; any other answer (an Abort the
// server turned into Aborted, say) gets errRefundPending, so the server
// answers InProgress instead of a failure that may turn out false.
// response is resp's journal record.
func (j journal) finishRefund(ctx context.Context, t store.Txn, resp *nexo.Response, response []byte, at time.Time) (bool, error) {
	if resp.Status.Result == nexo.Success {
		return false, nil // the common case: no journal read on the payment path
	}
	full, err := j.st.Txn(ctx, t.ID)
	if err != nil {
		// It may be a refund PPaaS is making: nothing final is journaled, the
		// POS is told InProgress, and the entry stays for recovery or the desk.
		return true, fmt.Errorf("journal finish %s: read the entry: %w", t.ID, err)
	}
	o, ok := refundOrderOf(full)
	if !ok || slices.ContainsFunc(full.Transitions, func(tr store.Transition) bool { return tr.State == stateRefundManual }) {
		return false, nil
	}
	orig, err := j.st.Txn(ctx, o.original)
	if err != nil {
		// Whether the amount is reserved is unknown: pending, the desk decides.
		if err := j.st.AppendTxn(ctx, t.ID, store.Transition{At: at, State: stateRefundPending, Data: response}); err != nil {
			return true, fmt.Errorf("journal pending refund %s: %w", t.ID, err)
		}
		return true, fmt.Errorf("journal refund %s: %w", t.ID, errRefundPending)
	}
	if _, held := reservedIn(orig, o.id); !held {
		return false, nil // nothing reached PPaaS, or PPaaS refused it: a final failure
	}
	if err := j.st.AppendTxn(ctx, t.ID, store.Transition{At: at, State: stateRefundPending, Data: response}); err != nil {
		return true, fmt.Errorf("journal pending refund %s: %w", t.ID, err)
	}
	if resp.Status.ErrorCondition == nexo.InProgress {
		return true, nil
	}
	return true, fmt.Errorf("journal refund %s: %w", t.ID, errRefundPending)
}

// reservedIn reports refund id's reservation on the original payment t, if
// it holds (reserved, not released).
func reservedIn(t store.Txn, id string) (refundMark, bool) {
	var (
		m    refundMark
		held bool
	)
	for _, tr := range t.Transitions {
		if tr.State != stateRefundReserved && tr.State != stateRefundReleased {
			continue
		}
		var x refundMark
		if json.Unmarshal(tr.Data, &x) != nil || x.RefundID != id {
			continue
		}
		switch tr.State {
		case stateRefundReserved:
			m, held = x, true
		case stateRefundReleased:
			held = false
		}
	}
	return m, held
}

func pendingMarked(t store.Txn) bool {
	return slices.ContainsFunc(t.Transitions, func(tr store.Transition) bool { return tr.State == stateRefundPending })
}

// markOf reads a reservation or release transition.
func markOf(tr store.Transition) (refundMark, bool) {
	var m refundMark
	if json.Unmarshal(tr.Data, &m) != nil || m.RefundID == "" {
		return refundMark{}, false
	}
	return m, true
}
