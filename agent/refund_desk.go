package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// runRefundDesk settles the refunds PPaaS has not answered definitively (see
// agent/refund.go): first those a previous run left unfinished (startup, listed
// before the Nexo server took requests), then those journaled pending, each
// when its backoff is due (desk.Every doubled at each inconclusive answer, up
// to desk.MaxBackoff, with jitter). Each is re-sent with its own idempotency
// key until PPaaS says refunded (the refund's entry gets its Success response,
// receipts included). A refusal of a re-send proves nothing (an earlier send
// may have been accepted): the desk then reads the payment at PPaaS, and what
// that cannot settle, or what stays pending past desk.MaxAge, it gives up to
// a person (manualRefund), loudly, the amount still reserved. It returns when
// ctx ends.
func (a *Agent) runRefundDesk(ctx context.Context, st *store.Store, engine *qr.Engine, desk *refundDesk, startup []store.Txn) error {
	select {
	case <-a.ready: // authenticated: PPaaS can be asked
	case <-ctx.Done():
		return nil
	}
	j := journal{st: st, after: a.after}
	client := engine.Client()
	manual := 0
	for _, t := range startup {
		if o, ok := refundOrderOf(t); ok {
			if a.settleRefund(ctx, j, client, desk, o, t) == refundManual {
				manual++
			}
		}
	}
	desk.manual.Store(int64(manual))
	tick := time.NewTicker(desk.Every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		txns, err := st.UnfinishedTxns(ctx)
		if err != nil {
			a.log.Warn("refund desk: list unfinished transactions", "err", err)
			continue
		}
		manual, now, seen := 0, time.Now(), map[string]bool{}
		for _, t := range txns {
			isManual := manualMarked(t)
			if !pendingMarked(t) && !isManual {
				continue // in flight in the Nexo server, or not a refund
			}
			seen[t.ID] = true
			if !desk.due(t.ID, now) {
				if isManual {
					manual++
				}
				continue
			}
			o, ok := refundOrderOf(t)
			if !ok {
				continue
			}
			// A refund given up to a person is still asked about, at the
			// slowest pace: PPaaS may yet confirm it (Success, no one needed).
			switch a.settleRefund(ctx, j, client, desk, o, t) {
			case refundPending:
				desk.later(t.ID, now)
			case refundManual:
				manual++
				desk.later(t.ID, now)
			default:
				delete(desk.next, t.ID)
			}
		}
		for id := range desk.next {
			if !seen[id] {
				delete(desk.next, id)
			}
		}
		desk.manual.Store(int64(manual))
	}
}

// deskOutcome is where the desk left a refund.
type deskOutcome int

const (
	refundSettled deskOutcome = iota // its final response is journaled
	refundPending                    // tried again later
	refundManual                     // given up to a person
)

// settleRefund asks PPaaS (idempotently) where refund o stands and journals
// its outcome when definitive. A refund given up to a person stays so until
// PPaaS confirms it.
func (a *Agent) settleRefund(ctx context.Context, j journal, client *qr.Client, desk *refundDesk, o refundOrder, t store.Txn) deskOutcome {
	out := a.trySettle(ctx, j, client, desk, o, t)
	if out != refundSettled && manualMarked(t) {
		return refundManual
	}
	return out
}

