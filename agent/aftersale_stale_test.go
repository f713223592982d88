package agent

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// An approval older than the decision the journal holds (a
// redelivered or reordered event: approved at sequence 2, declined at 3) was
// taken for a late approval: the desk queued a reversal advice and told the
// POS "approved at PPaaS after the POS was told it failed". It is not news.
// A later approval (a higher sequence: PPaaS overturned its decline) still is.
func TestStaleApprovalRaisesNoNews(t *testing.T) {
	r := newAfterSaleRig(t, false)
	ctx := t.Context()
	id := beginPayment(t, r.j, "D1", 900)
	require.NoError(t, r.j.Record(ctx, qr.Transition{ClientTransactionID: id, TransactionID: "qr-d", From: ppaas.Created, To: ppaas.Pending, At: time.Now(), Source: "event", EventID: "p1", Sequence: 1}))
	require.NoError(t, r.j.Record(ctx, qr.Transition{ClientTransactionID: id, TransactionID: "qr-d", From: ppaas.Pending, To: ppaas.Declined, At: time.Now(), Source: "event", EventID: "d3", Sequence: 3}))
	require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "D1"},
		failureResponse(t, "D1", id, nexo.Refusal, "declined by the provider"), time.Now()))

	for _, seq := range []int64{2, 3} {
		handled, err := r.j.after.event(ctx, ppaas.Event{EventID: "a-old", Type: ppaas.EventTypeStatus, ClientTransactionID: id, TransactionID: "qr-d", Status: ppaas.Approved, Sequence: seq}, false)
		require.NoError(t, err)
		require.True(t, handled, "the desk takes it (and drops it): acked")
	}
	require.Empty(t, outboxOf(t, r.j.st, store.KindAdvice), "no reversal of a payment PPaaS declined")
	require.Empty(t, outboxOf(t, r.j.st, store.KindNexoEvent), "nothing told to the POS")
	require.Empty(t, afterSaleRecords(t, r.j.st, id))
	e, _, err := r.j.Lookup(ctx, "POS1", "D1")
	require.NoError(t, err)
	require.Equal(t, "declined by the provider", e.Response.Status.AdditionalResponse)

	// PPaaS overturns its decline: a real late approval, reversed and told.
	handled, err := r.j.after.event(ctx, ppaas.Event{EventID: "a4", Type: ppaas.EventTypeStatus, ClientTransactionID: id, TransactionID: "qr-d", Status: ppaas.Approved, Sequence: 4}, false)
	require.NoError(t, err)
	require.True(t, handled)
	require.Len(t, outboxOf(t, r.j.st, store.KindAdvice), 1)
	require.Equal(t, map[string]int{afterApprovedLate: 1}, r.counts)
}

// A provider refund reported with a sequence older than the approval the
// journal holds is no update of it either (a replay from before the sale);
// one with a newer sequence is.
func TestStaleRefundRaisesNoNews(t *testing.T) {
	r := newAfterSaleRig(t, false)
	ctx := t.Context()
	id := beginPayment(t, r.j, "S1", 1234)
	require.NoError(t, r.j.Record(ctx, qr.Transition{ClientTransactionID: id, TransactionID: "qr-1", From: ppaas.Created, To: ppaas.Approved, At: time.Now(), Source: "event", EventID: "ap", Sequence: 5}))
	require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "S1"}, successResponse(t, "S1", id, 1234), time.Now()))

	ev := ppaas.Event{EventID: "rf-old", Type: ppaas.EventTypeStatus, ClientTransactionID: id, TransactionID: "qr-1", Status: ppaas.Refunded, Sequence: 4}
	handled, err := r.j.after.event(ctx, ev, false)
	require.NoError(t, err)
	require.True(t, handled)
	require.Empty(t, afterSaleRecords(t, r.j.st, id))

	ev.EventID, ev.Sequence = "rf", 6
	handled, err = r.j.after.event(ctx, ev, false)
	require.NoError(t, err)
	require.True(t, handled)
	recs := afterSaleRecords(t, r.j.st, id)
	require.Len(t, recs, 1)
	require.Equal(t, afterRefunded, recs[0].Kind)
}

