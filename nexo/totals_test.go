package nexo

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func totalsReq(serviceID string, details []string, filter *TotalsGroup) *Request {
	return &Request{Header: testHeader(CategoryGetTotals, serviceID), GetTotals: &GetTotalsRequest{Details: details, Filter: filter}}
}

func reconReq(serviceID, typ, id string) *Request {
	return &Request{Header: testHeader(CategoryReconciliation, serviceID), Reconciliation: &ReconciliationRequest{Type: typ, POIReconciliationID: id}}
}

func sessionLoginReq(serviceID, operator, shift, group string) *Request {
	return &Request{Header: testHeader(CategoryLogin, serviceID), Login: &LoginRequest{
		DateTime: testEpoch, SaleSoftware: SaleSoftware{ManufacturerID: "m", ApplicationName: "a", SoftwareVersion: "1"},
		OperatorLanguage: "en", OperatorID: operator, ShiftNumber: shift, TotalsGroupID: group,
	}}
}

// TestTotalsGroupingAndPeriods: payments take their Login's shift and
// totals group; totals group and filter as asked; a reversal is netted; a
// SaleReconciliation closes the period and the next one starts empty.
func TestTotalsGroupingAndPeriods(t *testing.T) {
	env := startServer(t, ServerConfig{}, nil)
	c := env.client(nil, nil)
	ctx := testCtx(t)
	do := func(r *Request) *Response {
		resp, err := c.Do(ctx, r)
		requireSuccess(t, resp, err)
		return resp
	}
	do(sessionLoginReq("L1", "alice", "S1", "G1"))
	p1 := do(paymentReq("P1", "KB", 1000)) // POI-TX-1, reversed below
	do(paymentReq("P2", "KB", 250))
	do(paymentReq("P3", "PM", 700))
	do(sessionLoginReq("L2", "bob", "S2", "G1"))
	do(paymentReq("P4", "KB", 5))
	do(&Request{Header: testHeader(CategoryReversal, "R1"), Reversal: &ReversalRequest{OriginalPOITransactionID: p1.Payment.POITransactionID, Reason: "MerchantCancel"}})
	declined, err := c.Do(ctx, paymentReq("P5", "DECLINE", 999))
	requireFailure(t, declined, err, Refusal)

	all := do(totalsReq("T1", nil, nil)).GetTotals
	require.Equal(t, "1", all.POIReconciliationID)
	require.Len(t, all.Totals, 2)
	kb := all.Totals[0]
	require.Equal(t, "KB", kb.Brand)
	require.Equal(t, []PaymentTotals{{Type: TotalsDebit, Count: 3, Amount: 1255}, {Type: TotalsReverseDebit, Count: 1, Amount: 1000}}, kb.Payments)
	require.Equal(t, int64(255), kb.Net())
	require.Equal(t, TotalsGroup{}, kb.TotalsGroup, "no TotalDetails: no grouping")

	byShift := do(totalsReq("T2", []string{DetailShiftNumber, DetailOperatorID}, &TotalsGroup{TotalsGroupID: "G1", ShiftNumber: "S1"})).GetTotals
	require.Len(t, byShift.Totals, 2)
	for _, tt := range byShift.Totals {
		require.Equal(t, "alice", tt.OperatorID)
		require.Equal(t, "S1", tt.ShiftNumber)
		require.Empty(t, tt.TotalsGroupID, "not asked for")
	}
	require.Equal(t, int64(250), byShift.Totals[0].Net(), "alice's KB: 1000+250 less the reversed 1000")

	// Close the period: its totals come back with its id, and stay readable.
	rec := do(reconReq("C1", ReconSale, "")).Reconciliation
	require.Equal(t, "1", rec.POIReconciliationID)
	require.Len(t, rec.Totals, 3, "alice KB, alice PM, bob KB")
	again := do(totalsReq("T3", nil, nil)).GetTotals
	require.Equal(t, "2", again.POIReconciliationID)
	require.Empty(t, again.Totals)
	prev := do(reconReq("C2", ReconPrevious, "1")).Reconciliation
	require.Equal(t, rec.Totals, prev.Totals)
	missing, err := c.Do(ctx, reconReq("C3", ReconPrevious, "9"))
	requireFailure(t, missing, err, NotFound)
	bad, err := c.Do(ctx, reconReq("C4", ReconAcquirer, ""))
	requireFailure(t, bad, err, UnavailableService)
}

