package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/termagent/termagent/failpoint"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// reasonRestart is the reason of the reversal advices recovery queues; the
// forwarder keeps it in the settled TransactionStatus text.
const reasonRestart = "interrupted by an agent restart"

// recover settles the transactions a previous run left unfinished (a crash or a
// power cut mid-payment), so that TransactionStatus tells the POS the truth and no
// money moves without the POS knowing:
//   - a payment with a reversal advice already queued is journaled as the
//     Failure that advice owns (never as approved);
//   - a payment PPaaS approved is journaled as the Success it was;
//   - one PPaaS declined or cancelled is journaled as that Failure;
//   - one still undecided, whose state cannot be read now, or whose PPaaS id the
//     crash lost (its create may or may not have reached PPaaS) is cancelled (or,
//     if it turns out approved meanwhile, refunded) through a durable advice that
//     replays the create idempotently when needed, and journaled as a Failure
//     that the advice's resolution confirms; advice and Failure commit together;
//   - except a merchantscan (consumer-presented) payment whose PPaaS id the
//     crash lost: its create is never replayed, PPaaS would charge the
//     consumer's code now. It is located in the device's transaction listing
//     (journal.standing, qr.Engine.Locate) and settled as above once found; a
//     create that never reached PPaaS is a Failure, nothing charged; while the
//     listing cannot tell, the payment stays unfinished (TransactionStatus
//     InProgress) and is returned, for relocate to ask again.
//
// txns must be listed before the Nexo server takes requests (see Run): a payment
// this run started is in flight, not interrupted, and must not be settled here.
//
// j (the journal, with its QR engine) asks PPaaS where each payment stands.
func (a *Agent) recover(ctx context.Context, j journal, txns []store.Txn) (unlocated []store.Txn) {
	st := j.st
	j.held = nil // recovery journals its advices with the response itself
	for _, t := range txns {
		if ctx.Err() != nil {
			return unlocated
		}
		failpoint.Hit("recover.before")
		e := toEntry(t)
		if _, ok := refundOrderOf(t); ok { // refunds: the refund desk settles them (agent/refund_desk.go)
			continue
		}
		if e.SaleID != "" && e.Category == nexo.CategoryReversal {
			// Reversals are idempotent at PPaaS: what the interrupted one did
			// is read back from PPaaS before the POS is told anything.
			a.finishRecoveredReversal(ctx, j, t, e)
			continue
		}
		if e.SaleID == "" || e.Category != nexo.CategoryPayment {
			continue
		}
		v := viewQR(t)
		log := a.log.With("sale_id", t.SaleID, "service_id", t.ServiceID, "poi_transaction_id", t.ID)
		create, ok := j.createRequest(t.ID, v)
		if rec, _, found, err := st.FindKey(ctx, adviceKey(t.ID)); err != nil {
			log.Error("recover: look for a queued reversal", "err", err)
			continue // stays unfinished; the next start tries again
		} else if found {
			// Queued by a run that journaled the advice apart from the final
			// response (an older file): the reversal owns the outcome.
			var adv qr.Advice
			if err := json.Unmarshal(rec.Payload, &adv); err != nil {
				adv = qr.Advice{Kind: qr.AdviceReverse, ClientTransactionID: t.ID, TransactionID: v.transactionID, Create: create, Reason: reasonRestart,
					At: time.Now(), Started: t.Started} // its window, should it be a merchantscan payment to locate
			}
			a.finishRecovered(ctx, j, t, v, nil, nexo.Errorf(nexo.Cancel, "interrupted by an agent restart; a reversal is queued, no money will stay charged"), &adv)
			log.Info("recovered transaction: a reversal was already queued")
			continue
		}
		if !ok && v.transactionID == "" {
			a.finishRecovered(ctx, j, t, v, nil, nexo.Errorf(nexo.Aborted, "interrupted by an agent restart before the payment started; no money moved"), nil)
			log.Info("recovered transaction: not an APM payment, never started")
			continue
		}
		// Ask PPaaS where the payment stands. Without its id (the crash came before
		// create answered, or lost the deferred record of it) the create is
		// replayed: it is idempotent by clientTransactionId, so it returns the
		// transaction the lost call made, or makes one that is cancelled below.
		// A merchantscan one is located instead (see above).
		var cur *ppaas.Transaction
		byListing := v.transactionID == "" && create.PaymentScenario == ppaas.MerchantScan
		got, err := j.standing(ctx, t.ID, v)
		if err == nil {
			cur = &got
			if v.transactionID == "" && got.TransactionID != "" {
				// Learnt now (the crash lost it, or the listing found it):
				// journaled with the outcome below, so later reversals and
				// PPaaS events naming only this id find the payment.
				if rerr := j.Record(ctx, qr.Transition{ClientTransactionID: t.ID, TransactionID: got.TransactionID, To: got.Status, At: time.Now(), Source: "recover"}); rerr != nil {
					log.Warn("recover: journal the PPaaS id learnt", "err", rerr)
				}
			}
			v.transactionID = got.TransactionID
		}
		failpoint.Hit("recover.asked")
		switch {
		case byListing && errors.Is(err, qr.ErrNeverCreated):
			if a.finishRecovered(ctx, j, t, v, nil, nexo.Errorf(nexo.Aborted, "interrupted by an agent restart before the payment reached PPaaS; the customer's code was not charged"), nil) {
				log.Info("recovered transaction: merchantscan create never reached PPaaS, nothing charged")
			} else {
				unlocated = append(unlocated, t) // asked again (relocate), escalated if it lasts
			}
		case byListing && err != nil:
			// Never replayed, never reversed blind: asked again (relocate).
			log.Warn("recover: merchantscan payment not located at PPaaS yet; it stays in progress", "err", err)
			unlocated = append(unlocated, t)
		case cur != nil && cur.Status == ppaas.Approved && cur.RefundedAmount == 0:
			brand := cur.PaymentType // when the journaled request is unreadable
			if v.payment != nil && j.qr != nil {
				if b, ok := (apmEngine{qr: j.qr}).brand(*v.payment); ok {
					brand = b
				}
			}
			res, _ := outcomeToNexo(qr.Outcome{Result: qr.ResultApproved, ClientTransactionID: t.ID, TransactionID: cur.TransactionID,
				ProviderReference: cur.ProviderReference, Amount: cur.PaymentAmount, Method: qr.Method{PaymentType: cur.PaymentType, Scenario: cur.PaymentScenario}},
				brand, nexo.PaymentRequest{})
			if a.finishRecovered(ctx, j, t, v, &res, nil, nil) {
				log.Info("recovered transaction: approved at PPaaS")
			} else if byListing {
				unlocated = append(unlocated, t)
			}
		case cur != nil && cur.Status.Final() && cur.Status != ppaas.Approved:
			if a.finishRecovered(ctx, j, t, v, nil, nexo.Errorf(nexo.Refusal, "%s at PPaaS (outcome recovered after an agent restart)", cur.Status), nil) {
				log.Info("recovered transaction: not approved", "status", cur.Status)
			} else if byListing {
				unlocated = append(unlocated, t)
			}
		default:
			adv := qr.Advice{Kind: qr.AdviceReverse, ClientTransactionID: t.ID, TransactionID: v.transactionID, Reason: reasonRestart, At: time.Now(), Started: t.Started}
			if v.payment != nil {
				adv.Amount = ppaas.Amount{Amount: v.payment.Amount.Minor, Currency: v.payment.Amount.Currency}
			}
			if adv.TransactionID == "" {
				adv.Create = create
			}
			if !a.finishRecovered(ctx, j, t, v, nil, nexo.Errorf(nexo.Cancel, "interrupted by an agent restart; a reversal is queued: the payment is cancelled at PPaaS, or refunded if its consumer paid"), &adv) {
				continue // stays unfinished; the next start tries again
			}
			if a.fwd != nil {
				a.fwd.Wake()
			}
			log.Info("recovered transaction: reversal queued")
		}
	}
	return unlocated
}

