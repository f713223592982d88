package agent

import (
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/internal/testrig"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// afterSaleRig is a journal on a real store with the after-sale desk wired
// to a recording notifier.
type afterSaleRig struct {
	j      journal
	counts map[string]int
}

func newAfterSaleRig(t *testing.T, receipts bool) *afterSaleRig {
	return newAfterSaleRigOn(t, openAgentStore(t, filepath.Join(t.TempDir(), "termagent.db")), receipts)
}

func newAfterSaleRigOn(t *testing.T, st *store.Store, receipts bool) *afterSaleRig {
	t.Helper()
	r := &afterSaleRig{counts: map[string]int{}}
	after := newAfterSale(st, slog.New(slog.DiscardHandler))
	after.connect(func(ev nexo.EventNotification, saleID string) (nexo.PendingEvent, error) {
		b, err := json.Marshal(map[string]string{"event": ev.EventToNotify, "details": ev.EventDetails, "sale": saleID})
		return nexo.PendingEvent{URL: "http://pos.test/events", ContentType: "application/json", Body: b}, err
	}, func(kind string) { r.counts[kind]++ })
	r.j = journal{st: st, held: newHeldAdvices(), after: after, receipts: receipts}
	return r
}

func successResponse(t *testing.T, serviceID, poiID string, minor int64) *nexo.Response {
	t.Helper()
	r := &nexo.Response{
		Header: nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: nexo.CategoryPayment, Type: nexo.TypeResponse, SaleID: "POS1", ServiceID: serviceID, POIID: "DX8000-1"},
		Status: nexo.ResponseStatus{Result: nexo.Success},
		Payment: &nexo.PaymentResponse{POITransactionID: nexo.TransactionID{ID: poiID, TimeStamp: time.Now().UTC()},
			Result: &nexo.PaymentResult{Type: nexo.PaymentNormal, Brand: "PTI", InstrumentType: "Mobile", AuthorizedAmount: nexo.Amount{Minor: minor, Currency: "EUR"}, ApprovalCode: "qr-1"}},
	}
	r.Payment.Receipts = nexo.Receipts(r, "Shop", false)
	return r
}

// outboxOf lists the outbox records of kind k.
func outboxOf(t *testing.T, st *store.Store, k store.Kind) []store.Record {
	t.Helper()
	recs, err := st.List(t.Context(), 100)
	require.NoError(t, err)
	var out []store.Record
	for _, r := range recs {
		if r.Kind == k {
			out = append(out, r)
		}
	}
	return out
}

func afterSaleRecords(t *testing.T, st *store.Store, id string) []afterSaleRecord {
	t.Helper()
	tx, err := st.Txn(t.Context(), id)
	require.NoError(t, err)
	var out []afterSaleRecord
	for _, tr := range tx.Transitions {
		if tr.State == stateAfterSale {
			var r afterSaleRecord
			require.NoError(t, json.Unmarshal(tr.Data, &r))
			out = append(out, r)
		}
	}
	return out
}

