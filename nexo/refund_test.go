package nexo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The refund fields are validated like every other: a reference on a Normal
// payment and a ReversedAmount that is not a positive decimal are
// MessageFormat errors naming the field.
func TestRefundFieldsValidated(t *testing.T) {
	refund, err := os.ReadFile(filepath.Join("testdata", "golden", "04_refund.request.json"))
	require.NoError(t, err)
	rev, err := os.ReadFile(filepath.Join("testdata", "golden", "17_reversal_partial.request.json"))
	require.NoError(t, err)

	req, err := JSONCodec{}.DecodeRequest(refund)
	require.NoError(t, err)
	require.Equal(t, PaymentRefund, req.Payment.Type)
	require.Equal(t, "POI-TX-1", req.Payment.OriginalPOITransactionID.ID)

	for _, tc := range []struct {
		name, body, field, want string
	}{
		{"reference on a Normal payment", strings.Replace(string(refund), `"PaymentType": "Refund"`, `"PaymentType": "Normal"`, 1),
			"PaymentRequest.PaymentData.OriginalPOITransaction", "only allowed with PaymentType Refund"},
		{"reference without a transaction id", strings.Replace(string(refund), `"TransactionID": "POI-TX-1"`, `"TransactionID": ""`, 1),
			"PaymentRequest.PaymentData.OriginalPOITransaction.POITransactionID", ""},
		{"zero", strings.Replace(string(rev), "5.50", "0", 1), "ReversalRequest.ReversedAmount", "greater than zero"},
		{"negative", strings.Replace(string(rev), "5.50", "-5.50", 1), "ReversalRequest.ReversedAmount", "negative"},
		{"four decimals", strings.Replace(string(rev), "5.50", "5.5001", 1), "ReversalRequest.ReversedAmount", "decimals"},
		{"text", strings.Replace(string(rev), "5.50", `"five"`, 1), "ReversalRequest.ReversedAmount", "not a decimal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := JSONCodec{}.DecodeRequest([]byte(tc.body))
			var ne *Error
			require.ErrorAs(t, err, &ne)
			require.Equal(t, MessageFormat, ne.Condition)
			require.Contains(t, ne.Text, tc.field)
			require.Contains(t, ne.Text, tc.want)
		})
	}
}

// A partial reversal counts its ReversedAmount in totals, not the whole
// payment; an amount larger than the payment, or not in its currency's
// decimals, is not counted at all.
func TestPartiallyReversedInTotals(t *testing.T) {
	p := &PaymentResult{AuthorizedAmount: Amount{Minor: 1000, Currency: "EUR"}}
	got, ok := partiallyReversed(p, "")
	require.True(t, ok)
	require.Equal(t, int64(1000), got.AuthorizedAmount.Minor)
	got, ok = partiallyReversed(p, "4.00")
	require.True(t, ok)
	require.Equal(t, int64(400), got.AuthorizedAmount.Minor)
	require.Equal(t, int64(1000), p.AuthorizedAmount.Minor, "the original is left alone")
	_, ok = partiallyReversed(p, "10.01")
	require.False(t, ok)
	_, ok = partiallyReversed(p, "1.001")
	require.False(t, ok)
}

// RefundExceeds names what remains.
func TestRefundExceedsNamesTheRemainder(t *testing.T) {
	e := RefundExceeds(Amount{500, "EUR"}, Amount{400, "EUR"}, Amount{2000, "EUR"}, "tx-1")
	require.Equal(t, Refusal, e.Condition)
	require.Equal(t, "refund of 5.00 EUR exceeds what remains refundable on POI transaction tx-1: 4.00 EUR (paid 20.00 EUR, 16.00 EUR already refunded or pending)", e.Text)
}

// A reversal's receipts are reprinted by TransactionStatus like a payment's:
// those asked for, marked DUPLICATE, the original lines unchanged.
func TestReversalReceiptsReprinted(t *testing.T) {
	r := &Response{Header: Header{POIID: "POI1"}, Status: ResponseStatus{Result: Success},
		Reversal: &ReversalResponse{OriginalPOITransactionID: TransactionID{ID: "tx-1"}, POITransactionID: TransactionID{ID: "rv-1"}}}
	r.Reversal.Receipts = ReversalReceipts(r, Amount{550, "EUR"}, "Shop", false)
	require.Len(t, r.Reversal.Receipts, 2)
	require.Contains(t, r.Reversal.Receipts[0].Lines, "Amount refunded: 5.50 EUR")
	require.Contains(t, r.Reversal.Receipts[0].Lines, "Original POI transaction: tx-1")
	orig := append([]string(nil), r.Reversal.Receipts[1].Lines...)
	reprintReversal(r, []string{CustomerReceipt})
	require.Len(t, r.Reversal.Receipts, 1)
	require.Equal(t, CustomerReceipt, r.Reversal.Receipts[0].DocumentQualifier)
	require.Equal(t, append([]string{"DUPLICATE"}, orig...), r.Reversal.Receipts[0].Lines)
	require.Nil(t, ReversalReceipts(&Response{Status: ResponseStatus{Result: Failure}, Reversal: &ReversalResponse{}}, Amount{}, "", false))
}
