package nexo

import "bytes"

// The wire5 types are the Nexo Retailer v5 envelope (ISO 20022 casp message
// family) in JSON, with the full ISO element names (Header, MessageFunction,
// ExchangeIdentification, ...), one root object per message. Only the
// elements the model carries are declared; unknown members are ignored, as
// in 3.x. Every v5 name lives in this file, in map5.go and in the v5
// methods of each category (category_*.go). The README lists the messages
// and every assumption about the shape (the PPaaS v5 wire shape is not
// public).

// Root objects of the v5 messages served.
const (
	root5ServiceRequest   = "SaleToPOIServiceRequest"            // casp.001
	root5ServiceResponse  = "SaleToPOIServiceResponse"           // casp.002
	root5SessionRequest   = "SaleToPOISessionManagementRequest"  // casp.005
	root5SessionResponse  = "SaleToPOISessionManagementResponse" // casp.006
	root5Abort            = "SaleToPOIAbort"                     // casp.011
	root5Event            = "SaleToPOIEventNotification"         // casp.012
	root5Rejection        = "SaleToPOIMessageRejection"          // casp.013
	root5StatusRequest    = "SaleToPOIMessageStatusRequest"      // casp.014
	root5StatusResponse   = "SaleToPOIMessageStatusResponse"     // casp.015
	rootPrefix5           = "SaleToPOI"
	protocolVersion5      = "5.0"
	maxExchangeIDLength5  = 10 // it is the ServiceID: see map5.go
	maxPartyIDLength5     = 35 // Max35Text
	maxProtocolVersionLen = 35 // ISO says Max6Text; "5.1-WL1.0.0" exists in the wild
)

// MessageFunction codes (ISO 20022 RetailerMessage1Code).
const (
	fnServiceRequest  = "SFSQ"
	fnServiceResponse = "SFSP"
	fnSessionRequest  = "SASQ"
	fnSessionResponse = "SASP"
	fnAbort           = "SSAB"
	fnEvent           = "SSEN"
	fnStatusRequest   = "SSMQ"
	fnStatusResponse  = "SSMR"
	fnRejection       = "SSRJ"
)

// ServiceContent codes of a casp.001/002 (ISO 20022 RetailerService codes).
const (
	svcPaymentRequest   = "FSPQ"
	svcReversalRequest  = "FSRQ"
	svcPaymentResponse  = "FSPP"
	svcReversalResponse = "FSRP"
)

// Response codes (ISO 20022 Response11Code).
const (
	resp5Success = "SUCC"
	resp5Failure = "FAIL"
	resp5Warning = "WARN"
)

// RejectReason codes of a casp.013 (ISO 20022 RejectReason1Code).
const (
	rejectParsing     = "PARS" // a data element is missing or wrong
	rejectInvalid     = "IMSG" // invalid envelope
	rejectVersion     = "VERS" // protocol version not supported
	rejectMessageType = "MSGT" // message type unknown or not supported
	rejectSecurity    = "SECU" // message security refused it
	rejectUnable      = "UNPR" // could not process (internal)
	rejectRecipient   = "RCPP" // not this POI
)

// wire5Message is the union of the roots' contents: Header, one body and
// the SecurityTrailer.
type wire5Message struct {
	Header *wire5Header `json:",omitempty"`

	ServiceRequest            *wire5ServiceRequest    `json:",omitempty"`
	ServiceResponse           *wire5ServiceResponse   `json:",omitempty"`
	SessionManagementRequest  *wire5SessionRequest    `json:",omitempty"`
	SessionManagementResponse *wire5SessionResponse   `json:",omitempty"`
	Abort                     *wire5Abort             `json:",omitempty"`
	EventNotification         *wire5EventNotification `json:",omitempty"`
	StatusRequest             *wire5StatusRequest     `json:",omitempty"`
	StatusResponse            *wire5StatusResponse    `json:",omitempty"`
	Reject                    *wire5Reject            `json:",omitempty"`

	// NexoBlob and SecurityTrailer carry the shared-key protection, as in
	// 3.x (see security5.go).
	NexoBlob        string               `json:",omitempty"`
	SecurityTrailer *wireSecurityTrailer `json:",omitempty"`
}

type wire5Header struct {
	MessageFunction        string      `json:",omitempty"`
	ProtocolVersion        string      `json:",omitempty"`
	ExchangeIdentification string      `json:",omitempty"`
	CreationDateTime       string      `json:",omitempty"`
	InitiatingParty        *wire5Party `json:",omitempty"`
	RecipientParty         *wire5Party `json:",omitempty"`
}