// Issue 14: a chargeback PPaaS reports after the POS was answered Success is
// journaled on the payment, counted, shown by TransactionStatus (the repeated
// response's AdditionalResponse, the Result unchanged) and queued for the
// POS once — the same update redelivered (MQTT) or seen again (another event
// id, a poll) queues nothing more.
func TestAfterSaleChargebackJournaledAndNotifiedOnce(t *testing.T) {
	r := newAfterSaleRig(t, false)
	ctx := t.Context()
	id := beginPayment(t, r.j, "S1", 1234)

	ev := ppaas.Event{EventID: "e1", Type: ppaas.EventTypeStatus, TransactionID: "qr-1", ClientTransactionID: id,
		Status: ppaas.Refunded, StatusReason: "charged back by the card holder", Provider: map[string]string{"status": "CHARGED_BACK"}}
	r.j.after.finishWait = 50 * time.Millisecond
	// A payment still unfinished after the wait, decided by the engine or
	// let go by it, is left unacked, for the broker to deliver again, rather
	// than given to an engine that would ignore it.
	for _, decided := range []bool{false, true} {
		handled, err := r.j.after.event(ctx, ev, decided)
		require.ErrorContains(t, err, "left for redelivery")
		require.True(t, handled)
	}
	require.Empty(t, afterSaleRecords(t, r.j.st, id))
	// One a previous run left unfinished is the engine's (restart
	// recovery's), at once.
	unfinished, err := r.j.st.UnfinishedTxns(ctx)
	require.NoError(t, err)
	r.j.after.useRecovery(unfinished, true, time.Now())
	handled, err := r.j.after.event(ctx, ev, false)
	require.NoError(t, err)
	require.False(t, handled)
	r.j.after.useRecovery(nil, true, time.Now())
	r.j.after.finishWait = finishWait

	require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "S1"}, successResponse(t, "S1", id, 1234), time.Now()))
	for _, eid := range []string{"e1", "e1", "e2"} {
		ev.EventID = eid
		handled, err := r.j.after.event(ctx, ev, false)
		require.NoError(t, err)
		require.True(t, handled)
	}

	recs := afterSaleRecords(t, r.j.st, id)
	require.Len(t, recs, 1)
	require.Equal(t, afterChargedBack, recs[0].Kind)
	require.Equal(t, ppaas.Amount{Amount: 1234, Currency: "EUR"}, recs[0].Amount)
	require.Equal(t, map[string]int{afterChargedBack: 1}, r.counts)

	events := outboxOf(t, r.j.st, store.KindNexoEvent)
	require.Len(t, events, 1, "one POS notification")
	var pe nexo.PendingEvent
	require.NoError(t, json.Unmarshal(events[0].Payload, &pe))
	var body map[string]string
	require.NoError(t, json.Unmarshal(pe.Body, &body))
	require.Equal(t, "Completed", body["event"])
	require.Equal(t, "POS1", body["sale"])
	for _, want := range []string{"POITransactionID=" + id, "ServiceID=S1", "Update=charged_back", "Amount=12.34", "Currency=EUR", "PPaaSTransactionID=qr-1"} {
		require.Contains(t, body["details"], want)
	}

	e, ok, err := r.j.Lookup(ctx, "POS1", "S1")
	require.NoError(t, err)
	require.True(t, ok)
	resp := e.Response
	require.NotNil(t, resp)
	require.Equal(t, nexo.Success, resp.Status.Result, "the sale happened; the update is told beside it")
	require.Contains(t, resp.Status.AdditionalResponse, "charged back by the card holder after the sale: 12.34 EUR")
	require.NotEmpty(t, resp.Payment.Receipts, "the receipts stay reprintable")
}

// The refund a POS reversal makes is that reversal's outcome, not news; a
// late "approved" of a paid payment is nothing new either.
func TestAfterSaleIgnoresWhatThePOSAlreadyKnows(t *testing.T) {
	r := newAfterSaleRig(t, false)
	ctx := t.Context()
	id := beginPayment(t, r.j, "S1", 500)
	require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "S1"}, successResponse(t, "S1", id, 500), time.Now()))

	done := r.j.after.reversing(id)
	for i, st := range []ppaas.State{ppaas.Approved, ppaas.Refunded} {
		handled, err := r.j.after.event(ctx, ppaas.Event{EventID: "e" + string(rune('0'+i)), Type: ppaas.EventTypeStatus, ClientTransactionID: id, Status: st}, false)
		require.NoError(t, err)
		require.True(t, handled)
	}
	done()
	require.Empty(t, afterSaleRecords(t, r.j.st, id))
	require.Empty(t, outboxOf(t, r.j.st, store.KindNexoEvent))
	require.Empty(t, r.counts)
}

