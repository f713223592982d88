package nexo

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sharedJournal hands the same Response back until the test changes its
// entry, as the agent's journal does while an entry is unchanged
// (JournalEntry: what Last and Lookup return may be shared, read-only).
type sharedJournal struct {
	Journal // the rest is never called
	mu      sync.Mutex
	entries map[string]JournalEntry // by SaleID
}

func (j *sharedJournal) set(e JournalEntry) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.entries == nil {
		j.entries = map[string]JournalEntry{}
	}
	j.entries[e.SaleID] = e
}

func (j *sharedJournal) Last(_ context.Context, saleID string) (JournalEntry, bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	e, ok := j.entries[saleID]
	return e, ok, nil
}

func repeatedResponses(t *testing.T) map[string]*Response {
	t.Helper()
	h := Header{ProtocolVersion: "3.0", Class: ClassService, Category: CategoryPayment, Type: TypeResponse, ServiceID: "P1", SaleID: "POS1", POIID: "DX8000-1"}
	ts := time.Date(2026, 12, 1, 22, 40, 3, 816e6, time.UTC)
	paid := &Response{Header: h, Status: ResponseStatus{Result: Success},
		Payment: &PaymentResponse{SaleTransactionID: TransactionID{ID: "ORDER <1> & \"2\"", TimeStamp: ts}, POITransactionID: TransactionID{ID: "poi-1", TimeStamp: ts},
			Result: &PaymentResult{Type: PaymentNormal, Brand: "KB", InstrumentType: "Mobile", AuthorizedAmount: Amount{Minor: 1250, Currency: "EUR"},
				AcquirerID: "PPaaS", ApprovalCode: "qr-poi-1", ProviderReference: "prov\u2028é", MerchantID: "M1", AcquirerPOIID: "T1"}}}
	paid.Payment.Receipts = Receipts(paid, "Café <Shop> & Co", false)
	unknown := &Response{Header: h, Status: ResponseStatus{Result: Failure, ErrorCondition: UnreachableHost, AdditionalResponse: "outcome unknown; refunded at PPaaS <later> & \"settled\""},
		Payment: &PaymentResponse{POITransactionID: TransactionID{ID: "poi-2"}}}
	refused := &Response{Header: h, Status: ResponseStatus{Result: Failure, ErrorCondition: PaymentRestriction, AdditionalResponse: "no payment method accepts brand X"}}
	rh := h
	rh.Category, rh.ServiceID = CategoryReversal, "R1"
	reversed := &Response{Header: rh, Status: ResponseStatus{Result: Success},
		Reversal: &ReversalResponse{OriginalPOITransactionID: TransactionID{ID: "poi-1", TimeStamp: ts}, POITransactionID: TransactionID{ID: "poi-3", TimeStamp: ts},
			ReversedAmount: "4.00", Receipts: []PaymentReceipt{{DocumentQualifier: CashierReceipt, Lines: []string{"REFUND", "Amount: 4.00 EUR"}}, {DocumentQualifier: CustomerReceipt, Lines: []string{"REFUND"}}}}}
	return map[string]*Response{"paid": paid, "unknown outcome": unknown, "refused up front": refused, "reversed": reversed}
}

// Issue 17: the TransactionStatus JSON the server writes with the repeated
// response kept encoded is byte for byte what JSONCodec writes, the first
// time (encoded then kept) and the next (kept).
func TestStatusJSONIsTheCodecs(t *testing.T) {
	srv, err := NewServer(ServerConfig{POIID: testPOIID, AllowPlainHTTP: true}, Deps{Engine: NewRouter(), Journal: &sharedJournal{}}, nil)
	require.NoError(t, err)
	for name, rep := range repeatedResponses(t) {
		t.Run(name, func(t *testing.T) {
			resp := srv.ok(Header{ProtocolVersion: "3.0", Class: ClassService, Category: CategoryTransactionStatus, Type: TypeRequest, ServiceID: "Q1", SaleID: "POS1", POIID: "DX8000-1"},
				func(r *Response) {
					r.TransactionStatus = &TransactionStatusResponse{MessageReference: &MessageReference{Category: rep.Header.Category, SaleID: "POS1", ServiceID: rep.Header.ServiceID},
						Repeated: rep, journaled: true}
				})
			want, err := JSONCodec{}.EncodeResponse(resp)
			require.NoError(t, err)
			for _, when := range []string{"encoded", "kept"} {
				got, hdr, err := srv.encodeStatusJSON(resp)
				require.NoError(t, err)
				require.Equal(t, string(want), string(got), when)
				require.Equal(t, "Q1", hdr.ServiceID)
			}
			require.NotNil(t, srv.repeated.get("POS1", rep), "kept")
		})
	}
}

