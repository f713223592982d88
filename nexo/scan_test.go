package nexo

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestScannedCodeFromPaymentRequest: the POS's scanned code is read from
// CardData.PaymentToken.TokenValue in JSON and XML, and a malformed one is
// refused at decode time with MessageFormat naming the field.
func TestScannedCodeFromPaymentRequest(t *testing.T) {
	for ext, c := range map[string]Codec{"json": JSONCodec{}, "xml": XMLCodec{}} {
		b, err := os.ReadFile("testdata/golden/18_payment_scanned.request." + ext)
		require.NoError(t, err)
		req, err := c.DecodeRequest(b)
		require.NoError(t, err, ext)
		require.Equal(t, "281666027690188713769014", req.Payment.ScannedCode, ext)
		require.Equal(t, []string{"KBSCAN"}, req.Payment.AllowedBrands)
	}
	b, err := os.ReadFile("testdata/golden/18_payment_scanned.request.json")
	require.NoError(t, err)
	const code = `"TokenValue": "281666027690188713769014"`
	require.Contains(t, string(b), code)
	for name, tc := range map[string]struct{ old, new, field string }{
		"too long":       {code, `"TokenValue": "` + strings.Repeat("9", maxScanLen+1) + `"`, "PaymentToken.TokenValue"},
		"empty":          {code, `"TokenValue": ""`, "PaymentToken.TokenValue"},
		"unknown type":   {`"TokenRequestedType": "Transaction"`, `"TokenRequestedType": "Forever"`, "PaymentToken.TokenRequestedType"},
		"entry mode too": {`["Scanned"]`, `["` + strings.Repeat("S", 40) + `"]`, "CardData.EntryMode"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := JSONCodec{}.DecodeRequest([]byte(strings.Replace(string(b), tc.old, tc.new, 1)))
			var ne *Error
			require.True(t, errors.As(err, &ne), "%v", err)
			require.Equal(t, MessageFormat, ne.Condition)
			require.Contains(t, ne.Error(), tc.field)
		})
	}
}
