package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// After-sale updates (issue 14). A payment's truth can change after the POS
// got its answer: the provider refunds it or the card holder charges it back
// (PTI's later updates), a refund PPaaS only accepted completes days later
// (Pledg), a cancelled blockchain payment leaves a refund owed (Pennymatic),
// or a payment answered UnreachableHost is settled by its queued reversal. Each
// such update is, in one bbolt transaction:
//   - journaled on the original transaction (stateAfterSale, data an
//     afterSaleRecord);
//   - made visible to TransactionStatus: the journaled response is rewritten
//     with the update in its AdditionalResponse (the Result stays what the POS
//     was told: the sale happened; what became of it later is the text);
//   - queued for the POS as an EventNotification (EventToNotify Completed,
//     EventDetails naming the POI transaction, what happened and the amount)
//     in the outbox: durable, retried, delivered once per update because a
//     record already journaled is never journaled (nor queued) again.
// and counted in termagent_aftersale_updates_total{kind}.

// afterSaleEvent is the Nexo EventToNotify of an after-sale update: in the
// code list, "Completed" is a transaction completed outside the POS's own
// request/response, which is what a later settlement or update is.
const afterSaleEvent = "Completed"

// After-sale kinds: the metric's closed label set.
const (
	afterRefunded       = "refunded"         // refunded at the provider, not at the POS's request
	afterChargedBack    = "charged_back"     // the card holder charged it back
	afterRefundComplete = "refund_completed" // a refund the POS asked for, answered InProgress, completed
	afterRefundFailed   = "refund_failed"    // a refund the POS asked for, answered InProgress, refused by PPaaS
	afterRefundOwed     = "refund_owed"      // a cancelled payment the consumer had paid: a refund is owed
	afterSettled        = "settled"          // an unknown outcome (or an aborted payment) settled by its reversal
	// A reversal that cannot settle it: given up (dead-lettered), or not
	// confirmed by PPaaS for ForwarderConfig.EscalateAfter while still
	// retried. Never "settled": the consumer may still be charged.
	afterReversalFailed      = "reversal_failed"
	afterReversalUnconfirmed = "reversal_unconfirmed"
	// A payment the POS was told failed, approved at PPaaS afterwards: the
	// consumer paid for a sale the POS believes did not happen. It is
	// reversed (a reversal advice, whose outcome is notified as settled).
	afterApprovedLate = "approved_late"
)

// reasonApprovedLate is the reason of the reversal advice an approved_late
// update queues.
const reasonApprovedLate = "approved at PPaaS after the POS was told the payment failed"

var afterSaleKinds = closedSet(afterRefunded, afterChargedBack, afterRefundComplete, afterRefundFailed, afterRefundOwed, afterSettled,
	afterReversalFailed, afterReversalUnconfirmed, afterApprovedLate)

// afterSaleRecord is the data of a stateAfterSale transition.
type afterSaleRecord struct {
	Kind          string       `json:"kind"`
	Status        ppaas.State  `json:"status,omitempty"` // the PPaaS status that told it
	Amount        ppaas.Amount `json:"amount"`
	Text          string       `json:"text"` // what TransactionStatus and the POS are told
	EventID       string       `json:"eventId,omitempty"`
	TransactionID string       `json:"transactionId,omitempty"`
	// Listed: told from the transaction listing (the after-sale sweep),
	// which carries no provider status: a refund it told may have been a
	// chargeback (classify, toldBefore).
	Listed bool `json:"listed,omitempty"`
}