// A TransactionStatus tells the journal's current Response: a new one (the
// entry changed) is encoded anew, never the one kept for the SaleID; a
// reprint changes a copy, neither the journal's Response nor what the next
// plain TransactionStatus repeats.
func TestStatusJSONFollowsTheJournal(t *testing.T) {
	j := &sharedJournal{}
	srv, err := NewServer(ServerConfig{POIID: testPOIID, AllowPlainHTTP: true, MerchantName: "Shop"}, Deps{Engine: NewRouter(), Journal: j}, nil)
	require.NoError(t, err)
	h := srv.Handler()
	ask := func(tsr *TransactionStatusRequest) *Response {
		t.Helper()
		raw, err := JSONCodec{}.EncodeRequest(&Request{Header: testHeader(CategoryTransactionStatus, "Q1"), TransactionStatus: tsr})
		require.NoError(t, err)
		w := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/nexo", bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(w, req)
		require.Equal(t, http.StatusOK, w.Code)
		resp, err := JSONCodec{}.DecodeResponse(w.Body.Bytes())
		require.NoError(t, err)
		require.Equal(t, Success, resp.Status.Result, resp.Status.AdditionalResponse)
		return resp.TransactionStatus.Repeated
	}
	reps := repeatedResponses(t)
	paid := reps["paid"]
	paid.Header.SaleID = testHeader(CategoryPayment, "").SaleID
	entry := JournalEntry{SaleID: paid.Header.SaleID, ServiceID: "P1", Category: CategoryPayment, State: TxDone, Response: paid}
	j.set(entry)
	first := ask(&TransactionStatusRequest{})
	require.Len(t, first.Payment.Receipts, 2)
	require.Equal(t, first, ask(&TransactionStatusRequest{}))

	receiptsBefore := paid.Payment.Receipts
	reprinted := ask(&TransactionStatusRequest{DocumentQualifiers: []string{CustomerReceipt}})
	require.Len(t, reprinted.Payment.Receipts, 1)
	require.Equal(t, "DUPLICATE", reprinted.Payment.Receipts[0].Lines[0])
	require.Equal(t, receiptsBefore, paid.Payment.Receipts, "the journal's Response is left alone")
	require.Equal(t, first, ask(&TransactionStatusRequest{}), "the next plain TransactionStatus repeats the original")

	// The entry changes: the journal decodes a new Response.
	updated := *paid
	updated.Status.AdditionalResponse = "charged back by the card holder after the sale: 12.50 EUR"
	entry.Response = &updated
	j.set(entry)
	require.Equal(t, updated.Status.AdditionalResponse, ask(&TransactionStatusRequest{}).Status.AdditionalResponse)
}

// The server keeps the JSON of at most MaxLoggedIn SaleIDs.
func TestStatusJSONBounded(t *testing.T) {
	j := &sharedJournal{}
	srv, err := NewServer(ServerConfig{POIID: testPOIID, AllowPlainHTTP: true, MaxLoggedIn: 4}, Deps{Engine: NewRouter(), Journal: j}, nil)
	require.NoError(t, err)
	h := srv.Handler()
	for i := range 10 {
		hd := testHeader(CategoryTransactionStatus, "Q1")
		hd.SaleID = "POS" + strconv.Itoa(i)
		rep := *repeatedResponses(t)["refused up front"]
		rep.Header.SaleID = hd.SaleID
		j.set(JournalEntry{SaleID: hd.SaleID, ServiceID: "P1", Category: CategoryPayment, State: TxDone, Response: &rep})
		raw, err := JSONCodec{}.EncodeRequest(&Request{Header: hd, TransactionStatus: &TransactionStatusRequest{}})
		require.NoError(t, err)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/nexo", bytes.NewReader(raw)))
		require.Contains(t, w.Body.String(), `"AdditionalResponse":"no payment method accepts brand X"`)
		require.LessOrEqual(t, srv.repeated.len(), 4)
	}
}
