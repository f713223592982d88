package nexo

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"reflect"
)

// The wire3 types are the Nexo Retailer 3.x envelope as existing Nexo JSON
// terminal APIs spell it. One set of structs serves both encodings: in JSON
// every field is a PascalCase member; in XML, as in the Nexo XML schema,
// simple values are attributes and structures are child elements, with the
// same names. They are private: the model types are the API. This file has
// the envelope and the elements several categories share; each category's
// own elements are in its category_*.go file.

type wireMessage struct {
	XMLName       xml.Name    `json:"-"`
	MessageHeader *wireHeader `json:",omitempty" xml:",omitempty"`

	LoginRequest             *wireLoginRequest             `json:",omitempty" xml:",omitempty"`
	LogoutRequest            *wireLogoutRequest            `json:",omitempty" xml:",omitempty"`
	PaymentRequest           *wirePaymentRequest           `json:",omitempty" xml:",omitempty"`
	ReversalRequest          *wireReversalRequest          `json:",omitempty" xml:",omitempty"`
	AbortRequest             *wireAbortRequest             `json:",omitempty" xml:",omitempty"`
	TransactionStatusRequest *wireTransactionStatusRequest `json:",omitempty" xml:",omitempty"`
	DiagnosisRequest         *wireDiagnosisRequest         `json:",omitempty" xml:",omitempty"`
	DisplayRequest           *wireDisplayRequest           `json:",omitempty" xml:",omitempty"`
	EventNotification        *wireEventNotification        `json:",omitempty" xml:",omitempty"`
	GetTotalsRequest         *wireGetTotalsRequest         `json:",omitempty" xml:",omitempty"`
	ReconciliationRequest    *wireReconciliationRequest    `json:",omitempty" xml:",omitempty"`

	LoginResponse             *wireLoginResponse             `json:",omitempty" xml:",omitempty"`
	LogoutResponse            *wireLogoutResponse            `json:",omitempty" xml:",omitempty"`
	PaymentResponse           *wirePaymentResponse           `json:",omitempty" xml:",omitempty"`
	ReversalResponse          *wireReversalResponse          `json:",omitempty" xml:",omitempty"`
	AbortResponse             *wireLogoutResponse            `json:",omitempty" xml:",omitempty"`
	TransactionStatusResponse *wireTransactionStatusResponse `json:",omitempty" xml:",omitempty"`
	DiagnosisResponse         *wireDiagnosisResponse         `json:",omitempty" xml:",omitempty"`
	DisplayResponse           *wireDisplayResponse           `json:",omitempty" xml:",omitempty"`
	GetTotalsResponse         *wireGetTotalsResponse         `json:",omitempty" xml:",omitempty"`
	ReconciliationResponse    *wireReconciliationResponse    `json:",omitempty" xml:",omitempty"`

	NexoBlob        string               `json:",omitempty" xml:",omitempty"`
	SecurityTrailer *wireSecurityTrailer `json:",omitempty" xml:",omitempty"`
}

type wireHeader struct {
	ProtocolVersion string `json:",omitempty" xml:",attr,omitempty"`
	MessageClass    string `json:",omitempty" xml:",attr,omitempty"`
	MessageCategory string `json:",omitempty" xml:",attr,omitempty"`
	MessageType     string `json:",omitempty" xml:",attr,omitempty"`
	ServiceID       string `json:",omitempty" xml:",attr,omitempty"`
	DeviceID        string `json:",omitempty" xml:",attr,omitempty"`
	SaleID          string `json:",omitempty" xml:",attr,omitempty"`
	POIID           string `json:",omitempty" xml:",attr,omitempty"`
}

type wireSecurityTrailer struct {
	AdyenCryptoVersion int    `xml:",attr"`
	KeyIdentifier      string `xml:",attr"`
	KeyVersion         int    `xml:",attr"`
	Nonce              string `xml:",attr"`
	Hmac               string `xml:",attr"`
}

type wireResponse struct {
	Result             string `json:",omitempty" xml:",attr,omitempty"`
	ErrorCondition     string `json:",omitempty" xml:",attr,omitempty"`
	AdditionalResponse string `json:",omitempty" xml:",attr,omitempty"`
}

type wireTransactionID struct {
	TransactionID string `json:",omitempty" xml:",attr,omitempty"`
	TimeStamp     string `json:",omitempty" xml:",attr,omitempty"`
}

type wirePOIStatus struct {
	GlobalStatus        string `json:",omitempty" xml:",attr,omitempty"`
	CommunicationOKFlag *bool  `json:",omitempty" xml:",attr,omitempty"`
}

type wirePOIData struct {
	POIReconciliationID string             `json:",omitempty" xml:",attr,omitempty"`
	POITransactionID    *wireTransactionID `json:",omitempty" xml:",omitempty"`
}

type wireMessageReference struct {
	MessageCategory string `json:",omitempty" xml:",attr,omitempty"`
	ServiceID       string `json:",omitempty" xml:",attr,omitempty"`
	DeviceID        string `json:",omitempty" xml:",attr,omitempty"`
	SaleID          string `json:",omitempty" xml:",attr,omitempty"`
	POIID           string `json:",omitempty" xml:",attr,omitempty"`
}

// wireDecimal is an amount in major units. JSON carries it as a number (the
// text is kept verbatim so no float rounding happens); a quoted string is
// accepted too because some POS serialisers emit decimals that way.
type wireDecimal string

func (d wireDecimal) MarshalJSON() ([]byte, error) {
	if d == "" {
		return []byte("null"), nil
	}
	return []byte(d), nil
}

func (d *wireDecimal) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		*d = ""
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*d = wireDecimal(s)
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'):
		*d = wireDecimal(b)
	default:
		// An UnmarshalTypeError gets the field path filled in by
		// encoding/json, so the MessageFormat text can name it.
		return &json.UnmarshalTypeError{Value: "non-number", Type: reflect.TypeFor[wireDecimal]()}
	}
	return nil
}

// jsonEnvelope is the outermost JSON object.
type jsonEnvelope struct {
	SaleToPOIRequest  *wireMessage `json:",omitempty"`
	SaleToPOIResponse *wireMessage `json:",omitempty"`
}
