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
// same names. They are private: the model types are the API.

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

type wireLoginRequest struct {
	DateTime         string                `json:",omitempty" xml:",attr,omitempty"`
	OperatorLanguage string                `json:",omitempty" xml:",attr,omitempty"`
	OperatorID       string                `json:",omitempty" xml:",attr,omitempty"`
	ShiftNumber      string                `json:",omitempty" xml:",attr,omitempty"`
	SaleSoftware     *wireSaleSoftware     `json:",omitempty" xml:",omitempty"`
	SaleTerminalData *wireSaleTerminalData `json:",omitempty" xml:",omitempty"`
}

type wireSaleSoftware struct {
	ManufacturerID    string `json:",omitempty" xml:",attr,omitempty"`
	ApplicationName   string `json:",omitempty" xml:",attr,omitempty"`
	SoftwareVersion   string `json:",omitempty" xml:",attr,omitempty"`
	CertificationCode string `json:",omitempty" xml:",attr,omitempty"`
}

type wireLogoutRequest struct {
	MaintenanceAllowed bool `json:",omitempty" xml:",attr,omitempty"`
}

type wireLoginResponse struct {
	Response      *wireResponse      `json:",omitempty" xml:",omitempty"`
	POISystemData *wirePOISystemData `json:",omitempty" xml:",omitempty"`
}

type wirePOISystemData struct {
	DateTime        string         `json:",omitempty" xml:",attr,omitempty"`
	POISerialNumber string         `json:",omitempty" xml:",attr,omitempty"`
	POIStatus       *wirePOIStatus `json:",omitempty" xml:",omitempty"`
}

type wirePOIStatus struct {
	GlobalStatus        string `json:",omitempty" xml:",attr,omitempty"`
	CommunicationOKFlag *bool  `json:",omitempty" xml:",attr,omitempty"`
}

type wireLogoutResponse struct {
	Response *wireResponse `json:",omitempty" xml:",omitempty"`
}

type wirePaymentRequest struct {
	SaleData           *wireSaleData           `json:",omitempty" xml:",omitempty"`
	PaymentTransaction *wirePaymentTransaction `json:",omitempty" xml:",omitempty"`
	PaymentData        *wirePaymentData        `json:",omitempty" xml:",omitempty"`
}

type wireSaleData struct {
	OperatorID        string                `json:",omitempty" xml:",attr,omitempty"`
	ShiftNumber       string                `json:",omitempty" xml:",attr,omitempty"`
	SaleReferenceID   string                `json:",omitempty" xml:",attr,omitempty"`
	SaleTransactionID *wireTransactionID    `json:",omitempty" xml:",omitempty"`
	SaleTerminalData  *wireSaleTerminalData `json:",omitempty" xml:",omitempty"`
}

type wirePaymentTransaction struct {
	AmountsReq            *wireAmountsReq            `json:",omitempty" xml:",omitempty"`
	TransactionConditions *wireTransactionConditions `json:",omitempty" xml:",omitempty"`
}

type wireAmountsReq struct {
	Currency        string      `json:",omitempty" xml:",attr,omitempty"`
	RequestedAmount wireDecimal `json:",omitempty" xml:",attr,omitempty"`
}

type wireTransactionConditions struct {
	AllowedPaymentBrand []string `json:",omitempty" xml:",omitempty"`
}

type wirePaymentData struct {
	PaymentType           string                     `json:",omitempty" xml:",attr,omitempty"`
	PaymentInstrumentData *wirePaymentInstrumentData `json:",omitempty" xml:",omitempty"`
	// Refunds (nexo/refund.go).
	OriginalPOITransaction *wireOriginalPOITransaction `json:",omitempty" xml:",omitempty"`
}

type wirePaymentInstrumentData struct {
	PaymentInstrumentType string        `json:",omitempty" xml:",attr,omitempty"`
	CardData              *wireCardData `json:",omitempty" xml:",omitempty"`
}

type wireCardData struct {
	PaymentBrand string `json:",omitempty" xml:",attr,omitempty"`
}

type wirePaymentResponse struct {
	Response       *wireResponse        `json:",omitempty" xml:",omitempty"`
	SaleData       *wireSaleData        `json:",omitempty" xml:",omitempty"`
	POIData        *wirePOIData         `json:",omitempty" xml:",omitempty"`
	PaymentResult  *wirePaymentResult   `json:",omitempty" xml:",omitempty"`
	PaymentReceipt []wirePaymentReceipt `json:",omitempty" xml:",omitempty"`
}

type wirePOIData struct {
	POIReconciliationID string             `json:",omitempty" xml:",attr,omitempty"`
	POITransactionID    *wireTransactionID `json:",omitempty" xml:",omitempty"`
}

type wirePaymentResult struct {
	PaymentType           string                     `json:",omitempty" xml:",attr,omitempty"`
	PaymentInstrumentData *wirePaymentInstrumentData `json:",omitempty" xml:",omitempty"`
	AmountsResp           *wireAmountsResp           `json:",omitempty" xml:",omitempty"`
	PaymentAcquirerData   *wirePaymentAcquirerData   `json:",omitempty" xml:",omitempty"`
}

type wireAmountsResp struct {
	Currency         string      `json:",omitempty" xml:",attr,omitempty"`
	AuthorizedAmount wireDecimal `json:",omitempty" xml:",attr,omitempty"`
}

type wirePaymentAcquirerData struct {
	AcquirerID            string             `json:",omitempty" xml:",attr,omitempty"`
	ApprovalCode          string             `json:",omitempty" xml:",attr,omitempty"`
	AcquirerTransactionID *wireTransactionID `json:",omitempty" xml:",omitempty"`
}