// afterSale journals after-sale updates and queues their POS notifications.
// One per agent, shared by every copy of the journal.
type afterSale struct {
	// mu makes the duplicate check and the write one step: an MQTT event
	// redelivered while a poll or the forwarder reports the same update
	// journals (and notifies) it once.
	mu  sync.Mutex
	st  *store.Store
	log *slog.Logger
	// seal encodes an EventNotification for the POS (nexo.Server.SealEvent);
	// nil when no pos_event_url is configured: the update is journaled and
	// counted, with no POS to tell.
	seal  func(nexo.EventNotification, string) (nexo.PendingEvent, error)
	count func(kind string)

	// own are payments the POS is reversing right now, by POI transaction id:
	// the "refunded" PPaaS reports for them is the reversal's own outcome,
	// which its response tells, not news.
	ownMu sync.Mutex
	own   map[string]time.Time

	// aliases are the PPaaS ids journal.Record queued an index for in
	// this run (news).
	aliases queuedAliases

	// finishWait bounds the wait for a payment's final response (event);
	// tests shorten it.
	finishWait time.Duration

	// statuses tells a chargeback from a refund (the configured spellings
	// and reason phrases, ppaas.Statuses.ChargedBack); nil: the defaults.
	statuses *ppaas.Statuses

	// interrupted are the payments a previous run left unfinished, which
	// restart recovery settles (useRecovery); unlisted: every payment begun
	// before runStart is taken for one. Set before any event is handled.
	interrupted map[string]struct{}
	unlisted    bool
	runStart    time.Time

	// unfinishable are payments of this run whose final response could not
	// be journaled (journal.finish failed): restart recovery settles them,
	// their events are not waited for (a wait that always fails would end
	// MQTT session after session). Bounded: cleared when full, the wait and
	// the subscriber's cap on session ends still apply then.
	unfinMu      sync.Mutex
	unfinishable map[string]struct{}
}

// maxUnfinishable bounds afterSale.unfinishable.
const maxUnfinishable = 1024

// finishFailed tells the desk that payment id's final response could not be
// journaled this run.
func (a *afterSale) finishFailed(id string) {
	if a == nil {
		return
	}
	a.unfinMu.Lock()
	defer a.unfinMu.Unlock()
	if a.unfinishable == nil || len(a.unfinishable) >= maxUnfinishable {
		a.unfinishable = map[string]struct{}{}
	}
	a.unfinishable[id] = struct{}{}
}

// useRecovery tells the desk which unfinished payments restart recovery
// owns: txns, what a previous run left unfinished (store.UnfinishedTxns),
// listed at runStart; listed false when the listing failed. Called before
// any event is handled.
func (a *afterSale) useRecovery(txns []store.Txn, listed bool, runStart time.Time) {
	a.interrupted = make(map[string]struct{}, len(txns))
	for _, t := range txns {
		a.interrupted[t.ID] = struct{}{}
	}
	a.unlisted, a.runStart = !listed, runStart
}

// recovering reports whether restart recovery owns unfinished payment t.
func (a *afterSale) recovering(t store.Txn) bool {
	if _, ok := a.interrupted[t.ID]; ok {
		return true
	}
	a.unfinMu.Lock()
	_, failed := a.unfinishable[t.ID]
	a.unfinMu.Unlock()
	if failed {
		return true
	}
	return a.unlisted && t.Started.Before(a.runStart)
}

// ownGrace is how long after a POS reversal its payment's "refunded" is taken
// for the reversal's own: the event may arrive before the reversal's state is
// journaled (it commits with the reversal's response, within this bound).
const ownGrace = time.Minute

func newAfterSale(st *store.Store, log *slog.Logger) *afterSale {
	return &afterSale{st: st, log: log, own: map[string]time.Time{}, finishWait: finishWait}
}

// aliasQueued notes that journal.Record queued an index of a payment under
// PPaaS id alias (a deferred write).
func (a *afterSale) aliasQueued(alias string) {
	if a != nil && alias != "" {
		a.aliases.add(alias)
	}
}

// queuedAliases is a set of the ids last added, in two generations: one
// added is kept until maxQueuedAliases others have been added after it. A
// queued index commits with the next durable write, its payment's final
// response at the latest, so by then it is long committed: every payment
// queues one alias (each of its steps names the same one) and is answered,
// a durable write, well before a thousand others begin.
type queuedAliases struct {
	mu        sync.Mutex
	cur, prev map[string]struct{}
}

const maxQueuedAliases = 1024

func (q *queuedAliases) add(alias string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.cur[alias]; ok {
		return
	}
	if q.cur == nil || len(q.cur) >= maxQueuedAliases {
		q.prev, q.cur = q.cur, make(map[string]struct{}, 16)
	}
	q.cur[alias] = struct{}{}
}

func (q *queuedAliases) has(alias string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, cur := q.cur[alias]
	_, prev := q.prev[alias]
	return cur || prev
}

// connect gives the after-sale desk the POS notifier and the metric, before
// any event or advice is handled.
func (a *afterSale) connect(seal func(nexo.EventNotification, string) (nexo.PendingEvent, error), count func(string)) {
	a.mu.Lock()
	a.seal, a.count = seal, count
	a.mu.Unlock()
}

