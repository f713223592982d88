package sim

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/termagent/termagent/ppaas"
)

// enrichment is what the simulated PPaaS adds to a device's transaction: the
// PPaaS document says the platform "enriches the content by providing
// additional data such as merchant ID and acquirer" before forwarding it to the
// provider. Where a real platform returns them is not documented; the
// simulator sends them in every Transaction body (ppaas.Enrichment). The
// merchant is the device's client id (one merchant per credential set), the
// acquirer a fixed demo acquirer, the acquirer's terminal id the serial.
func enrichment(dev Device) ppaas.Enrichment {
	h := sha256.Sum256([]byte(dev.ClientID))
	return ppaas.Enrichment{
		MerchantID:    "MID-" + hex.EncodeToString(h[:6]),
		AcquirerID:    SimAcquirerID,
		AcquirerPOIID: "TID-" + dev.Serial,
	}
}

// SimAcquirerID is the acquirer the simulated PPaaS names in its enrichment.
const SimAcquirerID = "SIMACQ"