// Issue 14 item 2: a payment answered UnreachableHost whose reversal then
// settles it is notified to the POS once, with what became of the money.
func TestSettledUnknownOutcomeIsNotifiedOnce(t *testing.T) {
	r := newAfterSaleRig(t, false)
	ctx := t.Context()
	id := failedPayment(t, r.j, "U1", 999, nexo.UnreachableHost, "outcome unknown; a reversal is queued")
	text := settledText("", ppaas.Refunded)
	require.NoError(t, r.j.settle(ctx, id, afterSettled, text))
	require.NoError(t, r.j.settle(ctx, id, afterSettled, text), "the same advice carried out again (a redelivery)")

	recs := afterSaleRecords(t, r.j.st, id)
	require.Len(t, recs, 1)
	require.Equal(t, afterSettled, recs[0].Kind)
	require.Equal(t, int64(999), recs[0].Amount.Amount)
	events := outboxOf(t, r.j.st, store.KindNexoEvent)
	require.Len(t, events, 1)
	var pe nexo.PendingEvent
	require.NoError(t, json.Unmarshal(events[0].Payload, &pe))
	require.Contains(t, string(pe.Body), "Update=settled")
	require.Contains(t, string(pe.Body), "refunded at PPaaS")
	require.Equal(t, map[string]int{afterSettled: 1}, r.counts)
}

// A reversal given up (dead-lettered) or not confirmed by PPaaS past
// ForwarderConfig.EscalateAfter did not settle the payment: the POS's
// notification and the metric say what happened, never Update=settled (a POS
// reading it would take the consumer's money to be back).
func TestUnsettledReversalIsNeverNotifiedAsSettled(t *testing.T) {
	for _, c := range []struct{ kind, text string }{
		{afterReversalFailed, deadText(qr.Advice{ClientTransactionID: "x", TransactionID: "qr-1"}, "refused 8 times: HTTP 400")},
		{afterReversalUnconfirmed, stuckText(qr.Advice{ClientTransactionID: "x", TransactionID: "qr-1"}, time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))},
	} {
		t.Run(c.kind, func(t *testing.T) {
			r := newAfterSaleRig(t, false)
			ctx := t.Context()
			id := failedPayment(t, r.j, "U1", 999, nexo.UnreachableHost, "outcome unknown; a reversal is queued")
			told, err := r.j.tell(ctx, id, c.kind, c.text)
			require.NoError(t, err)
			require.True(t, told)
			told, err = r.j.tell(ctx, id, c.kind, c.text)
			require.NoError(t, err)
			require.False(t, told, "the entry says it already")

			events := outboxOf(t, r.j.st, store.KindNexoEvent)
			require.Len(t, events, 1)
			var pe nexo.PendingEvent
			require.NoError(t, json.Unmarshal(events[0].Payload, &pe))
			require.Contains(t, string(pe.Body), "Update="+c.kind)
			require.NotContains(t, string(pe.Body), "Update=settled")
			require.Contains(t, string(pe.Body), "may still be charged")
			require.Equal(t, map[string]int{c.kind: 1}, r.counts)
		})
	}
}

