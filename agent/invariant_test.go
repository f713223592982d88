package agent

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

func openAgentStore(t testing.TB, path string) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), path, store.Options{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// beginPayment journals the start of a KB payment as the Nexo server does and
// returns its POI transaction id.
func beginPayment(t *testing.T, j journal, serviceID string, minor int64) string {
	t.Helper()
	req := &nexo.Request{
		Header: nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: nexo.CategoryPayment, Type: nexo.TypeRequest,
			ServiceID: serviceID, SaleID: "POS1", POIID: "DX8000-1"},
		Payment: &nexo.PaymentRequest{SaleTransactionID: nexo.TransactionID{ID: "ORDER-" + serviceID, TimeStamp: time.Now().UTC()}, Type: nexo.PaymentNormal,
			Amount: nexo.Amount{Minor: minor, Currency: "EUR"}, AllowedBrands: []string{"KB"}},
	}
	now := time.Now()
	id, err := j.Begin(t.Context(), nexo.JournalEntry{SaleID: "POS1", ServiceID: serviceID, Category: nexo.CategoryPayment,
		RequestHash: "h-" + serviceID, Request: req, State: nexo.TxInProgress, Started: now, Updated: now})
	require.NoError(t, err)
	tx, ok, err := j.st.TxnByServiceID(t.Context(), "POS1", serviceID)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, tx.ID, id, "Begin returns the id it journaled")
	return id
}

// failedPayment journals a payment of minor EUR cents begun and answered
// with a Failure (cond, text), as the POS was told it; it returns its id.
func failedPayment(t *testing.T, j journal, serviceID string, minor int64, cond nexo.ErrorCondition, text string) string {
	t.Helper()
	id := beginPayment(t, j, serviceID, minor)
	require.NoError(t, j.Finish(t.Context(), nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: serviceID},
		failureResponse(t, serviceID, id, cond, text), time.Now()))
	return id
}

func failureResponse(t *testing.T, serviceID, poiID string, cond nexo.ErrorCondition, text string) *nexo.Response {
	t.Helper()
	return &nexo.Response{
		Header:  nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: nexo.CategoryPayment, Type: nexo.TypeResponse, SaleID: "POS1", ServiceID: serviceID, POIID: "DX8000-1"},
		Status:  nexo.ResponseStatus{Result: nexo.Failure, ErrorCondition: cond, AdditionalResponse: text},
		Payment: &nexo.PaymentResponse{POITransactionID: nexo.TransactionID{ID: poiID}},
	}
}

// Issue 10 item 1: the reversal advice the engine queues for an unknown
// outcome is not in the file before the final response that explains it; both
// commit in one bbolt transaction. A crash between the two (before: the advice
// durable, the payment unfinished; recovery then journaled Success while the
// advice refunded the consumer) leaves neither.
func TestReversalAdviceCommitsWithItsFinalResponse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "termagent.db")
	st := openAgentStore(t, path)
	held := newHeldAdvices()
	j := journal{st: st, held: held}
	adv := advisor{st: st, held: held}
	id := beginPayment(t, j, "U1", 2000)

	require.NoError(t, adv.Advise(t.Context(), qr.Advice{Kind: qr.AdviceReverse, ClientTransactionID: id, TransactionID: "qr-1", Reason: "cancel: unreachable"}))
	require.NoError(t, st.Close()) // the crash: the final response never came
	st = openAgentStore(t, path)
	recs, err := st.List(t.Context(), 10)
	require.NoError(t, err)
	require.Empty(t, recs, "no advice without its final response")
	unfinished, err := st.UnfinishedTxns(t.Context())
	require.NoError(t, err)
	require.Len(t, unfinished, 1, "recovery finds the payment and asks PPaaS")

	// Without the crash, advice and Failure land together.
	held = newHeldAdvices()
	j, adv = journal{st: st, held: held}, advisor{st: st, held: held}
	require.NoError(t, adv.Advise(t.Context(), qr.Advice{Kind: qr.AdviceReverse, ClientTransactionID: id, TransactionID: "qr-1", Reason: "cancel: unreachable"}))
	require.NoError(t, j.Finish(t.Context(), nexo.Txn{SaleID: "POS1", ServiceID: "U1", POITransactionID: id}, failureResponse(t, "U1", id, nexo.UnreachableHost, "a reversal is queued"), time.Now()))
	recs, err = st.List(t.Context(), 10)
	require.NoError(t, err)
	kinds := map[store.Kind]int{}
	for _, r := range recs {
		kinds[r.Kind]++
	}
	require.Equal(t, map[store.Kind]int{store.KindAdvice: 1, store.KindTransactionResult: 1}, kinds)
	tx, err := st.Txn(t.Context(), id)
	require.NoError(t, err)
	require.True(t, tx.Final)
	require.True(t, reversalQueued(tx))

	// The invariant: a transaction with a reversal advice is never journaled approved.
	id2 := beginPayment(t, j, "U2", 100)
	require.NoError(t, adv.Advise(t.Context(), qr.Advice{Kind: qr.AdviceReverse, ClientTransactionID: id2, Reason: "x"}))
	ok := &nexo.Response{
		Header: nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: nexo.CategoryPayment, Type: nexo.TypeResponse, SaleID: "POS1", ServiceID: "U2", POIID: "DX8000-1"},
		Status: nexo.ResponseStatus{Result: nexo.Success}, Payment: &nexo.PaymentResponse{POITransactionID: nexo.TransactionID{ID: id2}},
	}
	require.ErrorIs(t, j.Finish(t.Context(), nexo.Txn{SaleID: "POS1", ServiceID: "U2", POITransactionID: id2}, ok, time.Now()), errReversalOwns)
}

