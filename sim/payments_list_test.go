package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/termagent/termagent/ppaas"
)

// TestListTransactionsPagesOneDevice: the (assumed) listing endpoint returns
// only the caller's transactions in the window, oldest first, page by page.
func TestListTransactionsPagesOneDevice(t *testing.T) {
	a := newAdvPPaaS(t, ProvidersConfig{})
	as := func(serial string, h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			h(w, r.WithContext(context.WithValue(r.Context(), deviceKey{}, Device{Serial: serial})))
		}
	}
	call := func(serial, method, target string, body any) (int, []byte) {
		b, _ := json.Marshal(body)
		mux := http.NewServeMux()
		mux.HandleFunc("POST /qrcode-payment/v1/transactions", as(serial, a.p.pay.handleCreate))
		mux.HandleFunc("GET /qrcode-payment/v1/transactions", as(serial, a.p.pay.handleList))
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(method, target, bytes.NewReader(b)))
		return rec.Code, rec.Body.Bytes()
	}
	from := time.Now().Add(-time.Minute)
	var want []string
	for i, serial := range []string{advSerial, "OTHER", advSerial, advSerial, advSerial, advSerial} {
		code, body := call(serial, http.MethodPost, "/qrcode-payment/v1/transactions", ppaas.CreateRequest{
			PaymentType: "KB", PaymentScenario: ppaas.ConsumerScan, ClientTransactionID: uuid.NewString(),
			PaymentAmount: ppaas.Amount{Amount: 100, Currency: "EUR"}, Order: ppaas.Order{OrderID: fmt.Sprintf("o%d", i)},
		})
		require.Equal(t, http.StatusCreated, code, string(body))
		if serial == advSerial {
			tx, err := ppaas.DecodeTransaction(body)
			require.NoError(t, err)
			want = append(want, tx.ClientTransactionID)
		}
	}
	to := time.Now().Add(time.Minute)
	var got []string
	after := ""
	for page := 0; ; page++ {
		require.Less(t, page, 4)
		q := url.Values{"createdFrom": {from.Format(time.RFC3339Nano)}, "createdTo": {to.Format(time.RFC3339Nano)}, "limit": {"2"}, "after": {after}}
		code, body := call(advSerial, http.MethodGet, "/qrcode-payment/v1/transactions?"+q.Encode(), nil)
		require.Equal(t, http.StatusOK, code, string(body))
		var pg struct {
			Transactions []ppaas.Transaction
			Next         string
		}
		require.NoError(t, json.Unmarshal(body, &pg))
		require.LessOrEqual(t, len(pg.Transactions), 2)
		for _, tx := range pg.Transactions {
			got = append(got, tx.ClientTransactionID)
		}
		if pg.Next == "" {
			break
		}
		after = pg.Next
	}
	require.ElementsMatch(t, want, got, "the other device's transaction is not listed")
	require.Len(t, got, 5)

	code, _ := call(advSerial, http.MethodGet, "/qrcode-payment/v1/transactions?createdFrom=x&createdTo=y", nil)
	require.Equal(t, http.StatusBadRequest, code)
	q := url.Values{"createdFrom": {from.Format(time.RFC3339Nano)}, "createdTo": {to.Format(time.RFC3339Nano)}, "limit": {"201"}}
	code, _ = call(advSerial, http.MethodGet, "/qrcode-payment/v1/transactions?"+q.Encode(), nil)
	require.Equal(t, http.StatusBadRequest, code)
}

func TestTransactionLookup(t *testing.T) {
	p := &PPaaS{pay: &payments{byID: map[string]*SimTransaction{
		"qr-1": {Transaction: ppaas.Transaction{TransactionID: "qr-1", ClientTransactionID: "c-1"}},
		"qr-2": {Transaction: ppaas.Transaction{TransactionID: "qr-2", ClientTransactionID: "qr-1x"}},
	}}}
	for id, want := range map[string]string{"qr-1": "qr-1", "c-1": "qr-1", "qr-1x": "qr-2"} {
		tx, ok := p.Transaction(id)
		require.True(t, ok, id)
		require.Equal(t, want, tx.TransactionID, id)
	}
	_, ok := p.Transaction("nope")
	require.False(t, ok)
}

// The after-sale sweep reads provider refunds and chargebacks from this
// listing: after provider-refund and provider-chargeback it lists the
// transaction refunded in full, and a chargeback says so in its status
// reason (the listing carries no provider status).
func TestListShowsProviderRefundAndChargeback(t *testing.T) {
	a := newAdvPPaaS(t, ProvidersConfig{})
	from := time.Now().Add(-time.Minute)
	refunded, charged, kept := a.approved("o-refund", 2000), a.approved("o-chargeback", 1500), a.approved("o-kept", 700)
	_, err := a.p.Act(refunded, ActionProviderRefund)
	require.NoError(t, err)
	_, err = a.p.Act(charged, ActionChargeback)
	require.NoError(t, err)

	q := url.Values{"createdFrom": {from.Format(time.RFC3339Nano)}, "createdTo": {time.Now().Add(time.Minute).Format(time.RFC3339Nano)}}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/qrcode-payment/v1/transactions?"+q.Encode(), nil)
	a.p.pay.handleList(rec, req.WithContext(context.WithValue(req.Context(), deviceKey{}, Device{Serial: advSerial})))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var pg struct {
		Transactions []json.RawMessage
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &pg))
	statuses := &ppaas.Statuses{}
	got := map[string]ppaas.Transaction{}
	for _, raw := range pg.Transactions {
		tx, err := statuses.DecodeTransaction(raw)
		require.NoError(t, err)
		got[tx.TransactionID] = tx
	}
	require.Len(t, got, 3)
	chargedBack := func(tx ppaas.Transaction) bool {
		return statuses.ChargedBack(ppaas.Event{Status: tx.Status, RawStatus: tx.RawStatus, StatusReason: tx.StatusReason})
	}
	for id, want := range map[string]struct {
		amount      int64
		chargedBack bool
	}{refunded: {2000, false}, charged: {1500, true}} {
		tx := got[id]
		require.Equal(t, ppaas.Refunded, tx.Status, id)
		require.Equal(t, want.amount, tx.RefundedAmount, id)
		require.Greater(t, tx.Sequence, int64(1), "a later sequence than the approval's")
		require.Equal(t, want.chargedBack, chargedBack(tx), "%s: %q", id, tx.StatusReason)
	}
	require.Equal(t, ppaas.Approved, got[kept].Status)
	require.Zero(t, got[kept].RefundedAmount)
}