// A payment the POS was told failed (a Refusal here) that PPaaS reports
// approved afterwards: the consumer paid for a sale the POS believes did not
// happen. The update queues a reversal in the same commit (the reversal then
// owns the outcome), tells the POS and TransactionStatus, and is acted on
// once however often the approval is reported. A payment whose reversal is
// queued already is left to that reversal.
func TestApprovedAfterAFailureIsReversed(t *testing.T) {
	r := newAfterSaleRig(t, false)
	ctx := t.Context()
	id := failedPayment(t, r.j, "R1", 1250, nexo.Refusal, "declined by the provider")

	for _, evID := range []string{"e1", "e1", "e2"} { // a redelivery, then the same news under another id
		handled, err := r.j.after.event(ctx, ppaas.Event{EventID: evID, Type: ppaas.EventTypeStatus, ClientTransactionID: id, TransactionID: "qr-7", Status: ppaas.Approved}, false)
		require.NoError(t, err)
		require.True(t, handled)
	}
	advices := outboxOf(t, r.j.st, store.KindAdvice)
	require.Len(t, advices, 1, "one reversal, whatever the redeliveries")
	var adv qr.Advice
	require.NoError(t, json.Unmarshal(advices[0].Payload, &adv))
	require.Equal(t, qr.AdviceReverse, adv.Kind)
	require.Equal(t, id, adv.ClientTransactionID)
	require.Equal(t, "qr-7", adv.TransactionID)
	require.Equal(t, ppaas.Amount{Amount: 1250, Currency: "EUR"}, adv.Amount)

	tx, err := r.j.st.Txn(ctx, id)
	require.NoError(t, err)
	require.True(t, reversalQueued(tx), "the reversal owns the outcome")
	e, ok, err := r.j.Lookup(ctx, "POS1", "R1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, nexo.Failure, e.Response.Status.Result, "the POS's answer stands; the text tells the rest")
	require.Contains(t, e.Response.Status.AdditionalResponse, "approved at PPaaS (12.50 EUR) after the POS was told it failed (Refusal)")
	events := outboxOf(t, r.j.st, store.KindNexoEvent)
	require.Len(t, events, 1)
	var pe nexo.PendingEvent
	require.NoError(t, json.Unmarshal(events[0].Payload, &pe))
	require.Contains(t, string(pe.Body), "Update=approved_late")
	require.Equal(t, map[string]int{afterApprovedLate: 1}, r.counts)

	// The reversal carried out: the POS learns the money is back.
	require.NoError(t, r.j.settle(ctx, id, afterSettled, settledText(adv.Reason, ppaas.Refunded)))
	e, _, err = r.j.Lookup(ctx, "POS1", "R1")
	require.NoError(t, err)
	require.Equal(t, "approved at PPaaS after the POS was told the payment failed: refunded at PPaaS, the consumer has the money back", e.Response.Status.AdditionalResponse)

	// An unknown outcome with its reversal queued: the late approval is that
	// reversal's to handle, no second one.
	id2 := beginPayment(t, r.j, "U2", 700)
	tx2, err := r.j.st.Txn(ctx, id2)
	require.NoError(t, err)
	require.NoError(t, r.j.finish(ctx, tx2, failureResponse(t, "U2", id2, nexo.UnreachableHost, "outcome unknown; a reversal is queued"), time.Now(),
		&qr.Advice{Kind: qr.AdviceReverse, ClientTransactionID: id2, Reason: "timeout"}))
	handled, err := r.j.after.event(ctx, ppaas.Event{EventID: "e3", Type: ppaas.EventTypeStatus, ClientTransactionID: id2, TransactionID: "qr-8", Status: ppaas.Approved}, false)
	require.NoError(t, err)
	require.True(t, handled)
	require.Len(t, outboxOf(t, r.j.st, store.KindAdvice), 2, "only the unknown outcome's own reversal was added")
	require.Equal(t, map[string]int{afterApprovedLate: 1, afterSettled: 1}, r.counts)

	// That reversal settled finding nothing charged (and was acknowledged):
	// it owns nothing any more, and an approval reported later is reversed.
	for _, rec := range outboxOf(t, r.j.st, store.KindAdvice) {
		require.NoError(t, r.j.st.Ack(ctx, rec.Seq))
	}
	require.NoError(t, r.j.settle(ctx, id2, afterSettled, settledText("timeout", ppaas.Cancelled)))
	handled, err = r.j.after.event(ctx, ppaas.Event{EventID: "e4", Type: ppaas.EventTypeStatus, ClientTransactionID: id2, TransactionID: "qr-8", Status: ppaas.Approved}, false)
	require.NoError(t, err)
	require.True(t, handled)
	advices = outboxOf(t, r.j.st, store.KindAdvice)
	require.Len(t, advices, 1, "reversed again")
	require.Contains(t, string(advices[0].Payload), id2)
}

// Review: an approval that arrives while the payment's failure is being
// journaled (the engine let it go, the final commit is on its way) was
// dropped. The desk waits for the final response, then reverses.
func TestApprovalDuringTheFinalWriteIsNotDropped(t *testing.T) {
	r := newAfterSaleRig(t, false)
	ctx := t.Context()
	id := beginPayment(t, r.j, "W1", 900)
	got := make(chan error, 1)
	reads := r.j.st.ReadTxns()
	go func() {
		handled, err := r.j.after.event(ctx, ppaas.Event{EventID: "w1", Type: ppaas.EventTypeStatus, ClientTransactionID: id, TransactionID: "qr-w", Status: ppaas.Approved}, false)
		if err == nil && !handled {
			err = errors.New("not handled")
		}
		got <- err
	}()
	// The event waits on the unfinished entry: it reads it again and again.
	testrig.WaitFor(t, 10*time.Second, "the event re-reading the unfinished payment", func() bool { return r.j.st.ReadTxns() >= reads+3 })
	require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "W1"},
		failureResponse(t, "W1", id, nexo.Cancel, "consumer did not pay in time"), time.Now()))
	select {
	case err := <-got:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the event never returned")
	}
	require.Len(t, outboxOf(t, r.j.st, store.KindAdvice), 1, "the late approval is reversed")
	require.Equal(t, map[string]int{afterApprovedLate: 1}, r.counts)
}

