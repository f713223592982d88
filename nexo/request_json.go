package nexo

import (
	"github.com/termagent/termagent/internal/jsonw"
)

// appendPaymentRequestJSON appends what JSONCodec's EncodeRequest writes for
// r, byte for byte, when r is a payment whose shape it knows (every field of
// the request record but a scanned code); ok is false otherwise, and for a
// request EncodeRequest refuses, and the caller encodes with the codec. It
// exists for requestHash, which runs on every payment before its journal
// write: json.Marshal's reflection was most of the hash's cost. The fuzz
// target FuzzPaymentRequestJSON holds it to the codec's bytes.
//
// The shape is requestToWire's: a MessageHeader of the header's non-empty
// fields, a PaymentRequest with SaleData (always), PaymentTransaction
// (always) and PaymentData (when a type, an instrument type or a refund's
// original is set), each
// member omitted when empty, in the wire structs' field order.
func appendPaymentRequestJSON(b []byte, r *Request) (_ []byte, ok bool) {
	p := r.Payment
	if p == nil || r.Reversal != nil || p.ScannedCode != "" ||
		r.Login != nil || r.Logout != nil || r.Abort != nil || r.TransactionStatus != nil || r.Diagnosis != nil ||
		r.Display != nil || r.Event != nil || r.GetTotals != nil || r.Reconciliation != nil {
		return b, false
	}
	// requestToWire picks the first category whose body is set; a payment
	// request with another body too is the codec's to encode.
	exp, known := CurrencyExponent(p.Amount.Currency)
	if !known || p.Amount.Minor < 0 {
		return b, false // formatAmount's error: EncodeRequest fails
	}
	h := r.Header
	b = append(b, `{"SaleToPOIRequest":{"MessageHeader":{`...)
	b = appendHeaderJSON(b, h)
	b = append(b, `},"PaymentRequest":{"SaleData":{`...)
	var o object
	b = o.str(b, "OperatorID", p.OperatorID)
	b = o.str(b, "ShiftNumber", p.ShiftNumber)
	b = o.str(b, "SaleReferenceID", p.SaleReferenceID)
	b = o.txnID(b, "SaleTransactionID", p.SaleTransactionID)
	if p.TotalsGroupID != "" {
		b = o.key(b, "SaleTerminalData")
		b = jsonw.String(append(b, `{"TotalsGroupID":`...), p.TotalsGroupID)
		b = append(b, '}')
	}
	b = append(b, `},"PaymentTransaction":{"AmountsReq":{`...)
	o = object{}
	b = o.str(b, "Currency", p.Amount.Currency)
	b = o.key(b, "RequestedAmount") // never empty: at least one digit
	b = appendAmountDigits(b, p.Amount.Minor, exp)
	b = append(b, '}')
	if len(p.AllowedBrands) > 0 {
		b = append(b, `,"TransactionConditions":{"AllowedPaymentBrand":`...)
		b = jsonw.Strings(b, p.AllowedBrands)
		b = append(b, '}')
	}
	b = append(b, '}')
	original := p.OriginalPOITransactionID.ID != "" || !p.OriginalPOITransactionID.TimeStamp.IsZero()
	if p.Type != "" || p.InstrumentType != "" || original {
		b = append(b, `,"PaymentData":{`...)
		o = object{}
		b = o.str(b, "PaymentType", string(p.Type))
		if p.InstrumentType != "" {
			b = o.key(b, "PaymentInstrumentData")
			b = jsonw.String(append(b, `{"PaymentInstrumentType":`...), p.InstrumentType)
			b = append(b, '}')
		}
		if original {
			b = o.key(b, "OriginalPOITransaction")
			b = append(b, '{')
			var oo object
			b = oo.txnID(b, "POITransactionID", p.OriginalPOITransactionID)
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	return append(b, "}}}"...), true
}

// object writes the members of one JSON object, the commas between them.
// appendHeaderJSON appends the members of a MessageHeader object: the
// header's non-empty fields in the wire struct's order.
func appendHeaderJSON(b []byte, h Header) []byte {
	var o object
	b = o.str(b, "ProtocolVersion", h.ProtocolVersion)
	b = o.str(b, "MessageClass", string(h.Class))
	b = o.str(b, "MessageCategory", string(h.Category))
	b = o.str(b, "MessageType", string(h.Type))
	b = o.str(b, "ServiceID", h.ServiceID)
	b = o.str(b, "DeviceID", h.DeviceID)
	b = o.str(b, "SaleID", h.SaleID)
	b = o.str(b, "POIID", h.POIID)
	return b
}

type object struct{ n int }

func (o *object) key(b []byte, k string) []byte {
	if o.n > 0 {
		b = append(b, ',')
	}
	o.n++
	b = append(b, '"')
	b = append(b, k...)
	return append(b, '"', ':')
}

// str writes k: v, omitted when v is empty (the wire's omitempty).
func (o *object) str(b []byte, k, v string) []byte {
	if v == "" {
		return b
	}
	return jsonw.String(o.key(b, k), v)
}

// txnID writes transactionIDToWire(id) as member k, omitted when nil.
func (o *object) txnID(b []byte, k string, id TransactionID) []byte {
	if id.ID == "" && id.TimeStamp.IsZero() {
		return b
	}
	b = append(o.key(b, k), '{')
	var in object
	b = in.str(b, "TransactionID", id.ID)
	if !id.TimeStamp.IsZero() { // formatTime's characters need no escaping
		b = append(appendWireTime(append(in.key(b, "TimeStamp"), '"'), id.TimeStamp), '"')
	}
	return append(b, '}')
}