func (a *Agent) trySettle(ctx context.Context, j journal, client *qr.Client, desk *refundDesk, o refundOrder, t store.Txn) deskOutcome {
	log := a.log.With("sale_id", o.saleID, "service_id", o.serviceID, "poi_transaction_id", o.id, "original", o.original)
	orig, err := j.st.Txn(ctx, o.original)
	if err != nil {
		log.Warn("refund desk: original payment unreadable; the refund stays pending", "err", err)
		a.markPending(ctx, j, t, log)
		return refundPending
	}
	mark, held := reservedIn(orig, o.id)
	if resp, closed := operatorClosed(t); !held && closed {
		// A person closed it as not refunded and the agent stopped before
		// its final answer was written: that answer, not "refused by PPaaS",
		// and no after-sale update (the close queues none).
		if err := j.finish(ctx, t, resp, time.Now(), nil); err != nil {
			log.Error("refund desk: journal the refund closed by a person", "err", err)
			a.markPending(ctx, j, t, log)
			return refundPending
		}
		log.Info("refund closed by a person as not refunded, settled after a restart")
		return refundSettled
	}
	if !held {
		// The reservation precedes every send: without one (or once released
		// on PPaaS's refusal of a first send) nothing was refunded.
		ne := nexo.Errorf(nexo.Aborted, "interrupted by an agent restart before the %s reached PPaaS; nothing was refunded", refundWord(o))
		if released(orig, o.id) {
			ne = nexo.Errorf(nexo.Refusal, "%s refused by PPaaS; nothing was refunded", refundWord(o))
		}
		return a.journaled(a.journalRefund(ctx, j, t, o, nil, ne, log))
	}
	amount := nexo.Amount{Minor: mark.Amount, Currency: mark.Currency}
	r, err := readRefundable(ctx, j.st, o.original, o.saleID)
	if err != nil {
		log.Warn("refund desk: original payment unreadable; the refund stays pending", "err", err)
		a.markPending(ctx, j, t, log)
		return refundPending
	}
	// On the corrected clock, as the journal stamps t.Started.
	if age := a.clock.Now().Sub(t.Started); desk.MaxAge > 0 && age > desk.MaxAge && !manualMarked(t) {
		return a.manualRefund(ctx, j, desk, t, o, amount, r.ppaasID, fmt.Sprintf("still not completed by PPaaS after %s", age.Round(time.Minute)), log)
	}
	ref, err := sendRefund(ctx, client, r.ppaasID, o.id, amount)
	var ae *qr.APIError
	switch {
	case err != nil && errors.As(err, &ae) && slices.Contains([]int{http.StatusBadRequest, http.StatusConflict, http.StatusUnprocessableEntity}, ae.StatusCode):
		// A re-send: an earlier send (refund()'s, or one before a crash) may
		// have been accepted, so this refusal does not prove nothing was
		// refunded. The payment's state at PPaaS may settle it.
		if a.settledByState(ctx, j, client, t, o, r, amount, log) {
			return refundSettled
		}
		if ae.StatusCode == http.StatusConflict { // the same key still in progress at PPaaS
			log.Info("refund desk: PPaaS answered 409 (in progress); trying again later", "err", err)
			a.markPending(ctx, j, t, log)
			return refundPending
		}
		return a.manualRefund(ctx, j, desk, t, o, amount, r.ppaasID, fmt.Sprintf("PPaaS refused a re-send (%d: %s) although an earlier send may have been accepted", ae.StatusCode, ae.Message), log)
	case err != nil:
		log.Info("refund desk: PPaaS did not answer; trying again later", "err", err)
		a.markPending(ctx, j, t, log)
		return refundPending
	case ref.Done():
		return a.journaled(a.journalRefund(ctx, j, t, o, &refundOutcome{amount: amount, original: r, ref: ref}, nil, log))
	case refundFailed(ref.Status):
		return a.manualRefund(ctx, j, desk, t, o, amount, r.ppaasID, fmt.Sprintf("PPaaS reports the refund %q", ref.Status), log)
	default:
		a.markPending(ctx, j, t, log)
		return refundPending
	}
}

// refundFailed reports whether a refund status says the refund ended without
// the money moving back. The desk does not release such a refund on its own
// word (the spelling is the platform's, and the provider may yet refund): it
// gives it to a person.
func refundFailed(status string) bool {
	return slices.Contains([]string{"failed", "declined", "rejected", "cancelled", "canceled", "error"}, strings.ToLower(status))
}

// settledByState decides refund o from the payment's state at PPaaS when a
// re-send was refused: if PPaaS's refunded amount covers every refund of the
// payment the journal holds reserved, this one (reserved among them) was
// refunded. It journals the Success and reports true; anything less decides
// nothing.
func (a *Agent) settledByState(ctx context.Context, j journal, client *qr.Client, t store.Txn, o refundOrder, r refundable, amount nexo.Amount, log *slog.Logger) bool {
	gctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	cur, err := client.Get(gctx, r.ppaasID)
	cancel()
	if err != nil {
		log.Info("refund desk: status read of the original payment failed", "err", err)
		return false
	}
	if cur.RefundedAmount < r.reservedTotal() || r.reservedTotal() <= 0 {
		return false
	}
	ref := ppaas.Refund{ClientRefundID: o.id, TransactionID: r.ppaasID, Status: ppaas.RefundDone,
		Amount: ppaas.Amount{Amount: amount.Minor, Currency: amount.Currency}}
	return a.journalRefund(ctx, j, t, o, &refundOutcome{amount: amount, original: r, ref: ref}, nil, log)
}