func TestReconciliationSyncReportsDifferences(t *testing.T) {
	env := startServer(t, ServerConfig{}, nil)
	c := env.client(nil, nil)
	ctx := testCtx(t)
	for _, p := range []*Request{paymentReq("P1", "KB", 100), paymentReq("P2", "LOST", 200)} {
		resp, err := c.Do(ctx, p)
		requireSuccess(t, resp, err)
	}
	resp, err := c.Do(ctx, reconReq("S1", ReconAcquirerSynchronisation, ""))
	requireSuccess(t, resp, err)
	require.Equal(t, "differences=1&difference1=payment+POI-TX-2+is+unknown+to+the+platform", resp.Status.AdditionalResponse)
	require.Equal(t, "1", resp.Reconciliation.POIReconciliationID, "synchronisation does not close the period")
}

func TestTotalsRequestValidation(t *testing.T) {
	for name, body := range map[string]string{
		"bad detail":          `{"TotalDetails":["Brand"]}`,
		"too many details":    `{"TotalDetails":["SaleID","SaleID","SaleID","SaleID","SaleID","SaleID"]}`,
		"recon no type":       ``,
		"previous no id":      `PreviousReconciliation`,
		"id without previous": `SaleReconciliation&1`,
	} {
		t.Run(name, func(t *testing.T) {
			var raw string
			switch {
			case len(body) > 0 && body[0] == '{':
				raw = `{"SaleToPOIRequest":{"MessageHeader":{"MessageClass":"Service","MessageCategory":"GetTotals","MessageType":"Request","ServiceID":"1","SaleID":"POS1","POIID":"P"},"GetTotalsRequest":` + body + `}}`
			default:
				typ, id, _ := strings.Cut(body, "&")
				raw = `{"SaleToPOIRequest":{"MessageHeader":{"MessageClass":"Service","MessageCategory":"Reconciliation","MessageType":"Request","ServiceID":"1","SaleID":"POS1","POIID":"P"},"ReconciliationRequest":{"ReconciliationType":"` + typ + `","POIReconciliationID":"` + id + `"}}}`
			}
			_, err := JSONCodec{}.DecodeRequest([]byte(raw))
			var ne *Error
			require.ErrorAs(t, err, &ne)
			require.Equal(t, MessageFormat, ne.Condition)
		})
	}
}

// TestReconciliationRefusedWhileUnfinished: a period with a transaction
// still in progress cannot be closed (its outcome would be lost to totals).
func TestReconciliationRefusedWhileUnfinished(t *testing.T) {
	j := NewMemJournal()
	ctx := testCtx(t)
	poiID, err := j.Begin(ctx, JournalEntry{SaleID: "POS1", ServiceID: "X", Category: CategoryPayment, State: TxInProgress})
	require.NoError(t, err)
	_, err = j.ClosePeriod(ctx, testEpoch)
	var ne *Error
	require.ErrorAs(t, err, &ne)
	require.Equal(t, Busy, ne.Condition)
	require.NoError(t, j.Finish(ctx, Txn{SaleID: "POS1", ServiceID: "X", POITransactionID: poiID}, &Response{Header: Header{Category: CategoryPayment}, Status: ResponseStatus{Result: Failure}}, testEpoch))
	id, err := j.ClosePeriod(ctx, testEpoch)
	require.NoError(t, err)
	require.Equal(t, uint64(1), id)
}
