package agent

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/mtls"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// Review item 5: a pending refund is re-sent at Every, doubled at each
// inconclusive answer up to MaxBackoff, with ±20% jitter; not every tick for
// ever.
func TestRefundDeskBackoff(t *testing.T) {
	d := &refundDesk{Every: time.Second, MaxBackoff: 8 * time.Second}
	now := time.Unix(1_000_000, 0)
	require.True(t, d.due("R1", now), "a refund never tried is due")
	for _, want := range []time.Duration{1, 2, 4, 8, 8, 8} {
		d.later("R1", now)
		wait := d.next["R1"].at.Sub(now)
		require.InDelta(t, float64(want*time.Second), float64(wait), float64(want*time.Second)/5+1, "after %d attempts", d.next["R1"].attempts)
		require.False(t, d.due("R1", now.Add(wait-time.Millisecond)))
		require.True(t, d.due("R1", now.Add(wait)))
	}
	require.True(t, d.due("R2", now), "each refund has its own backoff")
}

// Review item 6: when finishRefund cannot read the original payment (it
// holds the reservation), a refund answered anything but Success is pending
// (the desk decides), never journaled final: PPaaS may still refund it.
func TestFinishRefundOriginalUnreadableIsPending(t *testing.T) {
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "termagent.db"), store.Options{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	req := &nexo.Request{Header: nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: nexo.CategoryPayment, Type: nexo.TypeRequest, SaleID: "POS1", ServiceID: "R1", POIID: "POI1"},
		Payment: &nexo.PaymentRequest{SaleTransactionID: nexo.TransactionID{ID: "REFUND-R1", TimeStamp: time.Now().UTC()}, Type: nexo.PaymentRefund, Amount: nexo.Amount{Minor: 700, Currency: "EUR"}, OriginalPOITransactionID: nexo.TransactionID{ID: "gone"}}}
	j := journal{st: st, held: &heldAdvices{}}
	id, err := j.Begin(t.Context(), nexo.JournalEntry{SaleID: "POS1", ServiceID: "R1", Category: nexo.CategoryPayment, Request: req, State: nexo.TxInProgress, Started: time.Now()})
	require.NoError(t, err)

	resp := &nexo.Response{Header: req.Header, Status: nexo.ResponseStatus{Result: nexo.Failure, ErrorCondition: nexo.Aborted, AdditionalResponse: "aborted"}}
	resp.Header.Type = nexo.TypeResponse
	err = j.Finish(t.Context(), nexo.Txn{SaleID: "POS1", ServiceID: "R1", POITransactionID: id}, resp, time.Now())
	require.ErrorIs(t, err, errRefundPending)
	got, err := st.Txn(t.Context(), id)
	require.NoError(t, err)
	require.False(t, got.Final, "a refund whose reservation cannot be read is never journaled final")
	require.True(t, pendingMarked(got), "the desk owns it")
}

// Review item 2: Begin journaled a PPaaS method for a refund that named a
// brand, so a Reversal of the refund could replay a create under its id. A
// refund creates nothing at PPaaS: no method is journaled.
func TestBeginJournalsNoMethodForARefund(t *testing.T) {
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "termagent.db"), store.Options{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	j := journal{st: st, held: &heldAdvices{}, methods: func(nexo.PaymentRequest) (qr.Method, bool) { return qr.Method{PaymentType: "KB"}, true }}
	for _, typ := range []nexo.PaymentType{nexo.PaymentNormal, nexo.PaymentRefund} {
		p := &nexo.PaymentRequest{Type: typ, AllowedBrands: []string{"KB"}, Amount: nexo.Amount{Minor: 700, Currency: "EUR"}}
		id, err := j.Begin(t.Context(), nexo.JournalEntry{SaleID: "POS1", ServiceID: string(typ), Category: nexo.CategoryPayment, Request: &nexo.Request{Payment: p}, State: nexo.TxInProgress, Started: time.Now()})
		require.NoError(t, err)
		got, err := st.Txn(t.Context(), id)
		require.NoError(t, err)
		require.Equal(t, typ == nexo.PaymentNormal, viewQR(got).method != nil, "%s", typ)
	}
}

