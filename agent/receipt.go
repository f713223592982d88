package agent

import (
	"encoding/json"
	"time"

	"github.com/termagent/termagent/internal/jsonw"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/store"
)

// DigitalReceipt is the digital-receipt outbox event (issue 14): the receipts
// of a payment, refund or reversal that ended with Success, the same lines as
// the response's PaymentReceipt, delivered to the PPaaS device events endpoint
// like a transaction result (X-Event-Kind: receipt). It commits with the final
// response (journal.finish), so a Success the POS was given always has its
// receipt queued. `digital_receipts: false` turns it off.
type DigitalReceipt struct {
	POITransactionID string            `json:"poiTransactionId"`
	SaleID           string            `json:"saleId"`
	ServiceID        string            `json:"serviceId"`
	Category         string            `json:"category"`
	Receipts         []ReceiptDocument `json:"receipts"`
	Time             time.Time         `json:"time"`
}

// ReceiptDocument is one receipt: its Nexo DocumentQualifier and text lines.
type ReceiptDocument struct {
	DocumentQualifier string   `json:"documentQualifier"`
	Lines             []string `json:"lines"`
}

// receiptEvents is the digital receipt of a successful final response, when
// digital receipts are on (none otherwise).
func (j journal) receiptEvents(t store.Txn, resp *nexo.Response) []store.Event {
	if !j.receipts || resp.Status.Result != nexo.Success {
		return nil
	}
	var rs []nexo.PaymentReceipt
	switch {
	case resp.Payment != nil:
		rs = resp.Payment.Receipts
	case resp.Reversal != nil:
		rs = resp.Reversal.Receipts
	}
	if len(rs) == 0 {
		return nil
	}
	d := DigitalReceipt{POITransactionID: t.ID, SaleID: resp.Header.SaleID, ServiceID: resp.Header.ServiceID,
		Category: string(resp.Header.Category), Time: time.Now().UTC(), Receipts: make([]ReceiptDocument, 0, len(rs))}
	for _, r := range rs {
		d.Receipts = append(d.Receipts, ReceiptDocument{DocumentQualifier: r.DocumentQualifier, Lines: r.Lines})
	}
	b, err := marshalReceipt(d)
	if err != nil {
		return nil
	}
	return []store.Event{{Kind: store.KindReceipt, Payload: b, Key: stableKey("receipt", t.ID)}}
}

// marshalReceipt is json.Marshal(d), byte for byte, without reflection: it
// runs on every successful payment's final write.
func marshalReceipt(d DigitalReceipt) ([]byte, error) {
	b := make([]byte, 0, 1024)
	b = append(b, `{"poiTransactionId":`...)
	b = jsonw.String(b, d.POITransactionID)
	b = append(b, `,"saleId":`...)
	b = jsonw.String(b, d.SaleID)
	b = append(b, `,"serviceId":`...)
	b = jsonw.String(b, d.ServiceID)
	b = append(b, `,"category":`...)
	b = jsonw.String(b, d.Category)
	b = append(b, `,"receipts":`...)
	if d.Receipts == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, r := range d.Receipts {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"documentQualifier":`...)
			b = jsonw.String(b, r.DocumentQualifier)
			b = append(b, `,"lines":`...)
			b = jsonw.Strings(b, r.Lines)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"time":`...)
	b, ok := jsonw.Time(b, d.Time)
	if !ok {
		return json.Marshal(d) // its error
	}
	return append(b, '}'), nil
}