// wire5Party is a GenericIdentification: only Identification is used.
type wire5Party struct {
	Identification string `json:",omitempty"`
	Type           string `json:",omitempty"`
	ShortName      string `json:",omitempty"`
}

// wire5TransactionID is a TransactionIdentifier: date-time and reference.
type wire5TransactionID struct {
	TransactionDateTime  string `json:",omitempty"`
	TransactionReference string `json:",omitempty"`
}

// wire5Response is the ResponseType present in every response.
type wire5Response struct {
	Response                      string `json:",omitempty"`
	ResponseReason                string `json:",omitempty"`
	AdditionalResponseInformation string `json:",omitempty"`
}

type wire5ServiceRequest struct {
	ServiceContent  string                `json:",omitempty"`
	PaymentRequest  *wire5PaymentRequest  `json:",omitempty"`
	ReversalRequest *wire5ReversalRequest `json:",omitempty"`
}

type wire5PaymentRequest struct {
	SaleTransactionIdentification *wire5TransactionID      `json:",omitempty"`
	SaleReferenceIdentification   string                   `json:",omitempty"`
	OperatorIdentification        string                   `json:",omitempty"`
	PaymentTransaction            *wire5PaymentTransaction `json:",omitempty"`
}

type wire5PaymentTransaction struct {
	TransactionType       string                      `json:",omitempty"` // CRDP, RFND
	TransactionDetails    *wire5TransactionDetails    `json:",omitempty"`
	TransactionConditions *wire5TransactionConditions `json:",omitempty"`
}

type wire5TransactionDetails struct {
	Currency    string      `json:",omitempty"`
	TotalAmount wireDecimal `json:",omitempty"`
}

type wire5TransactionConditions struct {
	AllowedPaymentBrand   []string `json:",omitempty"`
	PaymentInstrumentType string   `json:",omitempty"`
}

type wire5ReversalRequest struct {
	OriginalTransaction *wire5OriginalTransaction `json:",omitempty"`
	ReversalReason      string                    `json:",omitempty"`
}

type wire5OriginalTransaction struct {
	SaleIdentification           string              `json:",omitempty"`
	POIIdentification            string              `json:",omitempty"`
	POITransactionIdentification *wire5TransactionID `json:",omitempty"`
}

type wire5ServiceResponse struct {
	ServiceContent   string                 `json:",omitempty"`
	PaymentResponse  *wire5PaymentResponse  `json:",omitempty"`
	ReversalResponse *wire5ReversalResponse `json:",omitempty"`
	Response         *wire5Response         `json:",omitempty"`
}

type wire5PaymentResponse struct {
	SaleTransactionIdentification *wire5TransactionID         `json:",omitempty"`
	POITransactionIdentification  *wire5TransactionID         `json:",omitempty"`
	RetailerPaymentResult         *wire5RetailerPaymentResult `json:",omitempty"`
}

type wire5RetailerPaymentResult struct {
	TransactionType              string                    `json:",omitempty"`
	PaymentBrand                 string                    `json:",omitempty"`
	PaymentInstrumentType        string                    `json:",omitempty"`
	TransactionDetails           *wire5TransactionDetails  `json:",omitempty"`
	AuthorisationResult          *wire5AuthorisationResult `json:",omitempty"`
	AcquirerTransactionReference string                    `json:",omitempty"`
}

type wire5AuthorisationResult struct {
	AuthorisationEntity *wire5Party `json:",omitempty"`
	AuthorisationCode   string      `json:",omitempty"`
}

type wire5ReversalResponse struct {
	POITransactionIdentification         *wire5TransactionID `json:",omitempty"`
	OriginalPOITransactionIdentification *wire5TransactionID `json:",omitempty"`
}

type wire5SessionRequest struct {
	LoginRequest     *wire5LoginRequest     `json:",omitempty"`
	LogoutRequest    *wire5LogoutRequest    `json:",omitempty"`
	DiagnosisRequest *wire5DiagnosisRequest `json:",omitempty"`
}

type wire5LoginRequest struct {
	LoginDateTime          string             `json:",omitempty"`
	SaleSoftware           *wire5SaleSoftware `json:",omitempty"`
	OperatorLanguage       string             `json:",omitempty"`
	OperatorIdentification string             `json:",omitempty"`
	ShiftNumber            string             `json:",omitempty"`
}

