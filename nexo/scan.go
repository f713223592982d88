package nexo

import (
	"encoding/xml"
	"strings"
)

// A consumer-presented code (PPaaS merchantscan: the consumer shows a wallet
// code, the merchant scans it) arrives with the PaymentRequest when the POS's
// own scanner read it. Nexo Retailer 3.x has no element named for wallet
// codes; the one that carries "a surrogate of the customer's payment means,
// sent by the Sale" is the payment token of the instrument's card data:
//
//	PaymentData.PaymentInstrumentData.CardData.PaymentToken.TokenValue
//
// with CardData.EntryMode ["Scanned"] (the code list's value for a bar-code
// reader) and, optionally, PaymentToken.TokenRequestedType "Transaction" (a
// one-time code, not a customer's lasting token). The brand still comes from
// AllowedPaymentBrand (or PaymentInstrumentType), as for any APM payment.
//
// The agent checks the value (bounded, printable ASCII) before it is journaled.

// maxScanLen bounds PaymentToken.TokenValue: ppaas.MaxScannedPaymentIDLen
// (this package does not import the platform's).
const maxScanLen = 512

// EntryModeScanned is the Nexo EntryMode of a code read by a bar-code scanner.
const EntryModeScanned = "Scanned"

// TokenTransaction is the TokenRequestedType of a one-time code.
const TokenTransaction = "Transaction"

type wirePaymentToken struct {
	TokenRequestedType string `json:",omitempty" xml:",attr,omitempty"`
	TokenValue         string `json:",omitempty" xml:",attr,omitempty"`
}

// wireList is a Nexo list of codes: a JSON array, an XML attribute of
// space-separated values.
type wireList []string

// MarshalXMLAttr implements xml.MarshalerAttr.
func (l wireList) MarshalXMLAttr(name xml.Name) (xml.Attr, error) {
	if len(l) == 0 {
		return xml.Attr{}, nil
	}
	return xml.Attr{Name: name, Value: strings.Join(l, " ")}, nil
}

// UnmarshalXMLAttr implements xml.UnmarshalerAttr.
func (l *wireList) UnmarshalXMLAttr(a xml.Attr) error {
	*l = strings.Fields(a.Value)
	return nil
}

// scannedCodeFromWire reads the scanned code of a PaymentRequest's card data.
func scannedCodeFromWire(f string, cd *wireCardData) (string, *Error) {
	if cd == nil {
		return "", nil
	}
	if e := checkList(f+".EntryMode", cd.EntryMode, maxRefLen); e != nil {
		return "", e
	}
	pt := cd.PaymentToken
	if pt == nil {
		return "", nil
	}
	f += ".PaymentToken"
	switch pt.TokenRequestedType {
	case "", TokenTransaction, "Customer":
	default:
		return "", formatError(f+".TokenRequestedType", "unsupported value %q (Transaction or Customer)", clip(pt.TokenRequestedType, 32))
	}
	if pt.TokenValue == "" {
		return "", formatError(f+".TokenValue", "missing")
	}
	if e := checkLen(f+".TokenValue", pt.TokenValue, maxScanLen); e != nil {
		return "", e
	}
	return pt.TokenValue, nil
}

// scannedCodeToWire is the card data carrying a scanned code (nil for none).
func scannedCodeToWire(code string) *wireCardData {
	if code == "" {
		return nil
	}
	return &wireCardData{EntryMode: wireList{EntryModeScanned}, PaymentToken: &wirePaymentToken{TokenRequestedType: TokenTransaction, TokenValue: code}}
}
