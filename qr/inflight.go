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