// Review: an approval naming another PPaaS transaction than the one the
// payment's own create made is not acted on (reversing it would refund
// another payment).
func TestApprovalNamingAnotherTransactionIsNotReversed(t *testing.T) {
	r := newAfterSaleRig(t, false)
	ctx := t.Context()
	id := beginPayment(t, r.j, "M1", 900)
	require.NoError(t, r.j.Record(ctx, qr.Transition{ClientTransactionID: id, TransactionID: "qr-own", To: ppaas.Declined, At: time.Now()}))
	require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "M1"},
		failureResponse(t, "M1", id, nexo.Refusal, "declined"), time.Now()))
	handled, err := r.j.after.event(ctx, ppaas.Event{EventID: "m1", Type: ppaas.EventTypeStatus, ClientTransactionID: id, TransactionID: "qr-other", Status: ppaas.Approved}, false)
	require.NoError(t, err)
	require.True(t, handled)
	require.Empty(t, outboxOf(t, r.j.st, store.KindAdvice))
	require.Empty(t, r.counts)
}

// Issue 14: the digital receipt — the PaymentReceipt's lines — commits with a
// successful final response, and only then; digital_receipts off writes none.
func TestDigitalReceiptCommitsWithTheSuccess(t *testing.T) {
	for _, on := range []bool{true, false} {
		r := newAfterSaleRig(t, on)
		ctx := t.Context()
		ok := beginPayment(t, r.j, "S1", 700)
		resp := successResponse(t, "S1", ok, 700)
		require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: ok, SaleID: "POS1", ServiceID: "S1"}, resp, time.Now()))
		failedPayment(t, r.j, "S2", 700, nexo.Refusal, "declined") // no receipt

		recs := outboxOf(t, r.j.st, store.KindReceipt)
		if !on {
			require.Empty(t, recs)
			continue
		}
		require.Len(t, recs, 1, "one receipt, for the Success only")
		var d DigitalReceipt
		require.NoError(t, json.Unmarshal(recs[0].Payload, &d))
		want := resp
		require.Equal(t, ok, d.POITransactionID)
		require.Equal(t, "S1", d.ServiceID)
		require.Len(t, d.Receipts, len(want.Payment.Receipts))
		for i, rc := range want.Payment.Receipts {
			require.Equal(t, rc.DocumentQualifier, d.Receipts[i].DocumentQualifier)
			require.Equal(t, rc.Lines, d.Receipts[i].Lines)
		}
		require.True(t, strings.Contains(strings.Join(d.Receipts[0].Lines, "\n"), "Amount: 7.00 EUR"))
	}
}

// The after-sale metric's label is a closed set.
func TestAfterSaleMetricLabelsAreClosed(t *testing.T) {
	m := newMetrics()
	m.afterSaleUpdate(afterRefunded)
	m.afterSaleUpdate("anything a provider sends")
	mfs, err := m.reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "termagent_aftersale_updates_total" {
			continue
		}
		for _, mm := range mf.GetMetric() {
			got[mm.GetLabel()[0].GetValue()] = mm.GetCounter().GetValue()
		}
	}
	require.Equal(t, map[string]float64{afterRefunded: 1, labelOther: 1}, got)
}

