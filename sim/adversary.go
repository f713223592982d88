package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/termagent/termagent/ppaas"
)

// The adversarial PPaaS: knobs that make the simulated platform behave as a
// real one may, to prove the agent's money safety against it. HTTP faults aimed
// at one payment or a path suffix live in faults.go; here are the status
// spellings, asynchronous refunds, the in-process agent's clock and the
// per-payment view of PPaaS's records.
//
//	GET|POST /control/payments/statuses   {"approved":"AUTHORIZED",…} rewrites statuses in
//	                                      API answers and events ({} restores them)
//	GET|POST /control/payments/refunds    {"mode":"sync|async","delayMs":n}
//	POST     /control/refunds/complete    {"transactionId":"…"} (optional): completes
//	                                      pending refunds now
//	GET|POST /control/agent/clock         {"offsetMs":n} the in-process agent's local clock
//	GET      /control/payments/by-order/{orderId}   one payment's record (404 if none)

// Refund statuses on the wire (shared contract 3): an asynchronous refund
// answers pending; only refunded is definitive.
const (
	refundDone    = "refunded"
	refundPending = "pending"
)

// RefundMode says how the simulated PPaaS completes refunds.
type RefundMode struct {
	// Async answers a refund {"status":"pending"}; the transaction stays
	// approved until the refund completes (then refunded, with an event).
	Async bool
	// Delay completes each pending refund this long after it was accepted;
	// 0: only CompleteRefunds (the control API) completes them.
	Delay time.Duration
}

// DecisionText is the text a platform writes on a decided transaction, in
// its answers and events: one that passes its provider's words on unbounded
// may write a reason or a reference of any length.
type DecisionText struct {
	Reason    string // statusReason of every final status ("": the simulator's own)
	Reference string // providerReference of every decided transaction ("": the provider's own)
}

// SetDecisionText makes PPaaS write t on every status it decides from now
// on; the zero value restores its own text.
func (p *PPaaS) SetDecisionText(t DecisionText) {
	p.pay.mu.Lock()
	p.pay.decision = t
	p.pay.mu.Unlock()
}

// apply writes d's reference on tx and returns the reason to write.
func (d DecisionText) apply(tx *SimTransaction, reason string) string {
	if d.Reference != "" {
		tx.ProviderReference = d.Reference
	}
	if d.Reason != "" {
		return d.Reason
	}
	return reason
}

// PublishEvent publishes payload on the device's event topic as it is: an
// event the platform writes as it likes, whatever the transactions. It waits
// for room in the event queue, ctx or the simulator's close.
func (p *PPaaS) PublishEvent(ctx context.Context, serial string, payload []byte) error {
	select {
	case p.pay.queue <- outgoing{topic: ppaas.EventTopic(serial), payload: payload, queued: time.Now()}:
		return nil
	case <-p.pay.stop:
		return errors.New("publish event: the simulated PPaaS is closed")
	case <-ctx.Done():
		return fmt.Errorf("publish event: %w", ctx.Err())
	}
}

// SetStatusSpellings makes PPaaS spell statuses differently in its answers
// (create, status read, cancel, refund, and the transaction in an error body)
// and in its events, e.g. approved → AUTHORIZED, or an entirely unknown string.
// Its own records keep the true status. nil or empty restores the spellings.
func (p *PPaaS) SetStatusSpellings(m map[ppaas.State]string) error {
	for from, to := range m {
		if strings.TrimSpace(to) == "" {
			return fmt.Errorf("status spelling of %q is empty", from)
		}
	}
	cp := make(map[ppaas.State]string, len(m))
	for k, v := range m {
		cp[k] = v
	}
	p.pay.mu.Lock()
	p.pay.spellings = cp
	p.pay.mu.Unlock()
	return nil
}

// StatusSpellings returns the rewrites in force.
func (p *PPaaS) StatusSpellings() map[ppaas.State]string {
	p.pay.mu.Lock()
	defer p.pay.mu.Unlock()
	out := make(map[ppaas.State]string, len(p.pay.spellings))
	for k, v := range p.pay.spellings {
		out[k] = v
	}
	return out
}

// spellLocked is how PPaaS spells s on the wire now.
func (pm *payments) spellLocked(s ppaas.State) ppaas.State {
	if v, ok := pm.spellings[s]; ok {
		return ppaas.State(v)
	}
	return s
}

