package ppaas

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckScannedPaymentID(t *testing.T) {
	for _, tc := range []struct {
		name, code string
		ok         bool
	}{
		{"the seed's code", "281666027690188713769014", true},
		{"base64 EMV payload", "hQVDUFYwMWETTwegAAAAVVVVUAhQcm9kdWN0MVcTERERIiIiMzMzRNEhIhEjRVVfIAM=", true},
		{"url", "https://wallet.example/c?id=1&t=2%20", true},
		{"longest", strings.Repeat("7", MaxScannedPaymentIDLen), true},
		{"empty", "", false},
		{"too long", strings.Repeat("7", MaxScannedPaymentIDLen+1), false},
		{"space", "2816 6602", false},
		{"newline", "2816\n[ERROR] forged", false},
		{"nul", "2816\x00", false},
		{"non-ascii", "2816é", false},
		{"escape", "\x1b[2J2816", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckScannedPaymentID(tc.code)
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrScannedPaymentID)
		})
	}
	r := CreateRequest{PaymentType: "KB", PaymentScenario: MerchantScan, ScannedPaymentID: "12 34", ClientTransactionID: "x",
		PaymentAmount: Amount{Amount: 1, Currency: "EUR"}, Order: Order{OrderID: "o"}}
	require.ErrorIs(t, r.Validate(), ErrInvalidRequest, "a malformed code is refused before any I/O")
}

func FuzzCheckScannedPaymentID(f *testing.F) {
	f.Add("281666027690188713769014")
	f.Add("a b")
	f.Fuzz(func(t *testing.T, code string) {
		if CheckScannedPaymentID(code) != nil {
			return
		}
		require.LessOrEqual(t, len(code), MaxScannedPaymentIDLen)
		for _, c := range []byte(code) {
			require.True(t, c > ' ' && c < 0x7f, "accepted byte 0x%02x", c)
		}
	})
}

// TestDecodeEnrichment: the merchant and acquirer PPaaS adds (an assumed,
// optional part of the body) are read when present and absent otherwise.
func TestDecodeEnrichment(t *testing.T) {
	tx, err := DecodeTransaction([]byte(`{"transactionId":"t","status":"approved","merchantId":"M-1","acquirerId":"ACQ","acquirerPoiId":"T-9"}`))
	require.NoError(t, err)
	require.Equal(t, Enrichment{MerchantID: "M-1", AcquirerID: "ACQ", AcquirerPOIID: "T-9"}, tx.Enrichment)
	tx, err = DecodeTransaction([]byte(`{"transactionId":"t","status":"approved"}`))
	require.NoError(t, err)
	require.Equal(t, Enrichment{}, tx.Enrichment)
}
