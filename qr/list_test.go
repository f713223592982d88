package qr

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A page holding one transaction the client cannot decode: List fails on
// it (reconciliation must not skip what it cannot read); ListSkipping
// leaves it out, counts it and keeps the page's next, so the after-sale
// sweep gets past it (review: the sweep's walk stopped at that page for as
// long as the transaction was listed).
func TestListSkippingLeavesOutWhatItCannotDecode(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"next": "t3", "transactions": []any{
			map[string]any{"transactionId": "t1", "clientTransactionId": "c1", "status": "approved", "sequence": 1},
			map[string]any{"clientTransactionId": "c2", "status": "approved"}, // no transactionId
			map[string]any{"transactionId": "t3", "clientTransactionId": "c3", "status": "refunded", "sequence": 3},
		}})
	}))
	t.Cleanup(srv.Close)
	c := NewClient(srv.Client(), srv.URL, fastRetry)
	from, to := time.Now().Add(-time.Hour), time.Now()

	_, err := c.List(t.Context(), from, to, "", 10)
	require.ErrorContains(t, err, "transaction 1")

	p, err := c.ListSkipping(t.Context(), from, to, "", 10)
	require.NoError(t, err)
	require.Len(t, p.Transactions, 2)
	require.Equal(t, "t1", p.Transactions[0].TransactionID)
	require.Equal(t, "t3", p.Transactions[1].TransactionID)
	require.Equal(t, 1, p.Skipped)
	require.Equal(t, "t3", p.Next)
}