// useStatuses gives the desk the platform's configured status spellings,
// before any event is handled: they tell a chargeback from a refund.
func (a *afterSale) useStatuses(s *ppaas.Statuses) { a.statuses = s }

// reversing marks payment id as being reversed by the POS until done is called
// (and ownGrace after).
func (a *afterSale) reversing(id string) (done func()) {
	if a == nil {
		return func() {}
	}
	a.ownMu.Lock()
	a.own[id] = time.Time{}
	a.ownMu.Unlock()
	return func() {
		a.ownMu.Lock()
		defer a.ownMu.Unlock()
		now := time.Now()
		a.own[id] = now.Add(ownGrace)
		for k, until := range a.own { // bounded by the reversals of the last minute
			if !until.IsZero() && now.After(until) {
				delete(a.own, k)
			}
		}
	}
}

func (a *afterSale) isOwn(id string) bool {
	a.ownMu.Lock()
	defer a.ownMu.Unlock()
	until, ok := a.own[id]
	return ok && (until.IsZero() || time.Now().Before(until))
}

// eventRouter hands the QR engine the events of payments in flight and the
// after-sale desk those of payments already answered.
type eventRouter struct {
	engine *qr.Engine
	after  *afterSale
}

// HandleEvent implements qr.EventHandler. The engine applies the events of
// its payments still undecided. Every other event goes to the after-sale
// desk: one of a payment already answered, and one of a payment the engine
// has decided but not let go yet (Pay has not returned, or its answer is
// being journaled). The engine would only ignore such an update — a refund,
// a chargeback, an approval of a payment it declined — and the event would
// be acked and lost; the desk waits for the payment's final response, tells
// a redelivery of the event that decided it from news, and journals and
// notifies the news once.
//
// An event naming the payment by its PPaaS transactionId only is given the
// payment's clientTransactionId when the engine knows it: the journal
// indexes a payment under its PPaaS id with the payment's next durable write
// (journal.Record), which may be its final response still on its way.
func (r eventRouter) HandleEvent(ctx context.Context, ev ppaas.Event) error {
	ctid, decided := r.engine.Payment(ev)
	if ev.ClientTransactionID == "" {
		ev.ClientTransactionID = ctid
	}
	if !decided && ctid != "" {
		var err error
		// It may be decided in between: then the engine passes it back.
		if decided, err = r.engine.ApplyEvent(ctx, ev); err != nil || !decided {
			return err
		}
	}
	if handled, err := r.after.event(ctx, ev, decided); handled {
		return err
	}
	return r.engine.HandleEvent(ctx, ev)
}

// DeduplicatesEvent implements the qr Subscriber's optional
// selfDeduplicating: true for an event HandleEvent gives the engine alone (a
// payment in flight and undecided, qr.Engine.DeduplicatesEvent). If the
// payment is decided in between, the after-sale desk gets the event
// unchecked: it journals an update once whatever the deliveries
// (afterSale.event).
func (r eventRouter) DeduplicatesEvent(ev ppaas.Event) bool {
	return r.engine.DeduplicatesEvent(ev) && !r.engine.Decided(ev)
}

// finishWait bounds how long an event of a payment whose answer is being
// journaled waits for it (afterSale.event): the journal's final write, an
// fsync or two, normally takes milliseconds.
const finishWait = 5 * time.Second

// event journals ev when it is an after-sale update of a payment whose final
// response is journaled. A payment answered but not journaled yet is waited
// for (finishWait): the engine decided it or let it go, so its final response
// is on its way; if it does not come in time, or ctx ends first, the event is
// left unacked (an error) for the broker to redeliver, never dropped. decided
// says the engine has decided ev's payment: the journal knows it, so not
// finding it there is an error too. handled is false for a payment unknown to
// the journal, or unfinished by a previous run (restart recovery owns it and
// reads its state from PPaaS; not waited for: the wait holds the MQTT
// reader), which the engine gets.
func (a *afterSale) event(ctx context.Context, ev ppaas.Event, decided bool) (handled bool, err error) {
	handled, _, err = a.news(ctx, ev, decided, false)
	return handled, err
}