type wire5SaleSoftware struct {
	ProviderIdentification string `json:",omitempty"`
	ApplicationName        string `json:",omitempty"`
	SoftwareVersion        string `json:",omitempty"`
	CertificationCode      string `json:",omitempty"`
}

type wire5LogoutRequest struct {
	MaintenanceAllowed bool `json:",omitempty"`
}

type wire5DiagnosisRequest struct {
	HostDiagnosisFlag      bool     `json:",omitempty"`
	AcquirerIdentification []string `json:",omitempty"`
}

type wire5SessionResponse struct {
	LoginResponse     *wire5LoginResponse     `json:",omitempty"`
	LogoutResponse    *struct{}               `json:",omitempty"`
	DiagnosisResponse *wire5DiagnosisResponse `json:",omitempty"`
	Response          *wire5Response          `json:",omitempty"`
}

type wire5LoginResponse struct {
	POIDateTime     string `json:",omitempty"`
	POISerialNumber string `json:",omitempty"`
	GlobalStatus    string `json:",omitempty"`
}

type wire5DiagnosisResponse struct {
	GlobalStatus             string            `json:",omitempty"`
	CommunicationOKFlag      *bool             `json:",omitempty"`
	LoggedSaleIdentification []string          `json:",omitempty"`
	HostStatus               []wire5HostStatus `json:",omitempty"`
	OutboxDepth              *int              `json:",omitempty"`
}

type wire5HostStatus struct {
	AcquirerIdentification string `json:",omitempty"`
	IsReachableFlag        bool
}

// wire5MessageReference names an earlier exchange of the same Sale system.
type wire5MessageReference struct {
	MessageFunction        string      `json:",omitempty"`
	ServiceContent         string      `json:",omitempty"`
	ExchangeIdentification string      `json:",omitempty"`
	InitiatingParty        *wire5Party `json:",omitempty"`
	RecipientParty         *wire5Party `json:",omitempty"`
}

type wire5Abort struct {
	MessageReference *wire5MessageReference `json:",omitempty"`
	AbortReason      string                 `json:",omitempty"`
}

type wire5EventNotification struct {
	EventDateTime           string `json:",omitempty"`
	EventToNotify           string `json:",omitempty"`
	EventDetails            string `json:",omitempty"`
	MaintenanceRequiredFlag bool   `json:",omitempty"`
}

type wire5StatusRequest struct {
	MessageReference *wire5MessageReference `json:",omitempty"`
}

type wire5StatusResponse struct {
	Response                  *wire5Response           `json:",omitempty"`
	MessageStatusResponseData *wire5StatusResponseData `json:",omitempty"`
}

type wire5StatusResponseData struct {
	MessageReference         *wire5MessageReference `json:",omitempty"`
	TransactionResponse      *wire5Response         `json:",omitempty"`
	RepeatedPaymentResponse  *wire5PaymentResponse  `json:",omitempty"`
	RepeatedReversalResponse *wire5ReversalResponse `json:",omitempty"`
}

type wire5Reject struct {
	RejectReason          string `json:",omitempty"`
	AdditionalInformation string `json:",omitempty"`
}

// sniffRoot5 returns the name of the first member of a JSON document's
// outermost object, reading no further than that member's name (bounded by
// maxRootName). It returns "" when the document does not start that way.
func sniffRoot5(body []byte) string {
	const maxRootName = 64
	b := bytes.TrimLeft(body, " \t\r\n\ufeff")
	if len(b) == 0 || b[0] != '{' {
		return ""
	}
	b = bytes.TrimLeft(b[1:], " \t\r\n")
	if len(b) == 0 || b[0] != '"' {
		return ""
	}
	b = b[1:]
	end := bytes.IndexByte(b[:min(len(b), maxRootName+1)], '"')
	if end < 0 {
		return ""
	}
	name := b[:end]
	if bytes.IndexByte(name, '\\') >= 0 {
		return ""
	}
	return string(name)
}

// isV5Root tells whether a root name belongs to the v5 envelope: a
// SaleToPOI… root other than the 3.x SaleToPOIRequest/SaleToPOIResponse.
func isV5Root(name string) bool {
	return len(name) > len(rootPrefix5) && name[:len(rootPrefix5)] == rootPrefix5 &&
		name != rootRequest && name != rootResponse
}