// ppaasEngine is a QR engine (KB only) over PPaaS at srv: what recovery asks
// PPaaS through.
func ppaasEngine(t *testing.T, st *store.Store, srv *httptest.Server) *qr.Engine {
	t.Helper()
	e, err := qr.NewEngine(qr.Config{Brands: map[string]qr.Method{"KB": {PaymentType: "KB", Scenario: ppaas.ConsumerScan}}},
		qr.NewClient(srv.Client(), srv.URL, qr.Retry{Attempts: 1}), journal{st: st}, advisor{st: st}, nil)
	require.NoError(t, err)
	return e
}

// fakePPaaS answers the status read of one transaction.
func fakePPaaS(t *testing.T, tx ppaas.Transaction) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/"+tx.TransactionID) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(tx)
			return
		}
		http.Error(w, `{"error":"not_found"}`, http.StatusNotFound)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Issue 10 item 1, recovery's side: a payment left unfinished with a reversal
// advice already in the outbox (as a run before this fix could leave it) is
// never journaled Success, even though PPaaS shows it approved: the advice
// will refund it, so the POS is told it failed.
func TestRecoveryNeverReportsApprovedWhileAReversalIsQueued(t *testing.T) {
	st := openAgentStore(t, filepath.Join(t.TempDir(), "termagent.db"))
	j := journal{st: st}
	id := beginPayment(t, j, "L1", 2000)
	tr, err := json.Marshal(qr.Transition{ClientTransactionID: id, TransactionID: "qr-9", From: ppaas.Created, To: ppaas.AwaitingConsumer})
	require.NoError(t, err)
	require.NoError(t, st.AppendTxn(t.Context(), id, store.Transition{State: stateQRPrefix + string(ppaas.AwaitingConsumer), Data: tr}))
	ev, err := adviceEvent(qr.Advice{Kind: qr.AdviceReverse, ClientTransactionID: id, TransactionID: "qr-9", Reason: "cancel: unreachable"})
	require.NoError(t, err)
	_, err = st.Append(t.Context(), ev)
	require.NoError(t, err)

	srv := fakePPaaS(t, ppaas.Transaction{TransactionID: "qr-9", ClientTransactionID: id, PaymentType: "KB", PaymentScenario: ppaas.ConsumerScan,
		Status: ppaas.Approved, PaymentAmount: ppaas.Amount{Amount: 2000, Currency: "EUR"}})
	a := &Agent{poiid: "DX8000-1", log: slog.New(slog.DiscardHandler), api: srv.Client(), cfg: Config{APIURL: srv.URL}}
	txns, err := st.UnfinishedTxns(t.Context())
	require.NoError(t, err)
	a.recover(t.Context(), journal{st: st, qr: ppaasEngine(t, st, srv)}, txns)

	e, ok, err := j.Lookup(t.Context(), "POS1", "L1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, nexo.TxDone, e.State)
	resp := e.Response
	require.NotNil(t, resp)
	require.Equal(t, nexo.Failure, resp.Status.Result, "approved at PPaaS, but the queued reversal refunds it")
	require.Contains(t, resp.Status.AdditionalResponse, "reversal is queued")
}