// spelledLocked is a transaction as PPaaS answers it.
func (pm *payments) spelledLocked(t ppaas.Transaction) ppaas.Transaction {
	t.Status = pm.spellLocked(t.Status)
	return t
}

// spelledRefundLocked is a refund as PPaaS answers it: its status is spelled
// with the same rewrites (refunded, pending).
func (pm *payments) spelledRefundLocked(r ppaas.Refund) ppaas.Refund {
	r.Status = string(pm.spellLocked(ppaas.State(r.Status)))
	return r
}

// SetRefundMode switches refunds between synchronous and asynchronous. Pending
// refunds keep going (their delay was set when they were accepted).
func (p *PPaaS) SetRefundMode(m RefundMode) error {
	if m.Delay < 0 {
		return fmt.Errorf("refund delay %s is negative", m.Delay)
	}
	p.pay.mu.Lock()
	p.pay.refunds = m
	p.pay.mu.Unlock()
	return nil
}

// CompleteRefunds completes the pending refunds of the transaction id (every
// transaction if empty) and returns how many it completed.
func (p *PPaaS) CompleteRefunds(id string) (int, error) {
	pm := p.pay
	pm.mu.Lock()
	defer pm.mu.Unlock()
	var txs []*SimTransaction
	if id != "" {
		tx := pm.byID[id]
		if tx == nil {
			return 0, fmt.Errorf("complete refunds of %s: %w", id, ErrNoTransaction)
		}
		txs = append(txs, tx)
	} else {
		for _, tx := range pm.byID {
			txs = append(txs, tx)
		}
	}
	n := 0
	for _, tx := range txs {
		ids := make([]string, 0, len(tx.refunds))
		for cid, r := range tx.refunds {
			if r.Status == refundPending {
				ids = append(ids, cid)
			}
		}
		sort.Strings(ids)
		for _, cid := range ids {
			if pm.completeRefundLocked(tx, cid) {
				n++
			}
		}
	}
	return n, nil
}

// completeRefundLocked completes one pending refund: the money goes back,
// refundedAmount covers it, and a full refund moves the transaction to
// refunded (with its event). It reports whether there was one to complete.
func (pm *payments) completeRefundLocked(tx *SimTransaction, clientRefundID string) bool {
	r, ok := tx.refunds[clientRefundID]
	if !ok || r.Status != refundPending {
		return false
	}
	r.Status = refundDone
	tx.refunds[clientRefundID] = r
	tx.RefundPending -= r.Amount.Amount
	tx.RefundedAmount += r.Amount.Amount
	if tx.RefundedAmount == tx.PaymentAmount.Amount && tx.Status == ppaas.Approved {
		pm.setLocked(tx, ppaas.Refunded, "refunded", pm.providers[tx.PaymentType].raw(tx, ppaas.Refunded))
	}
	return true
}

// PaymentByOrder is PPaaS's record of the terminal's transaction created with
// this order id (the simulator's POS uses "ORDER-" + ServiceID).
func (p *PPaaS) PaymentByOrder(serial, orderID string) (SimTransaction, bool) {
	pm := p.pay
	pm.mu.Lock()
	defer pm.mu.Unlock()
	for _, tx := range pm.byID {
		if tx.Serial == serial && tx.Order.OrderID == orderID {
			return *tx, true
		}
	}
	return SimTransaction{}, false
}

// orderOf resolves a transaction id to its order id (faults aimed at a payment).
func (pm *payments) orderOf(id string) (string, bool) {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	tx := pm.byID[id]
	if tx == nil {
		return "", false
	}
	return tx.Order.OrderID, true
}

// NetCharges counts the terminal's charges that still stand: moves to
// approved, less the transactions refunded in full.
func (p *PPaaS) NetCharges(serial string) int {
	pm := p.pay
	pm.mu.Lock()
	defer pm.mu.Unlock()
	n := 0
	for _, tx := range pm.byID {
		if tx.Serial == serial {
			n += netCharges(tx)
		}
	}
	return n
}

func netCharges(tx *SimTransaction) int {
	n := tx.Charges
	if n > 0 && tx.RefundedAmount >= tx.PaymentAmount.Amount {
		n--
	}
	return n
}

