package world

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim"
)

// ScanBrands are the brands the world adds to the agent's apm_brands for
// consumer-presented payments: the terminal (or the POS) scans the
// consumer's wallet code.
const ScanBrands = "KBSCAN=KB:merchantscan,PENNYMATICSCAN=PENNYMATIC:merchantscan"

// agentScanner hands the virtual terminal's scanned codes to the agent: over
// its admin POST /scan (what a real terminal's scanner process calls) when the
// admin listener is up, in-process otherwise.
func agentScanner(a *agent.Agent) sim.ScanFunc {
	return func(ctx context.Context, _, code string) (string, error) {
		admin := a.AdminURL()
		if admin == "" {
			res, err := a.Scan(code)
			return res.ClientTransactionID, err
		}
		body, _ := json.Marshal(agent.ScanRequest{Code: code})
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, admin+"/scan", bytes.NewReader(body))
		if err != nil {
			return "", err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", fmt.Errorf("post the scan to the agent: %w", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		if resp.StatusCode != http.StatusAccepted {
			return "", fmt.Errorf("the agent refused the scan (%d): %s", resp.StatusCode, bytes.TrimSpace(b))
		}
		var out struct {
			ClientTransactionID string `json:"clientTransactionId"`
		}
		if err := json.Unmarshal(b, &out); err != nil {
			return "", fmt.Errorf("the agent's scan answer: %w", err)
		}
		return out.ClientTransactionID, nil
	}
}

// ScannedPaymentRequest is a Payment whose code the POS's own scanner read
// from the consumer's wallet: it travels in
// PaymentData.PaymentInstrumentData.CardData.PaymentToken (nexo/scan.go).
func (p *POS) ScannedPaymentRequest(serviceID string, minor int64, currency, brand, code string) *nexo.Request {
	r := p.PaymentRequest(serviceID, minor, currency, brand)
	r.Payment.ScannedCode = code
	return r
}
