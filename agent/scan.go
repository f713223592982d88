package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// Consumer-presented codes (PPaaS merchantscan). The code reaches a payment
// either with the PaymentRequest (the POS's scanner: nexo/scan.go names the
// field) or from the terminal's scanner, which POSTs it to the admin listener:
//
//	POST /scan  Content-Type: application/json  {"code":"281666027690188713769014"}
//	→ 202 {"clientTransactionId":"…"}  the payment waiting for a code took it
//	→ 400 malformed (empty, longer than 512, not printable ASCII): the payment keeps waiting
//	→ 409 no payment is waiting for a code
//
// The admin listener is loopback only. The JSON content type is required so a
// web page open in a browser on the terminal cannot post a code (a cross-site
// form cannot send application/json without a CORS preflight, which is never
// answered).

// stateScanned is the journal state of the code the terminal's scanner read
// for a merchantscan payment (data: scannedVersion, then the code). Unlike the QR states it is
// durable, written before the create is sent (qr.Recorder.RecordScan): after
// a crash, recovery and a reversal replay the create as it was sent, same
// clientTransactionId and same code. A code the POS's scanner read is in the
// journaled request already. The code is the consumer's payment credential:
// journaled as the request is, never logged.
const stateScanned = "agent.scanned"

// scannedVersion leads stateScanned's data, the code after it.
const scannedVersion = 1

// RecordScan implements qr.Recorder.
func (j journal) RecordScan(ctx context.Context, ctid, code string) error {
	if err := ppaas.CheckScannedPaymentID(code); err != nil { // bounded as POST /scan bounds it
		return fmt.Errorf("journal scanned code of %s: %w", ctid, err)
	}
	data := append([]byte{scannedVersion}, code...)
	if err := j.st.AppendTxn(ctx, ctid, store.Transition{At: time.Now(), State: stateScanned, Data: data}); err != nil {
		return fmt.Errorf("journal scanned code of %s: %w", ctid, err)
	}
	return nil
}

// readScanned reads stateScanned's data: the code, or "" when the record is
// not one RecordScan writes.
func readScanned(data []byte) string {
	if len(data) < 2 || data[0] != scannedVersion {
		return ""
	}
	code := string(data[1:])
	if ppaas.CheckScannedPaymentID(code) != nil {
		return ""
	}
	return code
}

// scannedCode is the code a payment's create carried: the POS's (with the
// request) or the terminal's scanner's (journaled apart); "" for none.
func (v qrView) scannedCode() string {
	if v.payment != nil && v.payment.ScannedCode != "" {
		return v.payment.ScannedCode
	}
	return v.scanned
}

// precheckScan refuses a malformed scanned code before the payment is journaled.
func precheckScan(req nexo.PaymentRequest) error {
	if req.ScannedCode == "" {
		return nil
	}
	if err := ppaas.CheckScannedPaymentID(req.ScannedCode); err != nil {
		return nexo.Errorf(nexo.MessageFormat, "PaymentRequest.PaymentData.PaymentInstrumentData.CardData.PaymentToken.TokenValue: %v", err)
	}
	return nil
}

// scanError maps the end of a merchantscan payment that never got a code (nil
// for any other error). Nothing was created at PPaaS: nothing was charged.
func scanError(err error, timeout time.Duration) *nexo.Error {
	switch {
	case errors.Is(err, qr.ErrNoScan):
		return nexo.Errorf(nexo.Cancel, "no customer code was scanned within %s; nothing was charged", timeout)
	case errors.Is(err, qr.ErrScanAborted):
		return nexo.Errorf(nexo.Aborted, "aborted while waiting for the customer's code; nothing was charged")
	case errors.Is(err, ppaas.ErrScannedPaymentID):
		return nexo.Errorf(nexo.MessageFormat, "%v", err)
	}
	return nil
}

// maxAcquirerText is the Nexo length of MerchantID and AcquirerPOIID
// (Max35Text) and of AcquirerID.
const maxAcquirerText = 35

// enrich fills the response's merchant and acquirer from the platform's
// enrichment. A value that does not fit its Nexo field (longer than 35
// characters, or not printable) is left out and logged: a cut identifier would
// name another merchant.
func enrich(res *nexo.PaymentResult, en ppaas.Enrichment, log *slog.Logger) {
	fit := func(field, v string) string {
		if v == "" {
			return ""
		}
		if utf8.RuneCountInString(v) > maxAcquirerText || !printable(v) {
			log.Warn("platform enrichment does not fit its Nexo field; left out of the PaymentResponse", "field", field, "length", len(v))
			return ""
		}
		return v
	}
	res.MerchantID = fit("MerchantID", en.MerchantID)
	res.AcquirerPOIID = fit("AcquirerPOIID", en.AcquirerPOIID)
	if id := fit("AcquirerID", en.AcquirerID); id != "" {
		res.AcquirerID = id
	}
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || !utf8.ValidRune(r) {
			return false
		}
	}
	return utf8.ValidString(s)
}

// ScanRequest is the body of POST /scan.
type ScanRequest struct {
	Code string `json:"code"`
}

// maxScanBody bounds POST /scan's body: a code of ppaas.MaxScannedPaymentIDLen
// and its JSON.
const maxScanBody = 1 << 10

// Scan hands a code the terminal's scanner read to the payment waiting for
// one (what POST /scan does).
func (a *Agent) Scan(code string) (qr.ScanResult, error) {
	a.mu.Lock()
	e := a.scanner
	a.mu.Unlock()
	if e == nil {
		return qr.ScanResult{}, errors.New("scan: the agent is not running")
	}
	return e.Scan(code)
}

func (a *Agent) handleScan(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		http.Error(w, "scan: Content-Type must be application/json", http.StatusUnsupportedMediaType)
		return
	}
	var in ScanRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxScanBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		http.Error(w, fmt.Sprintf("scan: body must be {\"code\":\"…\"} of at most %d bytes", maxScanBody), http.StatusBadRequest)
		return
	}
	res, err := a.Scan(in.Code)
	switch {
	case errors.Is(err, ppaas.ErrScannedPaymentID):
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	case errors.Is(err, qr.ErrNoScanWaiting):
		http.Error(w, "scan: "+err.Error(), http.StatusConflict)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	a.log.Info("scanned code handed to the waiting payment", "poi_transaction", res.ClientTransactionID)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(map[string]string{"clientTransactionId": res.ClientTransactionID})
}
