package agent

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// runRefundDesk settles the refunds PPaaS has not answered definitively (see
// agent/refund.go): first those a previous run left unfinished (startup, listed
// before the Nexo server took requests), then, every desk.Every, those
// journaled pending. Each is re-sent with its own idempotency key until PPaaS
// says refunded (the refund's entry gets its Success response, receipts
// included) or refuses it (a Failure, the amount refundable again). It returns
// when ctx ends.
func (a *Agent) runRefundDesk(ctx context.Context, st *store.Store, engine *qr.Engine, desk *refundDesk, startup []store.Txn) error {
	select {
	case <-a.ready: // authenticated: PPaaS can be asked
	case <-ctx.Done():
		return nil
	}
	j := journal{st: st, after: a.after}
	client := engine.Client()
	for _, t := range startup {
		if o, ok := refundOrderOf(t); ok {
			a.settleRefund(ctx, j, client, o, t)
		}
	}
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
		for _, t := range txns {
			if !pendingMarked(t) {
				continue // in flight in the Nexo server, or not a refund
			}
			if o, ok := refundOrderOf(t); ok {
				a.settleRefund(ctx, j, client, o, t)
			}
		}
	}
}

// settleRefund asks PPaaS (idempotently) where refund o stands and journals
// its outcome when definitive.
func (a *Agent) settleRefund(ctx context.Context, j journal, client *qr.Client, o refundOrder, t store.Txn) {
	log := a.log.With("sale_id", o.saleID, "service_id", o.serviceID, "poi_transaction_id", o.id, "original", o.original)
	orig, err := j.st.Txn(ctx, o.original)
	if err != nil {
		log.Warn("refund desk: original payment unreadable; the refund stays pending", "err", err)
		return
	}
	mark, held := reservedIn(orig, o.id)
	if !held {
		// The reservation precedes every send: without one (or once released
		// on PPaaS's refusal) nothing was refunded.
		ne := nexo.Errorf(nexo.Aborted, "interrupted by an agent restart before the %s reached PPaaS; nothing was refunded", refundWord(o))
		if released(orig, o.id) {
			ne = nexo.Errorf(nexo.Refusal, "%s refused by PPaaS; nothing was refunded", refundWord(o))
		}
		a.journalRefund(ctx, j, t, o, nil, ne, log)
		return
	}
	amount := nexo.Amount{Minor: mark.Amount, Currency: mark.Currency}
	r, err := readRefundable(ctx, j.st, o.original, o.saleID)
	if err != nil {
		log.Warn("refund desk: original payment unreadable; the refund stays pending", "err", err)
		return
	}
	ref, err := sendRefund(ctx, client, r.ppaasID, o.id, amount)
	switch {
	case err != nil && refusedByPPaaS(err):
		rerr := apmEngine{journal: j}.release(ctx, o, amount, err)
		var ne *nexo.Error
		if errors.As(rerr, &ne) && ne.Condition == nexo.Refusal {
			a.journalRefund(ctx, j, t, o, nil, ne, log)
		}
	case err != nil:
		log.Info("refund desk: PPaaS did not answer; trying again later", "err", err)
		a.markPending(ctx, j, t, log)
	case !ref.Done():
		a.markPending(ctx, j, t, log)
	default:
		a.journalRefund(ctx, j, t, o, &refundOutcome{amount: amount, original: r, ref: ref}, nil, log)
	}
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
func (a *Agent) journalRefund(ctx context.Context, j journal, t store.Txn, o refundOrder, out *refundOutcome, ne *nexo.Error, log *slog.Logger) {
	resp := refundResponse(a.poiid, o, out, ne)
	if err := j.finish(ctx, t, resp, time.Now(), nil); err != nil {
		log.Error("refund desk: journal the refund's outcome", "err", err)
		return
	}
	log.Info("refund settled at PPaaS", "result", string(resp.Status.Result), "text", resp.Status.AdditionalResponse)
	amount := o.amount
	if out != nil {
		amount = out.amount
	}
	if err := j.refundSettled(ctx, t, o, resp, amount); err != nil { // after-sale update: agent/aftersale.go
		log.Error("refund desk: journal the after-sale update", "err", err)
	}
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