// deskRig is a journal holding a 20.00 EUR payment approved at PPaaS (as
// qr-1) and refund R1 of 7.00 reserved on it and pending, with an agent
// whose desk talks to ppaas (a fake platform).
func deskRig(t *testing.T, ppaasAnswer http.HandlerFunc) (*Agent, journal, *qr.Client, refundOrder, store.Txn) {
	t.Helper()
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "termagent.db"), store.Options{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	j := journal{st: st, held: &heldAdvices{}}
	ctx := t.Context()
	begin := func(sid string, p *nexo.PaymentRequest) (string, nexo.Header) {
		h := nexo.Header{ProtocolVersion: "3.0", Class: nexo.ClassService, Category: nexo.CategoryPayment, Type: nexo.TypeRequest, SaleID: "POS1", ServiceID: sid, POIID: "POI1"}
		id, err := j.Begin(ctx, nexo.JournalEntry{SaleID: "POS1", ServiceID: sid, Category: nexo.CategoryPayment, Request: &nexo.Request{Header: h, Payment: p}, State: nexo.TxInProgress, Started: time.Now()})
		require.NoError(t, err)
		h.Type = nexo.TypeResponse
		return id, h
	}
	paid := nexo.Amount{Minor: 2000, Currency: "EUR"}
	origID, h := begin("P1", &nexo.PaymentRequest{SaleTransactionID: nexo.TransactionID{ID: "S1", TimeStamp: time.Now().UTC()}, Type: nexo.PaymentNormal, Amount: paid})
	ok := &nexo.Response{Header: h, Status: nexo.ResponseStatus{Result: nexo.Success},
		Payment: &nexo.PaymentResponse{SaleTransactionID: nexo.TransactionID{ID: "S1"}, POITransactionID: nexo.TransactionID{ID: origID},
			Result: &nexo.PaymentResult{Type: nexo.PaymentNormal, AuthorizedAmount: paid, ApprovalCode: "qr-1", Brand: "KB"}}}
	require.NoError(t, j.Finish(ctx, nexo.Txn{SaleID: "POS1", ServiceID: "P1", POITransactionID: origID}, ok, time.Now()))

	refundID, _ := begin("R1", &nexo.PaymentRequest{SaleTransactionID: nexo.TransactionID{ID: "S2", TimeStamp: time.Now().UTC()}, Type: nexo.PaymentRefund,
		Amount: nexo.Amount{Minor: 700, Currency: "EUR"}, OriginalPOITransactionID: nexo.TransactionID{ID: origID}})
	mark, _ := json.Marshal(refundMark{RefundID: refundID, Amount: 700, Currency: "EUR"})
	require.NoError(t, st.AppendTxn(ctx, origID, store.Transition{At: time.Now(), State: stateRefundReserved, Data: mark}))
	require.NoError(t, st.AppendTxn(ctx, refundID, store.Transition{At: time.Now(), State: stateRefundPending}))
	rt, err := st.Txn(ctx, refundID)
	require.NoError(t, err)
	o, isRefund := refundOrderOf(rt)
	require.True(t, isRefund)

	srv := httptest.NewServer(ppaasAnswer)
	t.Cleanup(srv.Close)
	a := &Agent{log: slog.New(slog.DiscardHandler), clock: mtls.NewClock(time.Time{}, time.Now), poiid: "POI1"}
	return a, j, qr.NewClient(srv.Client(), srv.URL, qr.Retry{}), o, rt
}

// Review item 5: a refund PPaaS reports failed once stayed pending for ever;
// an unknown refund status is still pending. A failed one goes to a person
// (the amount stays reserved: the agent does not take the platform's word
// "failed" as "nothing will be refunded").
func TestRefundDeskFailedRefundIsManual(t *testing.T) {
	for _, tc := range []struct {
		status string
		want   deskOutcome
	}{{"failed", refundManual}, {"SOMETHING_NEW", refundPending}, {"refunded", refundSettled}} {
		t.Run(tc.status, func(t *testing.T) {
			a, j, client, o, rt := deskRig(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				require.True(t, strings.HasSuffix(r.URL.Path, "/transactions/qr-1/refund"), r.URL.Path)
				_, _ = fmt.Fprintf(w, `{"refundId":"rf-1","clientRefundId":"R1","transactionId":"qr-1","status":%q,"amount":{"amount":700,"currency":"EUR"},"createdAt":"2026-12-01T00:00:00Z"}`, tc.status)
			})
			desk := &refundDesk{Every: time.Second, MaxBackoff: time.Minute, MaxAge: time.Hour}
			require.Equal(t, tc.want, a.settleRefund(t.Context(), j, client, desk, o, rt))
			got, err := j.st.Txn(t.Context(), o.id)
			require.NoError(t, err)
			e := toEntry(got)
			switch tc.want {
			case refundManual:
				require.Equal(t, nexo.TxDone, e.State, "TransactionStatus answers the manual case")
				require.Contains(t, e.Response.Status.AdditionalResponse, `PPaaS reports the refund "failed"`)
				require.Contains(t, e.Response.Status.AdditionalResponse, "manual action needed")
				require.False(t, got.Final, "the desk still asks about it")
				require.Equal(t, int64(1), desk.gaveUp.Load())
			case refundPending:
				require.Equal(t, nexo.TxInProgress, e.State)
			case refundSettled:
				require.True(t, got.Final)
				require.Equal(t, nexo.Success, e.Response.Status.Result)
			}
			orig, err := j.st.Txn(t.Context(), o.original)
			require.NoError(t, err)
			_, held := reservedIn(orig, o.id)
			require.True(t, held, "the amount stays reserved")
		})
	}
}
