package nexo

import (
	"github.com/termagent/termagent/internal/jsonw"
)

// appendPaymentResponseJSON appends what JSONCodec's EncodeResponse writes
// for r, byte for byte, when r is a Payment response (approved or not); ok
// is false otherwise, and for a response EncodeResponse refuses, and the
// caller encodes with the codec. The answer to every payment is encoded on
// its path to the POS, and json.Marshal's reflection over the receipts was
// most of that; FuzzPaymentResponseJSON holds this to the codec's bytes.
//
// The shape is responseToWire's for the Payment category (paymentResponseToWire):
// a MessageHeader of the header's non-empty fields, then a PaymentResponse
// with Response (always), SaleData, POIData, PaymentResult and
// PaymentReceipt, each member omitted when empty, in the wire structs'
// field order.
func appendPaymentResponseJSON(b []byte, r *Response) (_ []byte, ok bool) {
	if r.Header.Category != CategoryPayment {
		return b, false
	}
	p := r.Payment
	var amount []byte // AuthorizedAmount, formatted first: its error is the codec's
	if p != nil && p.Result != nil && p.Result.AuthorizedAmount.Currency != "" {
		a := p.Result.AuthorizedAmount
		exp, known := CurrencyExponent(a.Currency)
		if !known || a.Minor < 0 {
			return b, false
		}
		var buf [48]byte
		amount = appendAmountDigits(buf[:0], a.Minor, exp)
	}
	h := r.Header
	b = append(b, `{"SaleToPOIResponse":{"MessageHeader":{`...)
	b = appendHeaderJSON(b, h)
	b = append(b, `},"PaymentResponse":{"Response":{`...)
	var o object
	b = o.str(b, "Result", string(r.Status.Result))
	b = o.str(b, "ErrorCondition", string(r.Status.ErrorCondition))
	b = o.str(b, "AdditionalResponse", r.Status.AdditionalResponse)
	b = append(b, '}')
	if p == nil {
		return append(b, "}}}"...), true
	}
	if id := p.SaleTransactionID; id.ID != "" || !id.TimeStamp.IsZero() {
		b = append(b, `,"SaleData":{`...)
		var in object
		b = in.txnID(b, "SaleTransactionID", id)
		b = append(b, '}')
	}
	if id := p.POITransactionID; id.ID != "" || !id.TimeStamp.IsZero() || p.POIReconciliationID != "" {
		b = append(b, `,"POIData":{`...)
		var in object
		b = in.str(b, "POIReconciliationID", p.POIReconciliationID)
		b = in.txnID(b, "POITransactionID", id)
		b = append(b, '}')
	}
	if res := p.Result; res != nil {
		b = append(b, `,"PaymentResult":{`...)
		var in object
		b = in.str(b, "PaymentType", string(res.Type))
		if res.Brand != "" || res.InstrumentType != "" {
			b = append(in.key(b, "PaymentInstrumentData"), '{')
			var pid object
			b = pid.str(b, "PaymentInstrumentType", res.InstrumentType)
			if res.Brand != "" {
				b = jsonw.String(append(pid.key(b, "CardData"), `{"PaymentBrand":`...), res.Brand)
				b = append(b, '}')
			}
			b = append(b, '}')
		}
		if amount != nil {
			b = append(in.key(b, "AmountsResp"), '{')
			var ar object
			b = ar.str(b, "Currency", res.AuthorizedAmount.Currency)
			b = append(ar.key(b, "AuthorizedAmount"), amount...)
			b = append(b, '}')
		}
		if res.AcquirerID != "" || res.ProviderReference != "" || res.ApprovalCode != "" || res.MerchantID != "" || res.AcquirerPOIID != "" {
			b = append(in.key(b, "PaymentAcquirerData"), '{')
			var ad object
			b = ad.str(b, "AcquirerID", res.AcquirerID)
			b = ad.str(b, "MerchantID", res.MerchantID)
			b = ad.str(b, "AcquirerPOIID", res.AcquirerPOIID)
			b = ad.str(b, "ApprovalCode", res.ApprovalCode)
			b = ad.txnID(b, "AcquirerTransactionID", TransactionID{ID: res.ProviderReference})
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	if len(p.Receipts) > 0 {
		b = append(b, `,"PaymentReceipt":[`...)
		for i, rc := range p.Receipts {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			var in object
			b = in.str(b, "DocumentQualifier", rc.DocumentQualifier)
			b = append(in.key(b, "OutputContent"), `{"OutputFormat":"`+OutputText+`"`...)
			if len(rc.Lines) > 0 {
				b = append(b, `,"OutputText":[`...)
				for j, l := range rc.Lines {
					if j > 0 {
						b = append(b, ',')
					}
					b = jsonw.String(append(b, `{"Text":`...), l)
					b = append(b, '}')
				}
				b = append(b, ']')
			}
			b = append(b, "}}"...)
		}
		b = append(b, ']')
	}
	return append(b, "}}}"...), true
}

// paymentResponseJSONCap is a capacity appendPaymentResponseJSON's output
// seldom outgrows: one allocation for the answer.
func paymentResponseJSONCap(r *Response) int {
	n := 1024 + len(r.Status.AdditionalResponse) // header, status, ids, result: ~750 bytes
	if r.Payment != nil {
		for _, rc := range r.Payment.Receipts {
			n += 96 + len(rc.DocumentQualifier)
			for _, l := range rc.Lines { // {"Text":"…"}, and some escaping
				n += len(l) + 16
			}
		}
	}
	return n
}
