package agent

import (
	"context"
	"encoding/json"
	"github.com/termagent/termagent/ppaas"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// payPath wires the payment path as Run does (Nexo server → apmEngine → QR
// engine → journal) over a fake PPaaS that approves every create at once.
func payPath(t testing.TB) (*nexo.Client, journal, http.Handler) {
	t.Helper()
	st := openAgentStore(t, filepath.Join(t.TempDir(), "termagent.db"))
	platform := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req ppaas.CreateRequest
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, `{"error":"unexpected"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ppaas.Transaction{TransactionID: "qr-" + req.ClientTransactionID, ClientTransactionID: req.ClientTransactionID,
			Status: ppaas.Approved, PaymentType: req.PaymentType, PaymentScenario: req.PaymentScenario, PaymentAmount: req.PaymentAmount, ProviderReference: "prov"})
	}))
	t.Cleanup(platform.Close)
	held := newHeldAdvices()
	j := journal{st: st, held: held, last: newLastEntries()} // as agent.Run builds it
	engine, err := qr.NewEngine(qr.Config{Brands: map[string]qr.Method{"KB": {PaymentType: "KB", Scenario: ppaas.ConsumerScan}}},
		qr.NewClient(platform.Client(), platform.URL, qr.Retry{Attempts: 1}), j, advisor{st: st, held: held}, nil)
	require.NoError(t, err)
	j.methods = apmEngine{qr: engine}.method
	srv, err := nexo.NewServer(nexo.ServerConfig{POIID: "DX8000-1", AllowPlainHTTP: true},
		nexo.Deps{Engine: nexo.NewRouter(apmEngine{qr: engine, journal: j}), Journal: j, Diagnoser: storeDiagnoser{st}}, nil)
	require.NoError(t, err)
	pos := httptest.NewServer(srv.Handler())
	t.Cleanup(pos.Close)
	return &nexo.Client{URL: pos.URL + "/nexo", HTTP: pos.Client()}, j, srv.Handler()
}

// storeDiagnoser reports the outbox depth, as the agent's Diagnosis does.
type storeDiagnoser struct{ st *store.Store }

func (d storeDiagnoser) Diagnose(context.Context) (nexo.Health, error) {
	return nexo.Health{Hosts: []nexo.HostStatus{{AcquirerID: "PPaaS-API", Reachable: true}}, OutboxDepth: int(d.st.Stats().Depth)}, nil
}

func payKB(t testing.TB, c *nexo.Client, serviceID string) *nexo.Response {
	t.Helper()
	resp, err := c.Do(t.Context(), &nexo.Request{
		Header: nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: nexo.CategoryPayment, Type: nexo.TypeRequest,
			ServiceID: serviceID, SaleID: "POS1", POIID: "DX8000-1"},
		Payment: &nexo.PaymentRequest{SaleTransactionID: nexo.TransactionID{ID: "ORDER-" + serviceID, TimeStamp: time.Now().UTC()}, Type: nexo.PaymentNormal,
			Amount: nexo.Amount{Minor: 1250, Currency: "EUR"}, AllowedBrands: []string{"KB"}},
	})
	require.NoError(t, err)
	require.Equal(t, nexo.Success, resp.Status.Result, resp.Status.AdditionalResponse)
	return resp
}

// Issue 12: the payment's id is passed down the path (Journal.Begin returns
// it; the engine and Finish get it), not fetched back by SaleID and ServiceID.
// An approved payment costs the store one read transaction, the server's
// ServiceID check (before: three — Pay and Finish each looked it up again).
func TestPaymentPathStoreLookups(t *testing.T) {
	c, j, _ := payPath(t)
	payKB(t, c, "W0") // warm-up
	const n = 5
	before := j.st.ReadTxns()
	ids := make([]string, 0, n)
	for i := range n {
		resp := payKB(t, c, "L"+string(rune('1'+i)))
		ids = append(ids, resp.Payment.POITransactionID.ID)
	}
	reads := float64(j.st.ReadTxns()-before) / n
	t.Logf("store read transactions per approved payment: %.1f", reads)
	require.LessOrEqual(t, reads, 1.0)

	for i, id := range ids {
		tx, err := j.st.Txn(t.Context(), id)
		require.NoError(t, err, "the POS's POI transaction id is the journal's")
		require.Equal(t, "L"+string(rune('1'+i)), tx.ServiceID)
		v := viewQR(tx)
		require.Equal(t, "qr-"+id, v.transactionID, "and the QR clientTransactionId")
	}
}
