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