// SetAgentClock registers the in-process agent's clock with the control API
// (StartWorld does it).
func (p *PPaaS) SetAgentClock(c *AgentClock) { p.agentClock.Store(c) }

// adversaryRoutes registers the control endpoints listed above.
func (p *PPaaS) adversaryRoutes() {
	p.control.HandleFunc("GET /control/payments/statuses", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, p.StatusSpellings())
	})
	p.control.HandleFunc("POST /control/payments/statuses", func(w http.ResponseWriter, r *http.Request) {
		var in map[ppaas.State]string
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in); err != nil {
			apiError(w, http.StatusBadRequest, "invalid_request", "statuses: body {\"approved\":\"AUTHORIZED\",…} expected: "+err.Error())
			return
		}
		if err := p.SetStatusSpellings(in); err != nil {
			apiError(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, p.StatusSpellings())
	})
	refundMode := func() map[string]any {
		p.pay.mu.Lock()
		m := p.pay.refunds
		p.pay.mu.Unlock()
		mode := "sync"
		if m.Async {
			mode = "async"
		}
		return map[string]any{"mode": mode, "delayMs": m.Delay.Milliseconds()}
	}
	p.control.HandleFunc("GET /control/payments/refunds", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, refundMode())
	})
	p.control.HandleFunc("POST /control/payments/refunds", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Mode    string `json:"mode"`
			DelayMS int64  `json:"delayMs"`
		}
		if err := decodeControl(w, r, 1024, &in); err != nil {
			apiError(w, http.StatusBadRequest, "invalid_request", "refunds: "+err.Error())
			return
		}
		if in.Mode != "sync" && in.Mode != "async" {
			apiError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("refunds: mode is sync or async, got %q", in.Mode))
			return
		}
		if err := p.SetRefundMode(RefundMode{Async: in.Mode == "async", Delay: time.Duration(in.DelayMS) * time.Millisecond}); err != nil {
			apiError(w, http.StatusBadRequest, "invalid_request", "refunds: "+err.Error())
			return
		}
		writeJSON(w, http.StatusOK, refundMode())
	})
	p.control.HandleFunc("POST /control/refunds/complete", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			TransactionID string `json:"transactionId"`
		}
		if r.ContentLength != 0 {
			if err := decodeControl(w, r, 1024, &in); err != nil {
				apiError(w, http.StatusBadRequest, "invalid_request", "complete refunds: "+err.Error())
				return
			}
		}
		n, err := p.CompleteRefunds(in.TransactionID)
		if err != nil {
			apiError(w, http.StatusNotFound, "not_found", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"completed": n})
	})
	p.control.HandleFunc("GET /control/payments/by-order/{orderId}", func(w http.ResponseWriter, r *http.Request) {
		var found []SimTransaction
		txs, _ := p.pay.list()
		for _, tx := range txs {
			if tx.Order.OrderID == r.PathValue("orderId") {
				found = append(found, tx)
			}
		}
		if len(found) == 0 {
			apiError(w, http.StatusNotFound, "not_found", "no transaction with this order id")
			return
		}
		writeJSON(w, http.StatusOK, found)
	})
	p.control.HandleFunc("/control/agent/clock", func(w http.ResponseWriter, r *http.Request) {
		c := p.agentClock.Load()
		if c == nil {
			apiError(w, http.StatusNotFound, "not_found", "no in-process agent: an agent's clock belongs to its own host")
			return
		}
		switch r.Method {
		case http.MethodGet:
		case http.MethodPost:
			var in struct {
				OffsetMS *int64 `json:"offsetMs"`
			}
			if err := decodeControl(w, r, 1024, &in); err != nil || in.OffsetMS == nil {
				apiError(w, http.StatusBadRequest, "invalid_request", "agent clock: body {\"offsetMs\": n} expected"+errSuffix(err))
				return
			}
			c.Set(time.Duration(*in.OffsetMS) * time.Millisecond)
		default:
			w.Header().Set("Allow", "GET, POST")
			apiError(w, http.StatusMethodNotAllowed, "method_not_allowed", "GET or POST")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"offsetMs": c.Offset().Milliseconds(), "now": c.Now().UTC()})
	})
}
