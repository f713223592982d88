package agent

import (
	"context"
	"encoding/json"
	"time"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// recover settles the transactions a previous run left unfinished (a crash or a
// power cut mid-payment), so that TransactionStatus tells the POS the truth and no
// money moves without the POS knowing:
//   - a payment PPaaS approved is journaled as the Success it was;
//   - one PPaaS declined or cancelled is journaled as that Failure;
//   - one still undecided, or whose state cannot be read now, is cancelled (or,
//     if it turns out approved meanwhile, refunded) through a durable advice, and
//     journaled as a Failure that the advice's resolution confirms.
func (a *Agent) recover(ctx context.Context, st *store.Store, engine *qr.Engine) {
	txns, err := st.UnfinishedTxns(ctx)
	if err != nil {
		a.log.Error("list unfinished transactions", "err", err)
		return
	}
	j := journal{st: st}
	for _, t := range txns {
		if ctx.Err() != nil {
			return
		}
		e := toEntry(t)
		if e.SaleID == "" || e.Category != nexo.CategoryPayment {
			continue // not a POS payment (reversals are retried by the POS)
		}
		v := viewQR(t)
		log := a.log.With("sale_id", t.SaleID, "service_id", t.ServiceID, "poi_transaction_id", t.ID)
		if v.link == nil {
			a.finishRecovered(ctx, j, t, nil, nexo.Errorf(nexo.Aborted, "interrupted by an agent restart before the payment started; no money moved"))
			log.Info("recovered transaction: never started")
			continue
		}
		var cur *qr.Transaction
		if v.transactionID != "" {
			gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			got, err := qr.NewClient(a.api, a.cfg.APIURL, qr.Retry{}).Get(gctx, v.transactionID)
			cancel()
			if err == nil {
				cur = &got
			}
		}
		switch {
		case cur != nil && cur.Status == qr.Approved:
			res, _ := outcomeToNexo(qr.Outcome{Result: qr.ResultApproved, ClientTransactionID: t.ID, TransactionID: cur.TransactionID,
				ProviderReference: cur.ProviderReference, Amount: cur.PaymentAmount, Method: qr.Method{PaymentType: cur.PaymentType, Scenario: cur.PaymentScenario}},
				v.link.Brand, nexo.PaymentRequest{})
			a.finishRecovered(ctx, j, t, &res, nil)
			log.Info("recovered transaction: approved at PPaaS")
		case cur != nil && cur.Status.Final():
			a.finishRecovered(ctx, j, t, nil, nexo.Errorf(nexo.Refusal, "%s at PPaaS (outcome recovered after an agent restart)", cur.Status))
			log.Info("recovered transaction: not approved", "status", cur.Status)
		default:
			adv := qr.Advice{Kind: qr.AdviceReverse, ClientTransactionID: t.ID, TransactionID: v.transactionID, Reason: "interrupted by an agent restart", At: time.Now()}
			if adv.TransactionID == "" {
				adv.Create = apmEngine{qr: engine, st: st}.createRequest(t.ID, *v.link)
			}
			if err := (advisor{st: st}).Advise(ctx, adv); err != nil {
				log.Error("queue recovery reversal", "err", err)
				continue // stays unfinished; the next start tries again
			}
			a.finishRecovered(ctx, j, t, nil, nexo.Errorf(nexo.Cancel, "interrupted by an agent restart; the payment is being cancelled at PPaaS, no money will move"))
			a.fwd.Wake()
			log.Info("recovered transaction: reversal queued")
		}
	}
}

// finishRecovered journals the final Nexo response of a recovered payment.
func (a *Agent) finishRecovered(ctx context.Context, j journal, t store.Txn, res *nexo.PaymentResult, failure *nexo.Error) {
	var link qrLink
	if v := viewQR(t); v.link != nil {
		link = *v.link
	}
	resp := &nexo.Response{
		Header: nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: nexo.CategoryPayment, Type: nexo.TypeResponse,
			SaleID: t.SaleID, ServiceID: t.ServiceID, POIID: a.poiid},
		Payment: &nexo.PaymentResponse{
			SaleTransactionID: nexo.TransactionID{ID: link.OrderID, TimeStamp: t.Started},
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
	b, err := nexo.JSONCodec{}.EncodeResponse(resp)
	if err != nil {
		a.log.Error("encode recovered response", "err", err)
		return
	}
	if !json.Valid(b) {
		return
	}
	if err := j.Finish(ctx, t.SaleID, t.ServiceID, b, time.Now()); err != nil {
		a.log.Error("journal recovered response", "err", err)
	}
}