type wireReversalRequest struct {
	ReversalReason         string                      `json:",omitempty" xml:",attr,omitempty"`
	ReversedAmount         wireDecimal                 `json:",omitempty" xml:",attr,omitempty"` // refunds (nexo/refund.go)
	OriginalPOITransaction *wireOriginalPOITransaction `json:",omitempty" xml:",omitempty"`
}

type wireOriginalPOITransaction struct {
	SaleID           string             `json:",omitempty" xml:",attr,omitempty"`
	POIID            string             `json:",omitempty" xml:",attr,omitempty"`
	POITransactionID *wireTransactionID `json:",omitempty" xml:",omitempty"`
}

type wireReversalResponse struct {
	Response               *wireResponse               `json:",omitempty" xml:",omitempty"`
	POIData                *wirePOIData                `json:",omitempty" xml:",omitempty"`
	OriginalPOITransaction *wireOriginalPOITransaction `json:",omitempty" xml:",omitempty"`
	ReversedAmount         wireDecimal                 `json:",omitempty" xml:",attr,omitempty"` // refunds (nexo/refund.go)
	PaymentReceipt         []wirePaymentReceipt        `json:",omitempty" xml:",omitempty"`      // refunds (nexo/refund.go)
}

type wireMessageReference struct {
	MessageCategory string `json:",omitempty" xml:",attr,omitempty"`
	ServiceID       string `json:",omitempty" xml:",attr,omitempty"`
	DeviceID        string `json:",omitempty" xml:",attr,omitempty"`
	SaleID          string `json:",omitempty" xml:",attr,omitempty"`
	POIID           string `json:",omitempty" xml:",attr,omitempty"`
}

type wireAbortRequest struct {
	AbortReason      string                `json:",omitempty" xml:",attr,omitempty"`
	MessageReference *wireMessageReference `json:",omitempty" xml:",omitempty"`
}

type wireTransactionStatusRequest struct {
	MessageReference   *wireMessageReference `json:",omitempty" xml:",omitempty"`
	DocumentQualifier  []string              `json:",omitempty" xml:",omitempty"`
	ReceiptReprintFlag bool                  `json:",omitempty" xml:",attr,omitempty"`
}

type wireTransactionStatusResponse struct {
	Response                *wireResponse                `json:",omitempty" xml:",omitempty"`
	MessageReference        *wireMessageReference        `json:",omitempty" xml:",omitempty"`
	RepeatedMessageResponse *wireRepeatedMessageResponse `json:",omitempty" xml:",omitempty"`
}

type wireRepeatedMessageResponse struct {
	MessageHeader               *wireHeader       `json:",omitempty" xml:",omitempty"`
	RepeatedResponseMessageBody *wireRepeatedBody `json:",omitempty" xml:",omitempty"`
}

type wireRepeatedBody struct {
	PaymentResponse  *wirePaymentResponse  `json:",omitempty" xml:",omitempty"`
	ReversalResponse *wireReversalResponse `json:",omitempty" xml:",omitempty"`
}

type wireDiagnosisRequest struct {
	HostDiagnosisFlag bool     `json:",omitempty" xml:",attr,omitempty"`
	AcquirerID        []string `json:",omitempty" xml:",omitempty"`
}

type wireDiagnosisResponse struct {
	Response     *wireResponse    `json:",omitempty" xml:",omitempty"`
	LoggedSaleID []string         `json:",omitempty" xml:",omitempty"`
	POIStatus    *wirePOIStatus   `json:",omitempty" xml:",omitempty"`
	HostStatus   []wireHostStatus `json:",omitempty" xml:",omitempty"`
}

type wireHostStatus struct {
	AcquirerID      string `json:",omitempty" xml:",attr,omitempty"`
	IsReachableFlag bool   `xml:",attr"`
}

type wireDisplayRequest struct {
	DisplayOutput []wireDisplayOutput `json:",omitempty" xml:",omitempty"`
}

type wireDisplayOutput struct {
	ResponseRequiredFlag bool               `json:",omitempty" xml:",attr,omitempty"`
	MinimumDisplayTime   int                `json:",omitempty" xml:",attr,omitempty"`
	Device               string             `json:",omitempty" xml:",attr,omitempty"`
	InfoQualify          string             `json:",omitempty" xml:",attr,omitempty"`
	OutputContent        *wireOutputContent `json:",omitempty" xml:",omitempty"`
}

type wireOutputContent struct {
	OutputFormat  string             `json:",omitempty" xml:",attr,omitempty"`
	OutputText    []wireOutputText   `json:",omitempty" xml:",omitempty"`
	OutputBarcode *wireOutputBarcode `json:",omitempty" xml:",omitempty"`
}

type wireOutputBarcode struct {
	BarcodeType  string `json:",omitempty" xml:",attr,omitempty"`
	BarcodeValue string `json:",omitempty" xml:",attr,omitempty"`
}

type wireOutputText struct {
	Text string `xml:",chardata"`
}

type wireDisplayResponse struct {
	OutputResult []wireOutputResult `json:",omitempty" xml:",omitempty"`
}

type wireOutputResult struct {
	Device      string        `json:",omitempty" xml:",attr,omitempty"`
	InfoQualify string        `json:",omitempty" xml:",attr,omitempty"`
	Response    *wireResponse `json:",omitempty" xml:",omitempty"`
}

type wireEventNotification struct {
	TimeStamp               string `json:",omitempty" xml:",attr,omitempty"`
	EventToNotify           string `json:",omitempty" xml:",attr,omitempty"`
	EventDetails            string `json:",omitempty" xml:",attr,omitempty"`
	MaintenanceRequiredFlag bool   `json:",omitempty" xml:",attr,omitempty"`
	RejectedMessage         string `json:",omitempty" xml:",attr,omitempty"`
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
