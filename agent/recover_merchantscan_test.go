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

// walletPlatform is a PPaaS that charges a merchantscan code at create (as the
// simulator's KB wallet does), idempotently per clientTransactionId, and lists
// the device's transactions; it counts the calls.
type walletPlatform struct {
	mu      sync.Mutex
	txs     map[string]ppaas.Transaction
	created map[string]time.Time
	creates int
	refunds int
	cancels int
	listErr bool
}

func newWalletPlatform(t *testing.T) (*walletPlatform, *httptest.Server) {
	p := &walletPlatform{txs: map[string]ppaas.Transaction{}, created: map[string]time.Time{}}
	srv := httptest.NewTLSServer(http.HandlerFunc(p.serve))
	t.Cleanup(srv.Close)
	return p, srv
}

// made is what the payment's original create made at PPaaS, at.
func (p *walletPlatform) made(tx ppaas.Transaction, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.txs[tx.TransactionID], p.created[tx.TransactionID] = tx, at
}

func (p *walletPlatform) failListing(fail bool) {
	p.mu.Lock()
	p.listErr = fail
	p.mu.Unlock()
}

func (p *walletPlatform) counts() (creates, refunds, cancels int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.creates, p.refunds, p.cancels
}

func (p *walletPlatform) serve(w http.ResponseWriter, r *http.Request) {
	const txPath = "/qrcode-payment/v1/transactions"
	p.mu.Lock()
	defer p.mu.Unlock()
	rest := strings.TrimPrefix(r.URL.Path, txPath+"/")
	id, op, _ := strings.Cut(rest, "/")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == txPath:
		var req ppaas.CreateRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		p.creates++
		for _, tx := range p.txs { // idempotent per clientTransactionId
			if tx.ClientTransactionID == req.ClientTransactionID {
				_ = json.NewEncoder(w).Encode(tx)
				return
			}
		}
		tx := ppaas.Transaction{TransactionID: "qr-replayed", ClientTransactionID: req.ClientTransactionID, Status: ppaas.Approved,
			PaymentType: req.PaymentType, PaymentScenario: req.PaymentScenario, PaymentAmount: req.PaymentAmount}
		p.txs[tx.TransactionID], p.created[tx.TransactionID] = tx, time.Now()
		_ = json.NewEncoder(w).Encode(tx)
	case r.Method == http.MethodGet && r.URL.Path == txPath:
		if p.listErr {
			http.Error(w, `{"error":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		from, _ := time.Parse(time.RFC3339Nano, r.URL.Query().Get("createdFrom"))
		to, _ := time.Parse(time.RFC3339Nano, r.URL.Query().Get("createdTo"))
		page := struct {
			Transactions []ppaas.Transaction `json:"transactions"`
		}{Transactions: []ppaas.Transaction{}}
		for id, tx := range p.txs {
			if at := p.created[id]; !at.Before(from) && !at.After(to) {
				page.Transactions = append(page.Transactions, tx)
			}
		}
		_ = json.NewEncoder(w).Encode(page)
	case r.Method == http.MethodGet:
		tx, ok := p.txs[id]
		if !ok {
			http.Error(w, `{"error":"not_found"}`, http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(tx)
	case r.Method == http.MethodPost && op == "refund":
		var req ppaas.RefundRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		tx := p.txs[id]
		p.refunds++
		tx.RefundedAmount = tx.PaymentAmount.Amount
		p.txs[id] = tx
		_ = json.NewEncoder(w).Encode(ppaas.Refund{RefundID: "rf-" + id, ClientRefundID: req.ClientRefundID, TransactionID: id, Status: ppaas.RefundDone, Amount: req.Amount})
	case r.Method == http.MethodPost && op == "cancel":
		tx := p.txs[id]
		p.cancels++
		tx.Status = ppaas.Cancelled
		p.txs[id] = tx
		_ = json.NewEncoder(w).Encode(tx)
	default:
		http.Error(w, `{"error":"unexpected"}`, http.StatusBadRequest)
	}
}

var walletMethod = qr.Method{PaymentType: "KB", Scenario: ppaas.MerchantScan}

// beginMerchantScan journals a merchantscan payment with the customer's code
// in the request, begun at started, and nothing after: the crash came before
// its create answered (or before the record of its PPaaS id was flushed).
func beginMerchantScan(t *testing.T, st *store.Store, serviceID string, started time.Time) string {
	t.Helper()
	j := journal{st: st, methods: func(nexo.PaymentRequest) (qr.Method, bool) { return walletMethod, true }}
	req := &nexo.Request{
		Header: nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: nexo.CategoryPayment, Type: nexo.TypeRequest, ServiceID: serviceID, SaleID: "POS1", POIID: "DX8000-1"},
		Payment: &nexo.PaymentRequest{SaleTransactionID: nexo.TransactionID{ID: "ORDER-" + serviceID, TimeStamp: started.UTC()}, Type: nexo.PaymentNormal,
			Amount: nexo.Amount{Minor: 4200, Currency: "EUR"}, AllowedBrands: []string{"KB"}, ScannedCode: "281666027690188713769014"},
	}
	id, err := j.Begin(t.Context(), nexo.JournalEntry{SaleID: "POS1", ServiceID: serviceID, Category: nexo.CategoryPayment, RequestHash: "h-" + serviceID,
		Request: req, State: nexo.TxInProgress, Started: started, Updated: started})
	require.NoError(t, err)
	return id
}

func walletEngine(t *testing.T, st *store.Store, srv *httptest.Server) *qr.Engine {
	t.Helper()
	e, err := qr.NewEngine(qr.Config{Brands: map[string]qr.Method{"KB": walletMethod}},
		qr.NewClient(srv.Client(), srv.URL, qr.Retry{Attempts: 1}), journal{st: st}, advisor{st: st}, nil)
	require.NoError(t, err)
	return e
}

func queuedAdvice(t *testing.T, st *store.Store, id string) (qr.Advice, bool) {
	t.Helper()
	rec, _, found, err := st.FindKey(t.Context(), adviceKey(id))
	require.NoError(t, err)
	var adv qr.Advice
	if found {
		require.NoError(t, json.Unmarshal(rec.Payload, &adv))
	}
	return adv, found
}

// Recovery never charges a consumer-presented (merchantscan) code: a payment
// whose PPaaS id the crash lost is located in the device's transaction
// listing, not created again (before: the create was replayed hours later,
// PPaaS charged the wallet, and recovery journaled it as the POS's Success).
// Found, it is settled like any payment PPaaS knows; not found once its
// create's window has passed, nothing was charged.
func TestRecoveryNeverChargesAMerchantScanCode(t *testing.T) {
	started := time.Now().Add(-3 * time.Hour) // the power cut lasted hours
	for _, tc := range []struct {
		name    string
		made    ppaas.State // what the original create made at PPaaS; "" for nothing
		result  nexo.Result
		cond    nexo.ErrorCondition
		advised bool // a reversal of the transaction found is queued
	}{
		{name: "create never reached PPaaS", result: nexo.Failure, cond: nexo.Aborted},
		{name: "create reached PPaaS, approved", made: ppaas.Approved, result: nexo.Success},
		{name: "create reached PPaaS, declined", made: ppaas.Declined, result: nexo.Failure, cond: nexo.Refusal},
		{name: "create reached PPaaS, undecided", made: ppaas.Pending, result: nexo.Failure, cond: nexo.Cancel, advised: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, srv := newWalletPlatform(t)
			st := openAgentStore(t, filepath.Join(t.TempDir(), "termagent.db"))
			id := beginMerchantScan(t, st, "M1", started)
			if tc.made != "" {
				p.made(ppaas.Transaction{TransactionID: "qr-orig", ClientTransactionID: id, Status: tc.made, PaymentType: "KB", PaymentScenario: ppaas.MerchantScan,
					PaymentAmount: ppaas.Amount{Amount: 4200, Currency: "EUR"}}, started.Add(2*time.Second))
			}
			a := &Agent{poiid: "DX8000-1", log: slog.New(slog.DiscardHandler)}
			txns, err := st.UnfinishedTxns(t.Context())
			require.NoError(t, err)
			left := a.recover(t.Context(), journal{st: st, qr: walletEngine(t, st, srv), restarted: time.Now()}, txns)
			require.Empty(t, left)

			creates, refunds, _ := p.counts()
			require.Zero(t, creates, "recovery replayed the merchantscan create: the consumer's wallet was charged now")
			require.Zero(t, refunds)
			e, ok, err := journal{st: st}.Lookup(t.Context(), "POS1", "M1")
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, nexo.TxDone, e.State)
			require.Equal(t, tc.result, e.Response.Status.Result, e.Response.Status.AdditionalResponse)
			require.Equal(t, tc.cond, e.Response.Status.ErrorCondition)
			if tc.result == nexo.Success {
				require.Equal(t, int64(4200), e.Response.Payment.Result.AuthorizedAmount.Minor, "the transaction the original create made")
			}
			if tc.made != "" {
				// The PPaaS id learnt from the listing is journaled: a later
				// event naming only it (a chargeback) finds the payment.
				found, ok, err := st.TxnByAlias(t.Context(), "qr-orig")
				require.NoError(t, err)
				require.True(t, ok, "no alias for the PPaaS id recovery found")
				require.Equal(t, id, found.ID)
			}
			if tc.made == "" {
				require.Contains(t, e.Response.Status.AdditionalResponse, "not charged")
			}
			adv, found := queuedAdvice(t, st, id)
			require.Equal(t, tc.advised, found)
			if found {
				require.Equal(t, "qr-orig", adv.TransactionID, "the reversal names the transaction found")
			}
		})
	}
}

// While the listing cannot tell whether the create reached PPaaS, the
// payment stays in progress (never replayed, never reversed blind) and is
// asked about again with backoff; past RecoverTiming.Escalate it is given up
// to a person (TransactionStatus "manual action needed", the gauge), and once
// the listing answers it is settled.
func TestRecoveryKeepsAnUnlocatableMerchantScanPaymentInProgress(t *testing.T) {
	p, srv := newWalletPlatform(t)
	p.failListing(true)
	st := openAgentStore(t, filepath.Join(t.TempDir(), "termagent.db"))
	id := beginMerchantScan(t, st, "M1", time.Now().Add(-time.Hour))
	a := &Agent{poiid: "DX8000-1", log: slog.New(slog.DiscardHandler),
		opts: Options{Recover: RecoverTiming{Every: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Escalate: 20 * time.Millisecond}}}
	j := journal{st: st, qr: walletEngine(t, st, srv), restarted: time.Now()}
	txns, err := st.UnfinishedTxns(t.Context())
	require.NoError(t, err)
	left := a.recover(t.Context(), j, txns)
	require.Len(t, left, 1)
	lookup := func() nexo.JournalEntry {
		e, ok, err := journal{st: st}.Lookup(t.Context(), "POS1", "M1")
		require.NoError(t, err)
		require.True(t, ok)
		return e
	}
	require.Equal(t, nexo.TxInProgress, lookup().State)
	_, found := queuedAdvice(t, st, id)
	require.False(t, found, "no reversal (it would replay the create)")

	done := make(chan struct{})
	go func() { defer close(done); a.relocate(t.Context(), j, left) }()
	t.Cleanup(func() { <-done }) // relocate ends with the test's context
	require.Eventually(t, func() bool {
		e := lookup()
		return e.Response != nil && strings.Contains(e.Response.Status.AdditionalResponse, "manual action needed")
	}, 10*time.Second, 5*time.Millisecond)
	e := lookup()
	require.Equal(t, nexo.TxInProgress, e.State, "given up to a person but still in progress: never a final Failure the POS could take for a decline")
	require.Equal(t, nexo.Failure, e.Response.Status.Result)
	require.Equal(t, nexo.InProgress, e.Response.Status.ErrorCondition)
	require.Contains(t, e.Response.Status.AdditionalResponse, id)
	require.EqualValues(t, 1, a.unlocated.Load())
	tx, err := st.Txn(t.Context(), id)
	require.NoError(t, err)
	require.False(t, tx.Final, "given up to a person, still unfinished: a restart asks again")

	p.failListing(false) // the listing answers: nothing was created
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("relocate did not finish once the listing answered")
	}
	e = lookup()
	require.Equal(t, nexo.Aborted, e.Response.Status.ErrorCondition, e.Response.Status.AdditionalResponse)
	require.Contains(t, e.Response.Status.AdditionalResponse, "not charged")
	require.Zero(t, a.unlocated.Load())
	creates, refunds, cancels := p.counts()
	require.Zero(t, creates+refunds+cancels)
}

// A POS Reversal of a merchantscan payment whose PPaaS id is unknown (served
// before recovery has run) does not replay its create either (before: PPaaS
// charged the code, then the reversal refunded it).
func TestReversalOfAMerchantScanPaymentWithoutItsIDChargesNothing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		charged  bool
		reversed int64
	}{
		{name: "create never reached PPaaS"},
		{name: "create reached PPaaS and charged", charged: true, reversed: 4200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, srv := newWalletPlatform(t)
			st := openAgentStore(t, filepath.Join(t.TempDir(), "termagent.db"))
			started := time.Now().Add(-time.Hour)
			id := beginMerchantScan(t, st, "M1", started)
			if tc.charged {
				p.made(ppaas.Transaction{TransactionID: "qr-orig", ClientTransactionID: id, Status: ppaas.Approved, PaymentType: "KB", PaymentScenario: ppaas.MerchantScan,
					PaymentAmount: ppaas.Amount{Amount: 4200, Currency: "EUR"}}, started.Add(time.Second))
			}
			eng := apmEngine{qr: walletEngine(t, st, srv), journal: journal{st: st}}
			res, err := eng.Reverse(t.Context(), nexo.Txn{SaleID: "POS1"}, nexo.ReversalRequest{OriginalPOITransactionID: nexo.TransactionID{ID: id}, Reason: "MerchantCancel"})
			require.NoError(t, err)
			require.Equal(t, tc.reversed, res.ReversedAmount.Minor)
			creates, refunds, _ := p.counts()
			require.Zero(t, creates, "the reversal replayed the merchantscan create: the code was charged")
			require.Equal(t, map[bool]int{true: 1}[tc.charged], refunds)
		})
	}
}
