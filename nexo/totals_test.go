package nexo

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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

// TestReconciliationSyncDifferencesBounded: a platform that disagrees about
// many payments does not make AdditionalResponse longer than Nexo allows
// (Max1025Text): the first differences are listed, "more" counts the rest,
// and the total stays exact.
func TestReconciliationSyncDifferencesBounded(t *testing.T) {
	env := startServer(t, ServerConfig{}, nil)
	c := env.client(nil, nil)
	ctx := testCtx(t)
	for i := range 40 {
		resp, err := c.Do(ctx, paymentReq(fmt.Sprintf("P%d", i), "LOST", 100))
		requireSuccess(t, resp, err)
	}
	resp, err := c.Do(ctx, reconReq("S1", ReconAcquirerSynchronisation, ""))
	requireSuccess(t, resp, err)
	add := resp.Status.AdditionalResponse
	require.LessOrEqual(t, utf8.RuneCountInString(add), maxAdditionalResponse)
	v, err := url.ParseQuery(add)
	require.NoError(t, err)
	require.Equal(t, "40", v.Get("differences"))
	listed := 0
	for k := range v {
		if strings.HasPrefix(k, "difference") && k != "differences" {
			listed++
		}
	}
	require.Positive(t, listed)
	require.Equal(t, "payment POI-TX-1 is unknown to the platform", v.Get("difference1"))
	require.Equal(t, strconv.Itoa(40-listed), v.Get("more"))
}

func TestDifferencesText(t *testing.T) {
	require.Equal(t, "differences=0", differencesText(nil, maxAdditionalResponse))
	require.Equal(t, "differences=2&difference1=a&difference2=b+c", differencesText([]string{"a", "b c"}, maxAdditionalResponse))
	huge := strings.Repeat("é", 5000)
	for _, diffs := range [][]string{{huge}, {huge, huge, huge}, slices.Repeat([]string{"x"}, 1000)} {
		got := differencesText(diffs, maxAdditionalResponse)
		require.LessOrEqual(t, len(got), maxAdditionalResponse, "ASCII: bytes are characters")
		v, err := url.ParseQuery(got)
		require.NoError(t, err)
		require.Equal(t, strconv.Itoa(len(diffs)), v.Get("differences"))
		listed := len(v) - 1
		if v.Has("more") {
			listed--
			require.Equal(t, strconv.Itoa(len(diffs)-listed), v.Get("more"))
		} else {
			require.Equal(t, len(diffs), listed)
		}
	}
}

// gapLedger is a journal that lost entries of period 1 to its disk budget.
type gapLedger struct {
	*MemJournal
	evicted int
	before  time.Time
}

func (g gapLedger) PeriodGap(_ context.Context, id uint64) (int, time.Time, error) {
	if id != 1 {
		return 0, time.Time{}, nil
	}
	return g.evicted, g.before, nil
}

// TestTotalsReportEvictedEntries: totals of a period whose journal entries
// were partly evicted say so (how many, begun before when) in GetTotals and
// every Reconciliation, instead of passing for complete; the next period's
// totals, complete, say nothing.
func TestTotalsReportEvictedEntries(t *testing.T) {
	env := &testEnv{journal: NewMemJournal(), clock: newTestClock()}
	before := time.Date(2026, 11, 28, 9, 30, 0, 0, time.UTC)
	srv, err := NewServer(ServerConfig{POIID: testPOIID, AllowPlainHTTP: true}, Deps{
		Engine: &fakeEngine{}, Journal: env.journal, Display: &fakeDisplay{}, Diagnoser: fakeDiagnoser{},
		Outbox: &fakeOutbox{}, Now: env.clock.Now, Synchroniser: fakeSynchroniser{},
		Ledger: gapLedger{MemJournal: env.journal, evicted: 7, before: before},
	}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx := testCtx(t)
	do := func(r *Request) *Response {
		t.Helper()
		body, err := JSONCodec{}.EncodeRequest(r)
		require.NoError(t, err)
		resp, err := JSONCodec{}.DecodeResponse(srv.Exchange(ctx, body))
		requireSuccess(t, resp, err)
		return resp
	}
	do(paymentReq("P1", "LOST", 100))
	const want = "incomplete=7&evictedBefore=2026-11-28T09%3A30%3A00.000Z"
	require.Equal(t, want, do(totalsReq("T1", nil, nil)).Status.AdditionalResponse)
	require.Equal(t, "differences=1&difference1=payment+POI-TX-1+is+unknown+to+the+platform&"+want,
		do(reconReq("A1", ReconAcquirerSynchronisation, "")).Status.AdditionalResponse)
	require.Equal(t, want, do(reconReq("C1", ReconSale, "")).Status.AdditionalResponse)
	require.Equal(t, want, do(reconReq("C2", ReconPrevious, "1")).Status.AdditionalResponse)
	require.Empty(t, do(totalsReq("T2", nil, nil)).Status.AdditionalResponse, "period 2 is complete")
}