// news is event, also reporting whether ev journaled an update (false for
// one journaled already, or nothing new): the after-sale sweep counts them.
// listed says ev stands for a transaction of PPaaS's listing (the sweep),
// not an event PPaaS sent.
func (a *afterSale) news(ctx context.Context, ev ppaas.Event, decided, listed bool) (handled, journaled bool, err error) {
	if a == nil || ev.Type != ppaas.EventTypeStatus {
		return false, false, nil
	}
	var t store.Txn
	found := false
	switch {
	case ev.ClientTransactionID != "":
		t, err = a.st.Txn(ctx, ev.ClientTransactionID)
		found = err == nil
		if errors.Is(err, store.ErrNotFound) {
			err = nil
		}
	case ev.TransactionID != "":
		// An event naming the payment by its PPaaS id only: the journal
		// indexes each payment under it (journal.Record), with the
		// payment's next durable write. A payment the engine has let go
		// may have its index queued still: committed now and looked up
		// again. Only an id this run queued an index for may be queued
		// still (a previous run's were committed by its Close, or lost
		// with its crash, which recovery settles): an id the journal never
		// indexed costs no commit (a platform naming unknown ids took one
		// fsync an event).
		if t, found, err = a.st.TxnByAlias(ctx, ev.TransactionID); err == nil && !found && a.aliases.has(ev.TransactionID) {
			if err = a.st.Flush(ctx); err == nil {
				t, found, err = a.st.TxnByAlias(ctx, ev.TransactionID)
			}
		}
	}
	if err != nil {
		return true, false, fmt.Errorf("after-sale event %s: %w", ev.EventID, err) // left unacked: redelivered
	}
	if !found {
		if decided {
			return true, false, fmt.Errorf("after-sale event %s: the engine decided its payment but the journal has no entry for it; left for redelivery", ev.EventID)
		}
		return false, false, nil
	}
	if !t.Final {
		if a.recovering(t) {
			return false, false, nil
		}
		// Answered but not journaled yet (the engine decided it or let it
		// go, the final response's commit is on its way): wait for it. A
		// refund, a chargeback or an approval of a payment the POS is told
		// failed must not be dropped.
		a.log.Debug("qr event waits for its payment's final response", "poi_transaction_id", t.ID, "event_id", ev.EventID, "status", ev.Status, "decided", decided)
		id := t.ID
		var final bool
		t, final, err = a.waitFinal(ctx, id)
		if errors.Is(err, errLeftToRecovery) {
			return false, false, nil // its Finish failed meanwhile: as above
		}
		if err != nil {
			return true, false, err
		}
		if !final {
			if ctx.Err() != nil {
				return true, false, fmt.Errorf("after-sale event %s: payment %s not journaled final yet; left for redelivery: %w", ev.EventID, id, ctx.Err())
			}
			return true, false, fmt.Errorf("after-sale event %s: payment %s not journaled final within %s; left for redelivery", ev.EventID, id, a.finishWait)
		}
	}
	if journaledEvent(t, ev.EventID) {
		// Applied while the payment ran (events in agent/payments.go):
		// its redelivery, not news.
		a.log.Info("qr event already applied to its payment ignored", "poi_transaction_id", t.ID, "event_id", ev.EventID, "status", ev.Status)
		return true, false, nil
	}
	if ev.Status == ppaas.Approved && ev.EventID != "" {
		// An approval the event log holds was applied already (marked once
		// its handler returned): told then, or no news then. Its redelivery
		// may reach the desk unchecked (eventRouter.DeduplicatesEvent), and
		// on a platform that sends no sequence the check below cannot tell
		// it is stale: it would be reversed and told again.
		seen, err := a.st.EventSeen(ctx, ev.EventID)
		if err != nil {
			return true, false, fmt.Errorf("after-sale event %s: %w", ev.EventID, err)
		}
		if seen {
			a.log.Info("qr approval already applied ignored", "poi_transaction_id", t.ID, "event_id", ev.EventID)
			return true, false, nil
		}
	}
	if last := journaledSequence(t); ev.Sequence > 0 && ev.Sequence <= last {
		// Older than what decided the payment (a redelivered or reordered
		// event: approved at 2, declined at 3): what it says was overtaken
		// before the POS was answered, it is not news.
		a.log.Info("qr event older than the payment's journaled state ignored", "poi_transaction_id", t.ID, "event_id", ev.EventID,
			"status", ev.Status, "sequence", ev.Sequence, "journaled_sequence", last)
		return true, false, nil
	}
	e := toEntry(t)
	if e.Category != nexo.CategoryPayment || e.State != nexo.TxDone || e.Response == nil {
		return true, false, nil
	}
	resp := e.Response
	rec, ok, err := a.classify(ctx, t, resp, ev, listed)
	if err != nil {
		return true, false, fmt.Errorf("after-sale event %s: %w", ev.EventID, err) // left unacked: redelivered
	}
	if !ok {
		a.log.Info("qr late update: nothing new for the POS", "poi_transaction_id", t.ID, "status", ev.Status, "event_id", ev.EventID)
		return true, false, nil
	}
	journaled, err = a.recordNews(ctx, t.ID, rec)
	return true, journaled, err
}

