package agent

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// Issue 10 (reading): recovery replays the create of an interrupted payment
// with the PPaaS method journaled when the payment began, not with today's
// brand mapping (before: a mapping changed between the crash and the restart
// replayed another paymentType, i.e. another transaction).
func TestRecoveryReplaysCreateWithTheJournaledMethod(t *testing.T) {
	var (
		mu      sync.Mutex
		creates []ppaas.CreateRequest
	)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req ppaas.CreateRequest
		if r.Method == http.MethodPost && r.URL.Path == "/qrcode-payment/v1/transactions" {
			_ = json.NewDecoder(r.Body).Decode(&req)
			mu.Lock()
			creates = append(creates, req)
			mu.Unlock()
		}
		_ = json.NewEncoder(w).Encode(ppaas.Transaction{TransactionID: "qr-3", ClientTransactionID: req.ClientTransactionID, Status: ppaas.AwaitingConsumer,
			PaymentType: req.PaymentType, PaymentAmount: req.PaymentAmount})
	}))
	defer srv.Close()
	st := openAgentStore(t, filepath.Join(t.TempDir(), "termagent.db"))
	j := journal{st: st, methods: func(nexo.PaymentRequest) (qr.Method, bool) {
		return qr.Method{PaymentType: "KB_V1", Scenario: ppaas.ConsumerScan}, true // the mapping when it began
	}}
	id := beginPayment(t, j, "M1", 1500)

	// Restarted with another mapping for the brand.
	engine, err := qr.NewEngine(qr.Config{Brands: map[string]qr.Method{"KB": {PaymentType: "KB_V2", Scenario: ppaas.ConsumerScan}}},
		qr.NewClient(srv.Client(), srv.URL, qr.Retry{Attempts: 1}), journal{st: st}, advisor{st: st}, nil)
	require.NoError(t, err)
	a := &Agent{poiid: "DX8000-1", log: slog.New(slog.DiscardHandler)}
	txns, err := st.UnfinishedTxns(t.Context())
	require.NoError(t, err)
	a.recover(t.Context(), journal{st: st, qr: engine}, txns)

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, creates, 1)
	require.Equal(t, "KB_V1", creates[0].PaymentType)
	require.Equal(t, id, creates[0].ClientTransactionID)
}

// Issue 10 (reading): a Reversal a crash interrupted is answered from what
// PPaaS says of the payment: refunded there, it is the Success it was (before:
// always "interrupted, send it again", whatever PPaaS had done).
func TestRecoveryAsksPPaaSAboutAnInterruptedReversal(t *testing.T) {
	st := openAgentStore(t, filepath.Join(t.TempDir(), "termagent.db"))
	j := journal{st: st}
	pay := beginPayment(t, j, "P1", 2000)
	tr, err := json.Marshal(qr.Transition{ClientTransactionID: pay, TransactionID: "qr-5", From: ppaas.AwaitingConsumer, To: ppaas.Approved})
	require.NoError(t, err)
	require.NoError(t, st.AppendTxn(t.Context(), pay, store.Transition{State: stateQRPrefix + string(ppaas.Approved), Data: tr}))
	require.NoError(t, j.Finish(t.Context(), nexo.Txn{SaleID: "POS1", ServiceID: "P1", POITransactionID: pay}, failureResponse(t, "P1", pay, "", ""), time.Now()))

	rev := &nexo.Request{
		Header:   nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: nexo.CategoryReversal, Type: nexo.TypeRequest, ServiceID: "R1", SaleID: "POS1", POIID: "DX8000-1"},
		Reversal: &nexo.ReversalRequest{OriginalPOITransactionID: nexo.TransactionID{ID: pay}, Reason: "MerchantCancel"},
	}
	now := time.Now()
	_, err = j.Begin(t.Context(), nexo.JournalEntry{SaleID: "POS1", ServiceID: "R1", Category: nexo.CategoryReversal, RequestHash: "r", Request: rev, State: nexo.TxInProgress, Started: now, Updated: now})
	require.NoError(t, err)

	srv := fakePPaaS(t, ppaas.Transaction{TransactionID: "qr-5", ClientTransactionID: pay, Status: ppaas.Refunded,
		PaymentAmount: ppaas.Amount{Amount: 2000, Currency: "EUR"}, RefundedAmount: 2000})
	a := &Agent{poiid: "DX8000-1", log: slog.New(slog.DiscardHandler), api: srv.Client(), cfg: Config{APIURL: srv.URL}}
	txns, err := st.UnfinishedTxns(t.Context())
	require.NoError(t, err)
	require.Len(t, txns, 1)
	a.recover(t.Context(), journal{st: st, qr: ppaasEngine(t, st, srv)}, txns)

	e, ok, err := j.Lookup(t.Context(), "POS1", "R1")
	require.NoError(t, err)
	require.True(t, ok)
	resp := e.Response
	require.NotNil(t, resp)
	require.Equal(t, nexo.Success, resp.Status.Result, resp.Status.AdditionalResponse)
	require.True(t, strings.HasPrefix(resp.Status.AdditionalResponse, "refunded at PPaaS"), resp.Status.AdditionalResponse)
}