// Pennymatic: a payment the POS was told failed, whose cancellation PPaaS
// later reports with a refund owed (the consumer had paid on the
// blockchain), is an update the POS must hear of.
func TestAfterSaleRefundOwedIsNotified(t *testing.T) {
	r := newAfterSaleRig(t, false)
	ctx := t.Context()
	id := failedPayment(t, r.j, "P1", 2500, nexo.Cancel, "the consumer did not pay in time")
	ev := ppaas.Event{EventID: "e1", Type: ppaas.EventTypeStatus, ClientTransactionID: id, Status: ppaas.Cancelled,
		Provider: map[string]string{"txhash": "ab12", "isconfirmed": "false", "refund": "owed"}}
	handled, err := r.j.after.event(ctx, ev, false)
	require.NoError(t, err)
	require.True(t, handled)
	ev.Provider = nil // a cancellation without a refund owed is no news
	ev.EventID = "e2"
	_, err = r.j.after.event(ctx, ev, false)
	require.NoError(t, err)

	recs := afterSaleRecords(t, r.j.st, id)
	require.Len(t, recs, 1)
	require.Equal(t, afterRefundOwed, recs[0].Kind)
	require.Contains(t, recs[0].Text, "refund of 25.00 EUR")
	e, _, err := r.j.Lookup(ctx, "POS1", "P1")
	require.NoError(t, err)
	resp := e.Response
	require.NotNil(t, resp)
	require.Equal(t, nexo.Failure, resp.Status.Result)
	require.Contains(t, resp.Status.AdditionalResponse, "owes the consumer a refund")
	require.Len(t, outboxOf(t, r.j.st, store.KindNexoEvent), 1)
}

// Without a pos_event_url the update is journaled and counted, and nothing is
// queued for a POS that cannot be reached.
func TestAfterSaleWithoutPOSEventURL(t *testing.T) {
	r := newAfterSaleRig(t, false)
	r.j.after.connect(nil, func(kind string) { r.counts[kind]++ })
	ctx := t.Context()
	id := beginPayment(t, r.j, "S1", 300)
	require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "S1"}, successResponse(t, "S1", id, 300), time.Now()))
	_, err := r.j.after.event(ctx, ppaas.Event{EventID: "e1", Type: ppaas.EventTypeStatus, ClientTransactionID: id, Status: ppaas.Refunded}, false)
	require.NoError(t, err)
	require.Len(t, afterSaleRecords(t, r.j.st, id), 1)
	require.Equal(t, map[string]int{afterRefunded: 1}, r.counts)
	require.Empty(t, outboxOf(t, r.j.st, store.KindNexoEvent))
}

// reserveRefund journals a refund of minor units on payment id as the refund
// desk does (its reservation on the original payment).
func reserveRefund(t *testing.T, st *store.Store, id, refundID string, minor int64) {
	t.Helper()
	mark, err := json.Marshal(refundMark{RefundID: refundID, Amount: minor, Currency: "EUR"})
	require.NoError(t, err)
	require.NoError(t, st.AppendTxn(t.Context(), id, store.Transition{At: time.Now(), State: stateRefundReserved, Data: mark}))
}