// journaledSequence is the highest PPaaS sequence among payment t's
// journaled QR transitions (0: none carried one).
func journaledSequence(t store.Txn) int64 {
	var last int64
	for _, tr := range t.Transitions {
		if !strings.HasPrefix(tr.State, stateQRPrefix) {
			continue
		}
		var qt qr.Transition
		if json.Unmarshal(tr.Data, &qt) == nil {
			last = max(last, qt.Sequence)
		}
	}
	return last
}

// errLeftToRecovery: the payment waitFinal waited for will not be final
// this run (its final write failed, finishFailed): restart recovery settles
// it, so the wait is over.
var errLeftToRecovery = errors.New("left to restart recovery")

// waitFinal re-reads transaction id until it is final, for a.finishWait at
// most; final is false if it was not by then, with errLeftToRecovery as soon
// as its final write has failed (finishFailed).
func (a *afterSale) waitFinal(ctx context.Context, id string) (t store.Txn, final bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, a.finishWait)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return store.Txn{}, false, nil
		case <-tick.C:
		}
		t, err = a.st.Txn(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return store.Txn{}, false, nil
			}
			return store.Txn{}, false, fmt.Errorf("after-sale event for %s: %w", id, err)
		}
		if t.Final {
			return t, true, nil
		}
		if a.recovering(t) {
			return t, false, errLeftToRecovery
		}
	}
}

// reversalOwns reports whether a reversal owns payment t's outcome: its
// advice is queued or dead-lettered (a person acts on it), or a reversal
// gave the consumer's money back already. A reversal that settled finding
// nothing charged owns nothing any more: a later approval is reversed again.
func (a *afterSale) reversalOwns(ctx context.Context, t store.Txn) (bool, error) {
	if viewQR(t).state == ppaas.Refunded {
		return true, nil
	}
	_, _, found, err := a.st.FindKey(ctx, adviceKey(t.ID))
	return found, err
}

// maxReasonText bounds the platform's status reason quoted in what the POS is
// told (and journaled twice: in the record and the rewritten response): the
// bound the ppaas decoder keeps it to already.
const maxReasonText = ppaas.MaxTextLen