// finishRecovered journals the final Nexo response of a recovered payment, with
// its reversal advice when adv is set (both or neither). It reports success.
func (a *Agent) finishRecovered(ctx context.Context, j journal, t store.Txn, v qrView, res *nexo.PaymentResult, failure *nexo.Error, adv *qr.Advice) bool {
	var sale nexo.TransactionID
	if v.payment != nil {
		sale = v.payment.SaleTransactionID
	}
	resp := &nexo.Response{
		Header: nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: nexo.CategoryPayment, Type: nexo.TypeResponse,
			SaleID: t.SaleID, ServiceID: t.ServiceID, POIID: a.poiid},
		Payment: &nexo.PaymentResponse{
			SaleTransactionID: sale,
			POITransactionID:  nexo.TransactionID{ID: t.ID, TimeStamp: t.Started},
		},
	}
	if res != nil {
		resp.Status = nexo.ResponseStatus{Result: nexo.Success}
		res.POITransactionID = resp.Payment.POITransactionID
		resp.Payment.Result = res
	} else {
		resp.Status = nexo.ResponseStatus{Result: nexo.Failure, ErrorCondition: failure.Condition, AdditionalResponse: failure.Text}
	}
	if err := j.finish(ctx, t, resp, time.Now(), adv); err != nil {
		a.log.Error("journal recovered response", "err", err)
		return false
	}
	failpoint.Hit("recover.journaled")
	return true
}