// Review: a chargeback of a payment the POS had partly refunded was taken
// for the POS's own refund and dropped (acked, no record, no notification).
// A chargeback is always news; a provider refund is news for what the POS's
// own refunds do not explain, and only a refund of what the POS refunded in
// full is not.
func TestChargebackAfterPartialRefundIsNotified(t *testing.T) {
	for _, c := range []struct {
		name     string
		byPOS    []int64 // the POS's refunds of the 12.34 EUR payment
		provider map[string]string
		reason   string
		kind     string // "": not news
		text     string
		amount   int64
	}{
		{"chargeback after a partial refund", []int64{100}, map[string]string{"status": "CHARGED_BACK"}, "charged back by the card holder",
			afterChargedBack, "charged back by the card holder after the sale: 12.34 EUR taken back; the POS had refunded 1.00 EUR of it", 1234},
		{"chargeback after a full refund", []int64{1000, 234}, map[string]string{"status": "CHARGED_BACK"}, "",
			afterChargedBack, "charged back by the card holder after the sale: 12.34 EUR taken back; the POS had refunded 12.34 EUR of it", 1234},
		{"provider refund beyond the POS's", []int64{100}, map[string]string{"status": "REFUNDED"}, "",
			afterRefunded, "refunded at the provider after the sale: 11.34 EUR back to the consumer, besides the 1.00 EUR the POS refunded", 1134},
		{"the POS refunded it all", []int64{1000, 234}, map[string]string{"status": "REFUNDED"}, "", "", "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newAfterSaleRig(t, false)
			ctx := t.Context()
			id := beginPayment(t, r.j, "S1", 1234)
			require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "S1"}, successResponse(t, "S1", id, 1234), time.Now()))
			for i, minor := range c.byPOS {
				reserveRefund(t, r.j.st, id, "refund-"+string(rune('1'+i)), minor)
			}
			ev := ppaas.Event{EventID: "cb1", Type: ppaas.EventTypeStatus, TransactionID: "qr-1", ClientTransactionID: id,
				Status: ppaas.Refunded, StatusReason: c.reason, Provider: c.provider}
			handled, err := r.j.after.event(ctx, ev, false)
			require.NoError(t, err)
			require.True(t, handled)

			recs := afterSaleRecords(t, r.j.st, id)
			if c.kind == "" {
				require.Empty(t, recs)
				require.Empty(t, outboxOf(t, r.j.st, store.KindNexoEvent))
				return
			}
			require.Len(t, recs, 1, "the update is journaled")
			require.Equal(t, c.kind, recs[0].Kind)
			require.Equal(t, c.amount, recs[0].Amount.Amount)
			require.True(t, strings.HasPrefix(recs[0].Text, c.text), recs[0].Text)
			events := outboxOf(t, r.j.st, store.KindNexoEvent)
			require.Len(t, events, 1, "the POS is notified")
			var pe nexo.PendingEvent
			require.NoError(t, json.Unmarshal(events[0].Payload, &pe))
			require.Contains(t, string(pe.Body), "Update="+c.kind)
			e, ok, err := r.j.Lookup(ctx, "POS1", "S1")
			require.NoError(t, err)
			require.True(t, ok)
			require.Contains(t, e.Response.Status.AdditionalResponse, c.text, "TransactionStatus tells it")
		})
	}
}

// Review: PPaaS events may name a payment by its PPaaS transactionId alone
// (ppaas.DecodeEvent takes either id). A chargeback so named was not the
// after-sale desk's (it needed the clientTransactionId) and the engine then
// dropped it, nothing being in flight. The journal indexes each payment under
// its PPaaS id, so the update is journaled and notified all the same.
func TestChargebackByPPaaSIDOnlyIsNotified(t *testing.T) {
	r := newAfterSaleRig(t, false)
	ctx := t.Context()
	id := beginPayment(t, r.j, "S1", 1234)
	for _, to := range []ppaas.State{ppaas.Created, ppaas.Approved} { // as the QR engine journals them
		require.NoError(t, r.j.Record(ctx, qr.Transition{ClientTransactionID: id, TransactionID: "qr-1", To: to, At: time.Now(), Source: "event"}))
	}
	require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "S1"}, successResponse(t, "S1", id, 1234), time.Now()))

	ev := ppaas.Event{EventID: "cb1", Type: ppaas.EventTypeStatus, TransactionID: "qr-1",
		Status: ppaas.Refunded, StatusReason: "charged back by the card holder", Provider: map[string]string{"status": "CHARGED_BACK"}}
	handled, err := r.j.after.event(ctx, ev, false)
	require.NoError(t, err)
	require.True(t, handled, "the after-sale desk owns an update of a finished payment")
	recs := afterSaleRecords(t, r.j.st, id)
	require.Len(t, recs, 1)
	require.Equal(t, afterChargedBack, recs[0].Kind)
	require.Len(t, outboxOf(t, r.j.st, store.KindNexoEvent), 1, "the POS is notified")
	e, ok, err := r.j.Lookup(ctx, "POS1", "S1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Contains(t, e.Response.Status.AdditionalResponse, "charged back by the card holder after the sale: 12.34 EUR taken back")

	ev.TransactionID, ev.EventID = "qr-unknown", "cb2"
	handled, err = r.j.after.event(ctx, ev, false)
	require.NoError(t, err)
	require.False(t, handled, "a PPaaS id the journal does not know is the engine's")
}

