package agent

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
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
