package agent

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

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
	raw, err := nexo.JSONCodec{}.EncodeRequest(req)
	require.NoError(t, err)
	j := journal{st: st, held: &heldAdvices{}}
	id, err := j.Begin(t.Context(), nexo.JournalEntry{SaleID: "POS1", ServiceID: "R1", Category: nexo.CategoryPayment, Request: raw, Payment: req.Payment, State: nexo.TxInProgress, Started: time.Now()})
	require.NoError(t, err)

	resp := &nexo.Response{Header: req.Header, Status: nexo.ResponseStatus{Result: nexo.Failure, ErrorCondition: nexo.Aborted, AdditionalResponse: "aborted"}}
	resp.Header.Type = nexo.TypeResponse
	b, err := nexo.JSONCodec{}.EncodeResponse(resp)
	require.NoError(t, err)
	err = j.Finish(t.Context(), nexo.Txn{SaleID: "POS1", ServiceID: "R1", POITransactionID: id}, b, time.Now())
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
		id, err := j.Begin(t.Context(), nexo.JournalEntry{SaleID: "POS1", ServiceID: string(typ), Category: nexo.CategoryPayment, Payment: p, State: nexo.TxInProgress, Started: time.Now()})
		require.NoError(t, err)
		got, err := st.Txn(t.Context(), id)
		require.NoError(t, err)
		require.Equal(t, typ == nexo.PaymentNormal, viewQR(got).method != nil, "%s", typ)
	}
}