// finishRecoveredReversal journals the outcome of a reversal a crash
// interrupted, so its ServiceID stops answering InProgress. PPaaS is asked
// first: a payment it shows cancelled, declined or refunded in full was
// reversed (Success); otherwise the POS is told to send the reversal again
// (it is idempotent).
func (a *Agent) finishRecoveredReversal(ctx context.Context, j journal, t store.Txn, e nexo.JournalEntry) {
	var orig nexo.TransactionID
	if req := e.Request; req != nil && req.Reversal != nil {
		orig = req.Reversal.OriginalPOITransactionID
	}
	resp := &nexo.Response{
		Header: nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: nexo.CategoryReversal, Type: nexo.TypeResponse,
			SaleID: t.SaleID, ServiceID: t.ServiceID, POIID: a.poiid},
		Status: nexo.ResponseStatus{Result: nexo.Failure, ErrorCondition: nexo.UnreachableHost,
			AdditionalResponse: "interrupted by an agent restart; send the reversal again with a new ServiceID (it is idempotent)"},
		Reversal: &nexo.ReversalResponse{OriginalPOITransactionID: orig, POITransactionID: nexo.TransactionID{ID: t.ID, TimeStamp: t.Started}},
	}
	if st, ok := a.reversedAtPPaaS(ctx, j, orig.ID); ok {
		resp.Status = nexo.ResponseStatus{Result: nexo.Success, AdditionalResponse: fmt.Sprintf("%s at PPaaS (outcome recovered after an agent restart)", st)}
	}
	if err := j.finish(ctx, t, resp, time.Now(), nil); err != nil {
		a.log.Error("journal recovered reversal", "err", err)
		return
	}
	a.log.Info("recovered reversal", "sale_id", t.SaleID, "service_id", t.ServiceID, "result", resp.Status.Result)
}

// reversedAtPPaaS reads the original payment of a reversal at PPaaS and
// reports whether nothing of it stands any more (and its status).
func (a *Agent) reversedAtPPaaS(ctx context.Context, j journal, origID string) (ppaas.State, bool) {
	if origID == "" {
		return "", false
	}
	ot, err := j.st.Txn(ctx, origID)
	if err != nil {
		return "", false
	}
	v := viewQR(ot)
	id := v.transactionID
	if id == "" {
		return "", false // never replay a create here: it would make a transaction
	}
	cur, err := j.standing(ctx, origID, v)
	if err != nil {
		a.log.Warn("recover reversal: PPaaS status unknown", "transaction_id", id, "err", err)
		return "", false
	}
	switch {
	case cur.Status == ppaas.Refunded, cur.Status == ppaas.Approved && cur.RefundedAmount >= cur.PaymentAmount.Amount:
		return ppaas.Refunded, true
	case cur.Status == ppaas.Cancelled, cur.Status == ppaas.Expired, cur.Status == ppaas.Declined:
		return cur.Status, true
	}
	return "", false
}
