package qr

import (
	"context"

	"github.com/termagent/termagent/ppaas"
)

// InFlight reports whether ev is about a payment this engine is running now
// (HandleEvent applies it); any other event is about a payment already
// answered, or unknown to this run (issue 14: the agent's after-sale desk).
func (e *Engine) InFlight(ev ppaas.Event) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.byClient[ev.ClientTransactionID]; ok && ev.ClientTransactionID != "" {
		return true
	}
	_, ok := e.byID[ev.TransactionID]
	return ok && ev.TransactionID != ""
}

// Decided reports whether ev names a payment this engine is running whose
// state is final already: HandleEvent would not apply it (a final state does
// not move), so the caller hands it to whoever deals with answered payments
// (issue 14: the agent's after-sale desk), which tells a redelivery of the
// event that decided it from news (a refund, a chargeback, an approval of a
// payment decided otherwise).
func (e *Engine) Decided(ev ppaas.Event) bool {
	_, decided := e.Payment(ev)
	return decided
}

// Payment is InFlight and Decided in one look: the clientTransactionId of
// the payment in flight ev names ("": none), and whether its state is final.
// An event naming the payment by its PPaaS transactionId only gets the id the
// caller's journal knows the payment by, before the journal has indexed the
// PPaaS id (issue 14: that index commits with the payment's next durable
// write).
func (e *Engine) Payment(ev ppaas.Event) (ctid string, decided bool) {
	e.mu.Lock()
	t := e.byClient[ev.ClientTransactionID]
	if t == nil || ev.ClientTransactionID == "" {
		t = e.byID[ev.TransactionID]
		if ev.TransactionID == "" {
			t = nil
		}
	}
	e.mu.Unlock()
	if t == nil {
		return "", false
	}
	return t.ctid, t.final()
}

// ApplyEvent is HandleEvent for a caller that hands on what the engine does
// not apply: decided is true, and nothing was applied or logged, when ev's
// payment is no longer in flight or its state is final (decided meanwhile,
// by a poll, a cancel's answer or another event). Checking Decided and
// InFlight first is not enough: the payment may end in between.
func (e *Engine) ApplyEvent(ctx context.Context, ev ppaas.Event) (decided bool, err error) {
	return e.handleEvent(ctx, ev, true)
}

// DeduplicatesEvent implements the Subscriber's optional selfDeduplicating:
// an event about a payment in flight is recognised here when delivered again,
// as it cannot move the payment twice (apply: a final state does not move, a
// sequence at or below the last applied is dropped, a state is entered once
// and the machine only moves forward), so the Subscriber need not read its
// event log before handing it over. The log would not catch such a
// redelivery anyway: an event that moved a payment in flight is journaled
// with its transition, not marked (the agent's EventLog).
func (e *Engine) DeduplicatesEvent(ev ppaas.Event) bool { return e.InFlight(ev) }