// manualRefund gives refund o up to a person: the amount stays reserved (it
// is never refunded twice), the entry stays unfinished with a manual mark
// whose response TransactionStatus gives ("manual action needed"), an ERROR
// is logged, and the desk counts it (/readyz degraded, Diagnosis, metrics).
func (a *Agent) manualRefund(ctx context.Context, j journal, desk *refundDesk, t store.Txn, o refundOrder, amount nexo.Amount, ppaasID, why string, log *slog.Logger) deskOutcome {
	if manualMarked(t) {
		return refundManual // already given up; still asked about
	}
	ne := &nexo.Error{Condition: nexo.InProgress, Text: fmt.Sprintf(
		"%s of %s: %s; whether PPaaS refunded it is unknown — manual action needed: check PPaaS transaction %s, clientRefundId %s (the amount stays reserved: do not refund it again)",
		refundWord(o), amount, why, ppaasID, o.id)}
	resp := refundResponse(a.poiid, o, nil, ne)
	b, err := responseRecord(resp)
	if err == nil {
		err = j.st.AppendTxn(ctx, t.ID, store.Transition{At: time.Now(), State: stateRefundManual, Data: b})
	}
	if err != nil {
		log.Error("refund desk: journal the refund given up; it stays pending", "err", err)
		a.markPending(ctx, j, t, log)
		return refundPending
	}
	desk.gaveUp.Add(1)
	log.Error("refund given up by the refund desk; manual action needed", "amount", amount.String(), "ppaas_transaction_id", ppaasID, "why", why)
	return refundManual
}

// journaled is the desk's outcome of a journalRefund that reported ok.
func (a *Agent) journaled(ok bool) deskOutcome {
	if ok {
		return refundSettled
	}
	return refundPending
}

// operatorClosed is the final response a person closed refund t with as
// not refunded (`agent refund close`), if they did.
func operatorClosed(t store.Txn) (*nexo.Response, bool) {
	for _, tr := range slices.Backward(t.Transitions) {
		if tr.State == stateRefundClosed {
			resp, err := readResponse(tr.Data)
			return resp, err == nil && resp != nil
		}
	}
	return nil, false
}

func manualMarked(t store.Txn) bool {
	return slices.ContainsFunc(t.Transitions, func(tr store.Transition) bool { return tr.State == stateRefundManual })
}

// markPending makes an interrupted refund the desk's periodic work.
func (a *Agent) markPending(ctx context.Context, j journal, t store.Txn, log *slog.Logger) {
	if pendingMarked(t) {
		return
	}
	if err := j.st.AppendTxn(ctx, t.ID, store.Transition{At: time.Now(), State: stateRefundPending}); err != nil {
		log.Warn("refund desk: journal pending refund", "err", err)
	}
}

func released(t store.Txn, id string) bool {
	_, held := reservedIn(t, id)
	if held {
		return false
	}
	for _, tr := range t.Transitions {
		if tr.State == stateRefundReserved {
			if m, ok := markOf(tr); ok && m.RefundID == id {
				return true
			}
		}
	}
	return false
}

// journalRefund journals refund o's final response: out when it completed,
// else the failure ne.
func (a *Agent) journalRefund(ctx context.Context, j journal, t store.Txn, o refundOrder, out *refundOutcome, ne *nexo.Error, log *slog.Logger) bool {
	resp := refundResponse(a.poiid, o, out, ne)
	if err := j.finish(ctx, t, resp, time.Now(), nil); err != nil {
		log.Error("refund desk: journal the refund's outcome", "err", err)
		a.markPending(ctx, j, t, log)
		return false
	}
	log.Info("refund settled at PPaaS", "result", string(resp.Status.Result), "text", resp.Status.AdditionalResponse)
	amount := o.amount
	if out != nil {
		amount = out.amount
	}
	if err := j.refundSettled(ctx, t, o, resp, amount); err != nil { // after-sale update: agent/aftersale.go
		log.Error("refund desk: journal the after-sale update", "err", err)
	}
	return true
}

// refundResponse is the Nexo response of a settled refund, as the POS would
// have had it had PPaaS answered at once.
func refundResponse(poiid string, o refundOrder, out *refundOutcome, ne *nexo.Error) *nexo.Response {
	id := nexo.TransactionID{ID: o.id, TimeStamp: o.started}
	resp := &nexo.Response{
		Header: nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: o.category, Type: nexo.TypeResponse,
			SaleID: o.saleID, ServiceID: o.serviceID, POIID: poiid},
		Status: nexo.ResponseStatus{Result: nexo.Success},
	}
	if ne != nil {
		resp.Status = nexo.ResponseStatus{Result: nexo.Failure, ErrorCondition: ne.Condition, AdditionalResponse: ne.Text}
	}
	switch {
	case o.payment != nil:
		resp.Payment = &nexo.PaymentResponse{SaleTransactionID: o.payment.SaleTransactionID, POITransactionID: id}
		if out != nil {
			res := refundResult(o, *out)
			resp.Payment.Result = &res
			resp.Payment.Receipts = nexo.Receipts(resp, "", false)
		}
	case o.reversal != nil:
		resp.Reversal = &nexo.ReversalResponse{OriginalPOITransactionID: o.reversal.OriginalPOITransactionID, POITransactionID: id}
		if out != nil {
			resp.Reversal.ReversedAmount, _ = nexo.FormatAmount(out.amount)
			resp.Reversal.Receipts = nexo.ReversalReceipts(resp, out.amount, "", false)
		}
	}
	return resp
}
