package qr

import "github.com/termagent/termagent/ppaas"

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

// DecidedOtherwise reports whether ev names a payment this engine is running
// whose state is final already and not ev's: HandleEvent ignores such a late
// update, so the caller can hand an approval of a payment decided otherwise
// to whoever deals with it once the payment is answered.
func (e *Engine) DecidedOtherwise(ev ppaas.Event) bool {
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
		return false
	}
	s := t.state()
	return s.Final() && s != ev.Status
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