// Review: on a platform that sends no sequence, an approval of a declined
// payment that was applied already (the event log holds its id: it was no
// news then, a reversal owning the outcome) and is delivered again raised
// approved_late: a second reversal and a false "approved after the POS was
// told it failed". An approval whose id the journal or the event log holds
// is not news; another approval still is.
func TestRedeliveredApprovalWithoutSequenceRaisesNoNews(t *testing.T) {
	r := newAfterSaleRig(t, false)
	ctx := t.Context()
	id := beginPayment(t, r.j, "D1", 900)
	require.NoError(t, r.j.Record(ctx, qr.Transition{ClientTransactionID: id, TransactionID: "qr-d", From: ppaas.Created, To: ppaas.Declined, At: time.Now(), Source: "event", EventID: "d"}))
	require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "D1"},
		failureResponse(t, "D1", id, nexo.Refusal, "declined by the provider"), time.Now()))
	events := events{st: r.j.st}
	require.NoError(t, events.MarkEvent(ctx, "a-applied"))
	require.NoError(t, r.j.st.Flush(ctx))

	for _, eid := range []string{"a-applied", "d"} {
		handled, err := r.j.after.event(ctx, ppaas.Event{EventID: eid, Type: ppaas.EventTypeStatus, ClientTransactionID: id, TransactionID: "qr-d", Status: ppaas.Approved}, false)
		require.NoError(t, err)
		require.True(t, handled, eid)
	}
	require.Empty(t, outboxOf(t, r.j.st, store.KindAdvice), "no reversal")
	require.Empty(t, afterSaleRecords(t, r.j.st, id))

	handled, err := r.j.after.event(ctx, ppaas.Event{EventID: "a-new", Type: ppaas.EventTypeStatus, ClientTransactionID: id, TransactionID: "qr-d", Status: ppaas.Approved}, false)
	require.NoError(t, err)
	require.True(t, handled)
	require.Len(t, outboxOf(t, r.j.st, store.KindAdvice), 1, "an approval not seen before is news")
	require.Equal(t, map[string]int{afterApprovedLate: 1}, r.counts)
}

// Review: a journal read that failed while classifying an update was taken
// for "nothing new": an approval of a payment the POS was told failed was
// acked (and marked seen), and no reversal was ever queued. It is an error
// now: the event stays unacked and is classified again on redelivery.
func TestClassifyLeavesAStoreErrorUnacked(t *testing.T) {
	st := openStore(t, store.Options{NoSync: true})
	a := newAfterSale(st, quietLog())
	failed := &nexo.Response{Status: nexo.ResponseStatus{Result: nexo.Failure}}
	paid := &nexo.Response{Status: nexo.ResponseStatus{Result: nexo.Success}, Payment: &nexo.PaymentResponse{Result: &nexo.PaymentResult{AuthorizedAmount: nexo.Amount{Minor: 100, Currency: "EUR"}}}}
	txn := store.Txn{TxnRef: store.TxnRef{ID: "p1", SaleID: "POS1", ServiceID: "1"}}
	require.NoError(t, st.Close()) // every read fails from here
	_, ok, err := a.classify(t.Context(), txn, failed, ppaas.Event{EventID: "e1", Status: ppaas.Approved, TransactionID: "qr-1"}, false)
	require.Error(t, err, "approval of a failed payment: the reversal check could not read the journal")
	require.False(t, ok)
	_, ok, err = a.classify(t.Context(), txn, paid, ppaas.Event{EventID: "e2", Status: ppaas.Refunded, TransactionID: "qr-1"}, false)
	require.Error(t, err, "refund: the POS's own refunds could not be read")
	require.False(t, ok)
}
