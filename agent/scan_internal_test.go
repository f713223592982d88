package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
)

// TestEnrichKeepsNexoLengths: the platform's merchant and acquirer reach the
// PaymentResponse only when they fit their Max35Text fields; a longer or
// unprintable value is left out (a cut id would name another merchant), and
// without an acquirer from the platform the agent's own AcquirerID stays.
func TestEnrichKeepsNexoLengths(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name string
		in   ppaas.Enrichment
		want nexo.PaymentResult
	}{
		{"all fit", ppaas.Enrichment{MerchantID: "MID-1", AcquirerID: "ACQ", AcquirerPOIID: "TID-9"},
			nexo.PaymentResult{AcquirerID: "ACQ", MerchantID: "MID-1", AcquirerPOIID: "TID-9"}},
		{"none sent", ppaas.Enrichment{}, nexo.PaymentResult{AcquirerID: "PPaaS:KB"}},
		{"exactly 35", ppaas.Enrichment{MerchantID: strings.Repeat("m", 35)}, nexo.PaymentResult{AcquirerID: "PPaaS:KB", MerchantID: strings.Repeat("m", 35)}},
		{"too long", ppaas.Enrichment{MerchantID: strings.Repeat("m", 36), AcquirerID: strings.Repeat("a", 40), AcquirerPOIID: "T"},
			nexo.PaymentResult{AcquirerID: "PPaaS:KB", AcquirerPOIID: "T"}},
		{"control character", ppaas.Enrichment{AcquirerPOIID: "T\n1"}, nexo.PaymentResult{AcquirerID: "PPaaS:KB"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := nexo.PaymentResult{AcquirerID: "PPaaS:KB"}
			enrich(&got, tc.in, log)
			require.Equal(t, tc.want, got)
		})
	}
}

// TestCreateRequestKeepsTheScannedCode: a merchantscan payment whose create
// must be replayed from the journal (a reversal or recovery before PPaaS
// answered) sends the code the POS scanned, as the first create did; without
// it the replay would fail validation and the payment could not be reversed.
func TestCreateRequestKeepsTheScannedCode(t *testing.T) {
	v := qrView{
		payment: &nexo.PaymentRequest{Amount: nexo.Amount{Minor: 500, Currency: "EUR"}, ScannedCode: "281666027690188713769014"},
		method:  &qr.Method{PaymentType: "KB", Scenario: ppaas.MerchantScan},
	}
	c, ok := journal{}.createRequest("5f0c7c1e-8d6b-4a49-9a43-0c2b8f7d3e10", v)
	require.True(t, ok)
	require.Equal(t, "281666027690188713769014", c.ScannedPaymentID)
	require.NoError(t, c.Validate())
}

// TestScanErrorToNexo: a merchantscan payment that never got a code ends
// Cancel (timeout) or Aborted, both saying nothing was charged; a malformed
// code is MessageFormat; other errors are not this mapping's.
func TestScanErrorToNexo(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("qr pay: %w", err) }
	ne := scanError(wrap(qr.ErrNoScan), 2*time.Minute)
	require.Equal(t, nexo.Cancel, ne.Condition)
	require.Contains(t, ne.Error(), "within 2m0s; nothing was charged")
	ne = scanError(wrap(qr.ErrScanAborted), time.Minute)
	require.Equal(t, nexo.Aborted, ne.Condition)
	require.Contains(t, ne.Error(), "nothing was charged")
	ne = scanError(wrap(ppaas.CheckScannedPaymentID("a b")), time.Minute)
	require.Equal(t, nexo.MessageFormat, ne.Condition)
	require.Nil(t, scanError(errors.New("socket reset"), time.Minute))
}
