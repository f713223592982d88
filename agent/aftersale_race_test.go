package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
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

// screenFunc is a qr.Display drawn in the engine's own goroutine, so a test
// can hold the payment at a screen.
type screenFunc func(display.Screen)

func (f screenFunc) Show(_ context.Context, s display.Screen) error { f(s); return nil }

// raceRig is the agent's event path around one payment: the engine (its
// create answered by a fake PPaaS), the journal and after-sale desk on a real
// store, and the router the MQTT subscriber calls.
type raceRig struct {
	*afterSaleRig
	engine *qr.Engine
	router eventRouter
}

func newRaceRig(t *testing.T, created ppaas.State, show func(display.Screen)) *raceRig {
	t.Helper()
	st := openAgentStore(t, filepath.Join(t.TempDir(), "termagent.db"))
	r := newAfterSaleRigOn(t, st, false)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var cr ppaas.CreateRequest
		if req.Method != http.MethodPost || json.NewDecoder(req.Body).Decode(&cr) != nil {
			http.Error(w, `{"error":"not_found"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(ppaas.Transaction{TransactionID: "qr-r", ClientTransactionID: cr.ClientTransactionID, Status: created, Sequence: 2,
			PaymentType: cr.PaymentType, PaymentScenario: cr.PaymentScenario, PaymentAmount: cr.PaymentAmount})
	}))
	t.Cleanup(srv.Close)
	var disp qr.Display
	if show != nil {
		disp = screenFunc(show)
	}
	e, err := qr.NewEngine(qr.Config{Brands: map[string]qr.Method{"KB": {PaymentType: "KB", Scenario: ppaas.ConsumerScan}}, PollAfter: time.Hour, Timeout: time.Minute},
		qr.NewClient(srv.Client(), srv.URL, qr.Retry{Attempts: 1}), r.j, advisor{st: st, held: r.j.held}, disp)
	require.NoError(t, err)
	return &raceRig{afterSaleRig: r, engine: e, router: eventRouter{engine: e, after: r.j.after}}
}

// handleHeld hands ev to the router in another goroutine and returns once
// the router has either returned or is waiting for the payment's final
// response (re-reading its journal entry); the router's answer comes on the
// channel.
func (r *raceRig) handleHeld(t *testing.T, ev ppaas.Event) <-chan error {
	t.Helper()
	reads := r.j.st.ReadTxns()
	got := make(chan error, 1)
	go func() { got <- r.router.HandleEvent(context.Background(), ev) }()
	deadline := time.After(10 * time.Second)
	for r.j.st.ReadTxns() < reads+3 {
		select {
		case err := <-got:
			got <- err
			return got
		case <-deadline:
			t.Error("the event neither returned nor waited for the payment")
			return got
		case <-time.After(time.Millisecond):
		}
	}
	return got
}

func routerDone(t *testing.T, got <-chan error) {
	t.Helper()
	select {
	case err := <-got:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the event never returned")
	}
}

// An update of a payment the engine has decided but not let
// go — Pay has not returned, or it has and its answer is being journaled —
// was given to the engine, which logged "late update after final state
// ignored": acked and lost. The desk now waits for the final response and
// journals the update once; redeliveries (of the update, and of the event
// that decided the payment) change nothing.
func TestUpdateOfADecidedPaymentInFlightIsNotLost(t *testing.T) {
	refunded := func(id string) ppaas.Event {
		return ppaas.Event{EventID: "rf", Type: ppaas.EventTypeStatus, ClientTransactionID: id, TransactionID: "qr-r", Status: ppaas.Refunded, Sequence: 4,
			StatusReason: "refunded by the provider after the sale"}
	}
	check := func(t *testing.T, r *raceRig, id, serviceID string) {
		t.Helper()
		recs := afterSaleRecords(t, r.j.st, id)
		require.Len(t, recs, 1)
		require.Equal(t, afterRefunded, recs[0].Kind)
		require.Len(t, outboxOf(t, r.j.st, store.KindNexoEvent), 1, "the POS is told once")
		e, ok, err := r.j.Lookup(t.Context(), "POS1", serviceID)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, nexo.Success, e.Response.Status.Result)
		require.Contains(t, e.Response.Status.AdditionalResponse, "refunded at the provider after the sale: 20.00 EUR")
	}

	t.Run("before Pay returns", func(t *testing.T) {
		var r *raceRig
		var id string
		var got <-chan error
		r = newRaceRig(t, ppaas.Approved, func(s display.Screen) {
			if s.State == string(ppaas.Approved) && got == nil {
				got = r.handleHeld(t, refunded(id)) // Pay is held here, the payment decided
			}
		})
		id = beginPayment(t, r.j, "B1", 2000)
		out, err := r.engine.Pay(t.Context(), qr.PaymentRequest{Brand: "KB", Amount: ppaas.Amount{Amount: 2000, Currency: "EUR"}, ClientTransactionID: id})
		require.NoError(t, err)
		require.Equal(t, qr.ResultApproved, out.Result)
		require.NotNil(t, got, "the approved screen was drawn")
		require.NoError(t, r.j.Finish(t.Context(), nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "B1"}, successResponse(t, "B1", id, 2000), time.Now()))
		routerDone(t, got)
		check(t, r, id, "B1")
		require.NoError(t, r.router.HandleEvent(t.Context(), refunded(id)))
		check(t, r, id, "B1")
	})

	t.Run("after Pay returned, before its answer is journaled", func(t *testing.T) {
		r := newRaceRig(t, ppaas.AwaitingConsumer, nil)
		id := beginPayment(t, r.j, "A1", 2000)
		pay := make(chan qr.Outcome, 1)
		go func() {
			out, _ := r.engine.Pay(context.Background(), qr.PaymentRequest{Brand: "KB", Amount: ppaas.Amount{Amount: 2000, Currency: "EUR"}, ClientTransactionID: id})
			pay <- out
		}()
		approved := ppaas.Event{EventID: "ap", Type: ppaas.EventTypeStatus, ClientTransactionID: id, TransactionID: "qr-r", Status: ppaas.Approved, Sequence: 3}
		testrig.WaitFor(t, 10*time.Second, "Pay registering the payment", func() bool { return r.engine.InFlight(approved) })
		require.NoError(t, r.router.HandleEvent(t.Context(), approved))
		var out qr.Outcome
		select {
		case out = <-pay:
		case <-time.After(10 * time.Second):
			t.Fatal("Pay never returned")
		}
		require.Equal(t, qr.ResultApproved, out.Result)
		got := r.handleHeld(t, refunded(id))
		// The approval's redelivery, now the payment is let go: recognised.
		dup := r.handleHeld(t, approved)
		require.NoError(t, r.j.Finish(t.Context(), nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "A1"}, successResponse(t, "A1", id, 2000), time.Now()))
		routerDone(t, got)
		routerDone(t, dup)
		check(t, r, id, "A1")
		require.NoError(t, r.router.HandleEvent(t.Context(), refunded(id)))
		require.NoError(t, r.router.HandleEvent(t.Context(), approved))
		check(t, r, id, "A1")
	})

	t.Run("declined, then approved before Pay returns", func(t *testing.T) {
		var r *raceRig
		var id string
		var got <-chan error
		r = newRaceRig(t, ppaas.Declined, func(s display.Screen) {
			if s.State == string(ppaas.Declined) && got == nil {
				got = r.handleHeld(t, ppaas.Event{EventID: "late", Type: ppaas.EventTypeStatus, ClientTransactionID: id, TransactionID: "qr-r", Status: ppaas.Approved, Sequence: 3})
			}
		})
		id = beginPayment(t, r.j, "D1", 2000)
		out, err := r.engine.Pay(t.Context(), qr.PaymentRequest{Brand: "KB", Amount: ppaas.Amount{Amount: 2000, Currency: "EUR"}, ClientTransactionID: id})
		require.NoError(t, err)
		require.Equal(t, qr.ResultDeclined, out.Result)
		require.NotNil(t, got)
		require.NoError(t, r.j.Finish(t.Context(), nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "D1"}, failureResponse(t, "D1", id, nexo.Refusal, "declined"), time.Now()))
		routerDone(t, got)
		require.Len(t, outboxOf(t, r.j.st, store.KindAdvice), 1, "the late approval is reversed")
		require.Equal(t, map[string]int{afterApprovedLate: 1}, r.counts)
	})
}