// classify says what a late event means for payment t, answered resp; listed
// as for news.
func (a *afterSale) classify(ctx context.Context, t store.Txn, resp *nexo.Response, ev ppaas.Event, listed bool) (afterSaleRecord, bool, error) {
	rec := afterSaleRecord{Status: ev.Status, EventID: ev.EventID, TransactionID: ev.TransactionID, Listed: listed}
	paid := resp.Status.Result == nexo.Success && resp.Payment != nil && resp.Payment.Result != nil
	if paid {
		amt := resp.Payment.Result.AuthorizedAmount
		rec.Amount = ppaas.Amount{Amount: amt.Minor, Currency: amt.Currency}
	}
	switch {
	case paid && ev.Status == ppaas.Refunded:
		if v := viewQR(t); v.transactionID != "" && ev.TransactionID != "" && ev.TransactionID != v.transactionID {
			// As for an approval below: another PPaaS transaction's refund
			// is not this payment's, whatever clientTransactionId it names.
			a.log.Warn("qr refund names another PPaaS transaction than the journal's; not acted on",
				"poi_transaction_id", t.ID, "event_transaction_id", clip(ev.TransactionID), "journal_transaction_id", v.transactionID, "event_id", clip(ev.EventID))
			return rec, false, nil
		}
		// What the POS refunded itself (completed or pending refunds and
		// reversals, each reserved on the payment): each refund's own
		// response tells it, and one answered InProgress is notified when the
		// refund desk settles it (refundSettled).
		var byPOS int64
		r, err := readRefundable(ctx, a.st, t.ID, t.SaleID)
		if e := (*nexo.Error)(nil); errors.As(err, &e) && e.Condition == nexo.UnavailableService {
			// The journal could not be read: "the POS refunded nothing"
			// would be a guess. Left unacked, read again on redelivery.
			return rec, false, fmt.Errorf("read the POS's refunds of %s: %w", t.ID, err)
		}
		if err == nil {
			for _, m := range r.reserved {
				byPOS += m.Amount
			}
		}
		byPOS = min(byPOS, rec.Amount.Amount)
		refunded := ppaas.Amount{Amount: byPOS, Currency: rec.Amount.Currency}
		if a.statuses.ChargedBack(ev) { // the spellings: ppaas.Statuses
			// Always news, whatever the POS refunded: the card holder's bank
			// took the payment back, which no response of ours told.
			rec.Kind, rec.Text = afterChargedBack, "charged back by the card holder after the sale: "+formatMinor(rec.Amount)+" taken back"
			if byPOS > 0 {
				rec.Text += "; the POS had refunded " + formatMinor(refunded) + " of it"
			}
		} else {
			if byPOS >= rec.Amount.Amount || viewQR(t).state == ppaas.Refunded || a.isOwn(t.ID) {
				return rec, false, nil // the POS refunded or reversed it all: its responses say so
			}
			// The provider refunded what the POS's own refunds do not explain.
			rec.Amount.Amount -= byPOS
			rec.Kind, rec.Text = afterRefunded, "refunded at the provider after the sale: "+formatMinor(rec.Amount)+" back to the consumer"
			if listed {
				// The listing has no provider status: a chargeback told only
				// there reads as a refund. Said so, and a chargeback event
				// later is this update told again (toldBefore).
				rec.Text = "refunded or charged back after the sale (PPaaS's listing does not say which): " + formatMinor(rec.Amount) + " back to the consumer"
			}
			if byPOS > 0 {
				rec.Text += ", besides the " + formatMinor(refunded) + " the POS refunded"
			}
		}
		if reason := ppaas.Clip(ev.StatusReason, maxReasonText); reason != "" && !strings.Contains(rec.Text, reason) {
			rec.Text += " (" + reason + ")"
		}
		return rec, true, nil
	case !paid && ev.Status == ppaas.Approved && resp.Status.Result == nexo.Failure:
		// The POS was told the payment failed: unless a reversal owns its
		// outcome, the consumer was charged for a sale that did not happen.
		// writeLocked checks again and queues its reversal in the same commit.
		owns, err := a.reversalOwns(ctx, t)
		if err != nil {
			// Not "nothing new": a consumer may be charged for a failed sale.
			return rec, false, fmt.Errorf("look for a reversal of %s: %w", t.ID, err)
		}
		if owns {
			return rec, false, nil
		}
		v := viewQR(t)
		if p := v.payment; p != nil {
			rec.Amount = ppaas.Amount{Amount: p.Amount.Minor, Currency: p.Amount.Currency}
		}
		switch {
		case v.transactionID != "" && rec.TransactionID != "" && rec.TransactionID != v.transactionID:
			// The event names another PPaaS transaction than the one the
			// payment's own create made: never reverse on its word.
			a.log.Warn("qr approval names another PPaaS transaction than the journal's; not acted on",
				"poi_transaction_id", t.ID, "event_transaction_id", rec.TransactionID, "journal_transaction_id", v.transactionID, "event_id", ev.EventID)
			return rec, false, nil
		case v.transactionID != "":
			rec.TransactionID = v.transactionID
		case rec.TransactionID == "":
			return rec, false, nil // no PPaaS id to reverse by: nothing to act on
		}
		rec.Kind = afterApprovedLate
		rec.Text = fmt.Sprintf("approved at PPaaS (%s) after the POS was told it failed (%s): the agent is reversing it; the outcome follows",
			formatMinor(rec.Amount), resp.Status.ErrorCondition)
		return rec, true, nil
	case !paid && ev.Status == ppaas.Cancelled && strings.EqualFold(ev.Provider["refund"], "owed"):
		if p := viewQR(t).payment; p != nil {
			rec.Amount = ppaas.Amount{Amount: p.Amount.Minor, Currency: p.Amount.Currency}
		}
		rec.Kind = afterRefundOwed
		rec.Text = "cancelled after the consumer paid: the provider owes the consumer a refund of " + formatMinor(rec.Amount) + "; manual action needed"
		return rec, true, nil
	}
	return rec, false, nil
}