// Review: the MQTT event was marked seen (a deferred write) before the
// after-sale desk journaled it; when that write failed (the store closing at
// shutdown), the mark still committed, and the redelivery of the next session
// was acked as a duplicate and dropped. The event is marked only once
// applied, as the Subscriber does (qr.TestEventMarkedSeenOnlyOnceApplied).
func TestAfterSaleEventNotMarkedSeenWhenItsWriteFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "termagent.db")
	st := openAgentStore(t, path)
	r := newAfterSaleRigOn(t, st, false)
	ctx := t.Context()
	id := beginPayment(t, r.j, "S1", 1234)
	require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "S1"}, successResponse(t, "S1", id, 1234), time.Now()))
	ev := ppaas.Event{EventID: "cb1", Type: ppaas.EventTypeStatus, TransactionID: "qr-1", ClientTransactionID: id,
		Status: ppaas.Refunded, StatusReason: "charged back by the card holder", Provider: map[string]string{"status": "CHARGED_BACK"}}

	// The Subscriber's steps: seen? apply; mark once applied.
	seen, err := events{st: st}.SeenEvent(ctx, ev.EventID)
	require.NoError(t, err)
	require.False(t, seen)
	require.NoError(t, st.Close()) // shutdown while the event is being applied
	handled, err := r.j.after.event(ctx, ev, false)
	require.True(t, handled)
	require.ErrorIs(t, err, store.ErrClosed, "not applied: the Subscriber leaves it unacked and does not mark it")

	// Next session: the broker redelivers it.
	st = openAgentStore(t, path)
	r = newAfterSaleRigOn(t, st, false)
	seen, err = events{st: st}.SeenEvent(ctx, ev.EventID)
	require.NoError(t, err)
	require.False(t, seen, "the redelivery is applied, not dropped as a duplicate")
	handled, err = r.j.after.event(ctx, ev, false)
	require.NoError(t, err)
	require.True(t, handled)
	require.NoError(t, events{st: st}.MarkEvent(ctx, ev.EventID))
	require.NoError(t, st.Flush(ctx))
	seen, err = events{st: st}.SeenEvent(ctx, ev.EventID)
	require.NoError(t, err)
	require.True(t, seen)
	require.Len(t, afterSaleRecords(t, st, id), 1)
	require.Len(t, outboxOf(t, st, store.KindNexoEvent), 1, "the POS is notified once")
}

// An update journaled for a PPaaS event is not journaled again when the
// event comes back (a mark lost in a crash), even if what it would say now
// differs: the after-sale write is idempotent by event id.
func TestAfterSaleEventRedeliveredIsJournaledOnce(t *testing.T) {
	r := newAfterSaleRig(t, false)
	ctx := t.Context()
	id := beginPayment(t, r.j, "S1", 1234)
	require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "S1"}, successResponse(t, "S1", id, 1234), time.Now()))
	reserveRefund(t, r.j.st, id, "refund-1", 100)
	ev := ppaas.Event{EventID: "e1", Type: ppaas.EventTypeStatus, TransactionID: "qr-1", ClientTransactionID: id,
		Status: ppaas.Refunded, Provider: map[string]string{"status": "REFUNDED"}}
	_, err := r.j.after.event(ctx, ev, false)
	require.NoError(t, err)
	reserveRefund(t, r.j.st, id, "refund-2", 100) // the text the event would give changes
	_, err = r.j.after.event(ctx, ev, false)
	require.NoError(t, err)
	recs := afterSaleRecords(t, r.j.st, id)
	require.Len(t, recs, 1)
	require.Equal(t, int64(1134), recs[0].Amount.Amount)
	require.Len(t, outboxOf(t, r.j.st, store.KindNexoEvent), 1)
}
