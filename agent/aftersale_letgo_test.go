package agent

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/display"
	"github.com/termagent/termagent/internal/testrig"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// idOnlyRefund is a provider refund naming the payment by its PPaaS id only.
var idOnlyRefund = ppaas.Event{EventID: "rf", Type: ppaas.EventTypeStatus, TransactionID: "qr-r", Status: ppaas.Refunded, Sequence: 4,
	StatusReason: "refunded by the provider after the sale"}

// payUntilReturned starts a payment the rig's PPaaS leaves awaiting the
// consumer, approves it by event and returns once Pay has returned (the
// engine has let it go); its answer is not journaled.
func payUntilReturned(t *testing.T, r *raceRig, serviceID string) string {
	t.Helper()
	id := beginPayment(t, r.j, serviceID, 2000)
	pay := make(chan qr.Outcome, 1)
	go func() {
		out, _ := r.engine.Pay(context.Background(), qr.PaymentRequest{Brand: "KB", Amount: ppaas.Amount{Amount: 2000, Currency: "EUR"}, ClientTransactionID: id})
		pay <- out
	}()
	approved := ppaas.Event{EventID: "ap", Type: ppaas.EventTypeStatus, ClientTransactionID: id, TransactionID: "qr-r", Status: ppaas.Approved, Sequence: 3}
	testrig.WaitFor(t, 10*time.Second, "Pay registering the payment", func() bool { return r.engine.InFlight(approved) })
	require.NoError(t, r.router.HandleEvent(t.Context(), approved))
	select {
	case out := <-pay:
		require.Equal(t, qr.ResultApproved, out.Result)
	case <-time.After(10 * time.Second):
		t.Fatal("Pay never returned")
	}
	return id
}

func toldOnce(t *testing.T, r *raceRig, id string) {
	t.Helper()
	recs := afterSaleRecords(t, r.j.st, id)
	require.Len(t, recs, 1, "the refund is journaled once")
	require.Equal(t, afterRefunded, recs[0].Kind)
	require.Len(t, outboxOf(t, r.j.st, store.KindNexoEvent), 1, "the POS is told once")
}

// Review: an event naming a payment by its PPaaS transactionId only, while
// the payment's PPaaS id is not indexed in the journal yet (the index is a
// deferred write that commits with the final response), found nothing there
// and went to the engine, which ignored it: acked and lost. The router gives
// the desk the payment's clientTransactionId when the engine knows it, and
// the desk commits the queued index and looks again when it does not.
func TestIDOnlyUpdateOfAnUnjournaledPaymentIsNotLost(t *testing.T) {
	t.Run("decided, Pay held on its screen", func(t *testing.T) {
		var r *raceRig
		var got <-chan error
		r = newRaceRig(t, ppaas.Approved, func(s display.Screen) {
			if s.State == string(ppaas.Approved) && got == nil {
				got = r.handleHeld(t, idOnlyRefund)
			}
		})
		id := beginPayment(t, r.j, "B1", 2000)
		out, err := r.engine.Pay(t.Context(), qr.PaymentRequest{Brand: "KB", Amount: ppaas.Amount{Amount: 2000, Currency: "EUR"}, ClientTransactionID: id})
		require.NoError(t, err)
		require.Equal(t, qr.ResultApproved, out.Result)
		require.NotNil(t, got, "the approved screen was drawn")
		require.NoError(t, r.j.Finish(t.Context(), nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "B1"}, successResponse(t, "B1", id, 2000), time.Now()))
		routerDone(t, got)
		toldOnce(t, r, id)
		require.NoError(t, r.router.HandleEvent(t.Context(), idOnlyRefund), "a redelivery")
		toldOnce(t, r, id)
	})

	t.Run("Pay returned, its answer not journaled", func(t *testing.T) {
		r := newRaceRig(t, ppaas.AwaitingConsumer, nil)
		id := payUntilReturned(t, r, "A1")
		got := r.handleHeld(t, idOnlyRefund)
		require.NoError(t, r.j.Finish(t.Context(), nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "A1"}, successResponse(t, "A1", id, 2000), time.Now()))
		routerDone(t, got)
		toldOnce(t, r, id)
	})

	t.Run("decided but not in the journal", func(t *testing.T) {
		a := newAfterSale(openAgentStore(t, filepath.Join(t.TempDir(), "termagent.db")), slog.New(slog.DiscardHandler))
		handled, err := a.event(t.Context(), idOnlyRefund, true)
		require.True(t, handled)
		require.Error(t, err, "left unacked, never handed to the engine to ignore")
		handled, err = a.event(t.Context(), idOnlyRefund, false)
		require.False(t, handled, "a payment nobody knows: the engine's to log")
		require.NoError(t, err)
	})
}