// appendSettled is journal.settle's write (what a reversal made of an unknown
// outcome, or of an aborted payment: kind afterSettled, afterReversalFailed
// or afterReversalUnconfirmed): tr, the rewritten final response, with the
// after-sale record and the POS's notification in the same commit.
func (j journal) appendSettled(ctx context.Context, t store.Txn, tr store.Transition, kind, text string) error {
	a := j.after
	if a == nil {
		return j.st.AppendTxn(ctx, t.ID, tr)
	}
	rec := afterSaleRecord{Kind: kind, Text: text}
	if p := viewQR(t).payment; p != nil {
		rec.Amount = ppaas.Amount{Amount: p.Amount.Minor, Currency: p.Amount.Currency}
	}
	rec.TransactionID = viewQR(t).transactionID
	return a.write(ctx, t, rec, tr)
}

// record journals rec on payment id: the update, the response TransactionStatus
// repeats (its AdditionalResponse now tells the update) and the POS event.
func (a *afterSale) record(ctx context.Context, id string, rec afterSaleRecord) error {
	_, err := a.recordNews(ctx, id, rec)
	return err
}

// recordNews is record, reporting whether rec was journaled (false: it was
// already).
func (a *afterSale) recordNews(ctx context.Context, id string, rec afterSaleRecord) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, err := a.st.Txn(ctx, id)
	if err != nil {
		return false, fmt.Errorf("after-sale update of %s: %w", id, err)
	}
	resp := entryOf(t, withResponse).Response // our own copy
	if resp == nil {
		return false, fmt.Errorf("after-sale update of %s: no final response journaled", id)
	}
	resp.Status.AdditionalResponse = rec.Text
	b, err := responseRecord(resp)
	if err != nil {
		return false, fmt.Errorf("after-sale update of %s: %w", id, err)
	}
	return a.writeLocked(ctx, t, rec, store.Transition{At: time.Now(), State: stateNexoDone, Final: true, Data: b})
}

func (a *afterSale) write(ctx context.Context, t store.Txn, rec afterSaleRecord, tr store.Transition) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if fresh, err := a.st.Txn(ctx, t.ID); err == nil {
		t = fresh
	}
	_, err := a.writeLocked(ctx, t, rec, tr)
	return err
}

// writeLocked commits tr, the after-sale transition and the POS event, unless
// the same update (kind and text, or the same PPaaS event, or the refund or
// chargeback told already: toldBefore) is journaled already: a redelivery.
// journaled reports whether it committed them.
func (a *afterSale) writeLocked(ctx context.Context, t store.Txn, rec afterSaleRecord, tr store.Transition) (journaled bool, err error) {
	for _, old := range t.Transitions {
		var o afterSaleRecord
		if old.State == stateAfterSale && json.Unmarshal(old.Data, &o) == nil &&
			(o.Kind == rec.Kind && o.Text == rec.Text || rec.EventID != "" && o.EventID == rec.EventID || toldBefore(o, rec)) {
			a.log.Info("after-sale update already journaled; not notified again", "poi_transaction_id", t.ID, "kind", rec.Kind)
			return false, nil
		}
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return false, fmt.Errorf("after-sale update of %s: %w", t.ID, err)
	}
	trs := []store.Transition{{At: tr.At, State: stateAfterSale, Data: data}, tr}
	var evs []store.Event
	if rec.Kind == afterApprovedLate {
		if owns, err := a.reversalOwns(ctx, t); owns || err != nil {
			return false, err // a reversal owns the outcome already
		}
		adv, err := adviceEvent(qr.Advice{Kind: qr.AdviceReverse, ClientTransactionID: t.ID, TransactionID: rec.TransactionID,
			Amount: rec.Amount, Reason: reasonApprovedLate, At: tr.At, Started: t.Started})
		if err != nil {
			return false, fmt.Errorf("after-sale update of %s: %w", t.ID, err)
		}
		// The advice and its stateReversal mark commit with the update: the
		// reversal then owns the outcome (journal.finish's invariant).
		trs = append([]store.Transition{{At: tr.At, State: stateReversal, Data: adv.Payload}}, trs...)
		evs = append(evs, adv)
	}
	if a.seal != nil {
		details := afterSaleDetails(t, rec)
		pe, err := a.seal(nexo.EventNotification{EventToNotify: afterSaleEvent, EventDetails: details}, t.SaleID)
		if err != nil {
			return false, fmt.Errorf("after-sale update of %s: %w", t.ID, err)
		}
		b, err := json.Marshal(pe)
		if err != nil {
			return false, fmt.Errorf("after-sale update of %s: %w", t.ID, err)
		}
		evs = append(evs, store.Event{Kind: store.KindNexoEvent, Payload: b, Key: stableKey("aftersale", t.ID, rec.Kind, rec.Text)})
	}
	if err := a.st.AppendTxnEvents(ctx, t.ID, trs, evs...); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		return false, fmt.Errorf("after-sale update of %s: %w", t.ID, err)
	}
	if a.count != nil {
		a.count(rec.Kind)
	}
	level := slog.LevelInfo
	if rec.Kind == afterApprovedLate {
		level = slog.LevelWarn // money moved against what the POS was told
	}
	a.log.Log(ctx, level, "after-sale update journaled", "poi_transaction_id", t.ID, "sale_id", t.SaleID, "service_id", t.ServiceID,
		"kind", rec.Kind, "amount", rec.Amount.Amount, "currency", rec.Amount.Currency, "notified", a.seal != nil)
	return true, nil
}

// toldBefore reports whether rec, a provider refund or a chargeback, is what
// journaled update o told already, whatever its words: the same status
// reported by another source (an MQTT event, then the after-sale sweep's
// listing) may carry another reason, or no provider status to tell a
// chargeback by. "refunded" is PPaaS's last word on a payment: once a
// refund is told, only a chargeback is news, unless the refund was told
// from the listing, which cannot tell the two apart (its text says so: the
// chargeback is that money told again); after a chargeback nothing of
// either kind is.
func toldBefore(o, rec afterSaleRecord) bool {
	switch rec.Kind {
	case afterRefunded:
		return o.Kind == afterRefunded || o.Kind == afterChargedBack
	case afterChargedBack:
		return o.Kind == afterChargedBack || o.Kind == afterRefunded && o.Listed
	}
	return false
}

// afterSaleDetails is the EventDetails of an after-sale notification, in the
// key=value&… form of Nexo EventDetails, within its 1,024 characters.
func afterSaleDetails(t store.Txn, rec afterSaleRecord) string {
	q := func(s string) string { return strings.NewReplacer("&", " ", "=", " ").Replace(s) }
	d := fmt.Sprintf("POITransactionID=%s&SaleID=%s&ServiceID=%s&Update=%s", t.ID, q(t.SaleID), q(t.ServiceID), rec.Kind)
	if rec.Amount.Currency != "" {
		d += "&Amount=" + strings.TrimSuffix(formatMinor(rec.Amount), " "+rec.Amount.Currency) + "&Currency=" + rec.Amount.Currency
	}
	if rec.TransactionID != "" {
		d += "&PPaaSTransactionID=" + q(rec.TransactionID)
	}
	d += "&Text=" + q(rec.Text)
	if len(d) > 1024 {
		d = strings.ToValidUTF8(d[:1024], "")
	}
	return d
}

// refundSettled is the refund desk's after-sale update: refund t (order o),
// answered InProgress to the POS, is now settled at PPaaS with resp (Success:
// the money is back; Failure: refused, nothing refunded). It is journaled on
// the original payment and notified like any other update.
func (j journal) refundSettled(ctx context.Context, t store.Txn, o refundOrder, resp *nexo.Response, amount nexo.Amount) error {
	if j.after == nil || !pendingMarked(t) {
		return nil // answered at once (or never answered): its response told it
	}
	rec := afterSaleRecord{Kind: afterRefundComplete, Amount: ppaas.Amount{Amount: amount.Minor, Currency: amount.Currency}}
	what := fmt.Sprintf("%s %s/%s (POI transaction %s)", refundWord(o), o.saleID, o.serviceID, o.id)
	if amount.Currency != "" {
		what += " of " + formatMinor(rec.Amount)
	}
	rec.Text = what + " completed at the provider after the POS was answered InProgress"
	if resp.Status.Result != nexo.Success {
		rec.Kind = afterRefundFailed
		rec.Text = what + " refused by PPaaS after the POS was answered InProgress: nothing refunded (" + resp.Status.AdditionalResponse + ")"
	}
	return j.after.record(ctx, o.original, rec)
}