// Review: after Pay returned (the engine let the payment go, so it is not
// "decided" there) and before its answer was journaled, an update whose wait
// for the answer timed out, or whose context ended, was handed to the engine,
// which ignored it: acked and lost. It is left unacked (an error) for the
// broker to redeliver; the redelivery, once the answer is journaled, is told.
// A payment a previous run left unfinished is restart recovery's: its event
// goes to the engine at once, without the wait that holds the MQTT reader.
func TestUpdateOfAPaymentLetGoBeforeItsAnswerIsLeftUnacked(t *testing.T) {
	refunded := func(id string) ppaas.Event {
		ev := idOnlyRefund
		ev.ClientTransactionID = id
		return ev
	}
	t.Run("answer slower than the wait", func(t *testing.T) {
		r := newRaceRig(t, ppaas.AwaitingConsumer, nil)
		r.j.after.finishWait = 50 * time.Millisecond // stands for a Finish slower than 5 s
		id := payUntilReturned(t, r, "A1")
		require.Error(t, r.router.HandleEvent(t.Context(), refunded(id)))
		require.Error(t, r.router.HandleEvent(t.Context(), idOnlyRefund), "named by its PPaaS id only")
		require.NoError(t, r.j.Finish(t.Context(), nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "A1"}, successResponse(t, "A1", id, 2000), time.Now()))
		require.Empty(t, afterSaleRecords(t, r.j.st, id))
		require.NoError(t, r.router.HandleEvent(t.Context(), refunded(id)), "the redelivery")
		toldOnce(t, r, id)
	})

	t.Run("context cancelled", func(t *testing.T) {
		r := newRaceRig(t, ppaas.AwaitingConsumer, nil)
		id := payUntilReturned(t, r, "C1")
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		require.ErrorIs(t, r.router.HandleEvent(ctx, refunded(id)), context.Canceled)
		require.NoError(t, r.j.Finish(t.Context(), nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "C1"}, successResponse(t, "C1", id, 2000), time.Now()))
		require.NoError(t, r.router.HandleEvent(t.Context(), refunded(id)), "the redelivery")
		toldOnce(t, r, id)
	})

	t.Run("restart recovery's payment is not waited for", func(t *testing.T) {
		r := newRaceRig(t, ppaas.AwaitingConsumer, nil)
		r.j.after.finishWait = time.Minute
		id := beginPayment(t, r.j, "R1", 2000)
		unfinished, err := r.j.st.UnfinishedTxns(t.Context())
		require.NoError(t, err)
		r.j.after.useRecovery(unfinished, true, time.Now())
		began := time.Now()
		require.NoError(t, r.router.HandleEvent(t.Context(), refunded(id)), "the engine's: recovery reads the state from PPaaS")
		require.Less(t, time.Since(began), 5*time.Second, "not held for the wait")
		require.Empty(t, afterSaleRecords(t, r.j.st, id))

		// The listing failed: a payment begun before this run is taken for
		// recovery's, one begun in this run is waited for.
		r.j.after.useRecovery(nil, false, time.Now())
		require.NoError(t, r.router.HandleEvent(t.Context(), refunded(id)))
		r.j.after.useRecovery(nil, false, time.Now().Add(-time.Hour))
		r.j.after.finishWait = 20 * time.Millisecond
		require.Error(t, r.router.HandleEvent(t.Context(), refunded(id)))
	})
}

// Review: a payment of this run whose final response could not be journaled
// (journal.Finish failed) stays unfinished until restart recovery; every
// event naming it waited 5 s and failed, and each failure ends the MQTT
// session: one payment held back every event. Such a payment is recovery's:
// its events are not waited for and do not fail.
func TestEventOfAPaymentWhoseFinishFailedIsNotWaitedFor(t *testing.T) {
	r := newRaceRig(t, ppaas.AwaitingConsumer, nil)
	r.j.after.finishWait = 2 * time.Second
	unfinished, err := r.j.st.UnfinishedTxns(t.Context())
	require.NoError(t, err)
	r.j.after.useRecovery(unfinished, true, time.Now())
	id := payUntilReturned(t, r, "F1") // Pay returned approved; its Finish not journaled
	r.j.after.finishFailed(id)         // as journal.Finish does when its write fails
	ev := idOnlyRefund
	ev.ClientTransactionID = id
	for i := range 3 {
		began := time.Now()
		require.NoError(t, r.router.HandleEvent(t.Context(), ev), "delivery %d", i)
		require.Less(t, time.Since(began), time.Second, "not waited for")
	}
}

// An event already waiting for its payment's final response when that
// response's write fails stops waiting at once: the payment is restart
// recovery's (as for an event arriving after the failure), not held for
// finishWait.
func TestEventWaitingWhenFinishFailsStopsWaiting(t *testing.T) {
	r := newRaceRig(t, ppaas.AwaitingConsumer, nil)
	r.j.after.finishWait = time.Minute
	unfinished, err := r.j.st.UnfinishedTxns(t.Context())
	require.NoError(t, err)
	r.j.after.useRecovery(unfinished, true, time.Now())
	id := payUntilReturned(t, r, "F2") // Pay returned approved; its Finish not journaled
	ev := idOnlyRefund
	ev.ClientTransactionID = id
	handled := make(chan error, 1)
	go func() { handled <- r.router.HandleEvent(t.Context(), ev) }()
	select {
	case err := <-handled:
		t.Fatalf("the event did not wait for the final response: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	failedAt := time.Now()
	r.j.after.finishFailed(id) // as journal.Finish does when its write fails
	select {
	case err := <-handled:
		require.NoError(t, err)
		require.Less(t, time.Since(failedAt), 2*time.Second)
	case <-time.After(10 * time.Second):
		t.Fatal("the event still waits after its payment's Finish failed")
	}
}
