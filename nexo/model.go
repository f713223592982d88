package nexo

import "time"

// MessageClass is the MessageHeader MessageClass.
type MessageClass string

// Message classes.
const (
	ClassService MessageClass = "Service"
	ClassDevice  MessageClass = "Device"
	ClassEvent   MessageClass = "Event"
)

// MessageCategory is the MessageHeader MessageCategory: which service the
// message belongs to.
type MessageCategory string

// The categories this package serves.
const (
	CategoryLogin             MessageCategory = "Login"
	CategoryLogout            MessageCategory = "Logout"
	CategoryPayment           MessageCategory = "Payment"
	CategoryReversal          MessageCategory = "Reversal"
	CategoryAbort             MessageCategory = "Abort"
	CategoryTransactionStatus MessageCategory = "TransactionStatus"
	CategoryDiagnosis         MessageCategory = "Diagnosis"
	CategoryDisplay           MessageCategory = "Display"
	CategoryEvent             MessageCategory = "Event"
)

// MessageType is the MessageHeader MessageType.
type MessageType string

// Message types.
const (
	TypeRequest      MessageType = "Request"
	TypeResponse     MessageType = "Response"
	TypeNotification MessageType = "Notification"
)

// Header is the MessageHeader common to every message.
type Header struct {
	ProtocolVersion string
	Class           MessageClass
	Category        MessageCategory
	Type            MessageType
	ServiceID       string
	DeviceID        string
	SaleID          string
	POIID           string
}

// TransactionID identifies a transaction on one side (sale or POI).
type TransactionID struct {
	ID        string
	TimeStamp time.Time
}

// Request is a message from the Sale system to the POI (or a notification
// either way). Exactly one body pointer matches Header.Category.
type Request struct {
	Header            Header
	Login             *LoginRequest
	Logout            *LogoutRequest
	Payment           *PaymentRequest
	Reversal          *ReversalRequest
	Abort             *AbortRequest
	TransactionStatus *TransactionStatusRequest
	Diagnosis         *DiagnosisRequest
	Display           *DisplayRequest
	Event             *EventNotification
	GetTotals         *GetTotalsRequest
	Reconciliation    *ReconciliationRequest
}

// LoginRequest opens a session of the Sale system with the POI.
type LoginRequest struct {
	DateTime         time.Time
	SaleSoftware     SaleSoftware
	OperatorLanguage string
	OperatorID       string
	ShiftNumber      string
	// TotalsGroupID (SaleTerminalData) groups the session's payments in totals.
	TotalsGroupID string
}

// SaleSoftware identifies the POS software.
type SaleSoftware struct {
	ManufacturerID    string
	ApplicationName   string
	SoftwareVersion   string
	CertificationCode string
}

// LogoutRequest closes the session.
type LogoutRequest struct {
	MaintenanceAllowed bool
}

// PaymentType is the PaymentData PaymentType.
type PaymentType string

// The payment types this package serves.
const (
	PaymentNormal PaymentType = "Normal"
	PaymentRefund PaymentType = "Refund"
)

// PaymentRequest asks the POI to take (or refund) a payment. It is what a
// PaymentEngine receives.
type PaymentRequest struct {
	SaleTransactionID TransactionID
	SaleReferenceID   string
	OperatorID        string
	Type              PaymentType
	Amount            Amount
	// AllowedBrands (TransactionConditions.AllowedPaymentBrand) and
	// InstrumentType (PaymentData.PaymentInstrumentData.PaymentInstrumentType)
	// select the payment method, e.g. an APM brand.
	AllowedBrands  []string
	InstrumentType string
	// ShiftNumber and TotalsGroupID (SaleData, SaleData.SaleTerminalData)
	// group the payment in totals; the Login's values when absent.
	ShiftNumber   string
	TotalsGroupID string
	// Refunds (nexo/refund.go): the payment a Refund refunds
	// (PaymentData.OriginalPOITransaction.POITransactionID).
	OriginalPOITransactionID TransactionID
	// ScannedCode is the code the POS's scanner read from the consumer's
	// wallet (consumer-presented, PPaaS merchantscan): see nexo/scan.go.
	ScannedCode string
}

// ReversalRequest reverses a completed payment.
type ReversalRequest struct {
	OriginalPOITransactionID TransactionID
	OriginalSaleID           string
	Reason                   string
	// ReversedAmount (nexo/refund.go), the decimal as sent, in the original
	// payment's currency; empty reverses the whole payment.
	ReversedAmount string
}

// MessageReference names an earlier message of the same Sale system.
type MessageReference struct {
	Category  MessageCategory
	ServiceID string
	DeviceID  string
	SaleID    string
	POIID     string
}

// AbortRequest cancels the service named by MessageReference.
type AbortRequest struct {
	MessageReference MessageReference
	AbortReason      string
}

// TransactionStatusRequest asks for the outcome of the last transaction or of
// the one named by MessageReference.
type TransactionStatusRequest struct {
	MessageReference *MessageReference
	// DocumentQualifiers asks for the receipts to reprint (CashierReceipt,
	// CustomerReceipt).
	DocumentQualifiers []string
	// ReceiptReprint (ReceiptReprintFlag) without DocumentQualifiers asks
	// for both receipts.
	ReceiptReprint bool
}

// DiagnosisRequest asks for the POI's health.
type DiagnosisRequest struct {
	HostDiagnosis bool
	AcquirerIDs   []string
}

// DisplayOutput is one text to show on a display of the POI.
type DisplayOutput struct {
	Device           string // CashierDisplay, CustomerDisplay
	InfoQualify      string // Display, Status, Error, ...
	Text             []string
	MinimumDisplay   time.Duration
	ResponseRequired bool
	// QRCode, when set, is shown as a QR code (OutputFormat BarCode,
	// OutputBarcode BarcodeType QRCode and BarcodeValue); Text may then be
	// empty.
	QRCode string
}

// DisplayRequest shows texts on the POI displays.
type DisplayRequest struct {
	Outputs []DisplayOutput
}

// EventNotification tells the other side about an event.
type EventNotification struct {
	TimeStamp           time.Time
	EventToNotify       string
	EventDetails        string
	MaintenanceRequired bool
}

// Result is the Response Result.
type Result string

// Results.
const (
	Success Result = "Success"
	Failure Result = "Failure"
	Partial Result = "Partial"
)

// ResponseStatus is the Nexo Response element present in every response.
type ResponseStatus struct {
	Result             Result
	ErrorCondition     ErrorCondition
	AdditionalResponse string
}

// Response is a message from the POI to the Sale system. Status is common to
// every category; the body pointer matching Header.Category carries the rest
// (it may be nil on failure).
type Response struct {
	Header            Header
	Status            ResponseStatus
	Login             *LoginResponse
	Payment           *PaymentResponse
	Reversal          *ReversalResponse
	TransactionStatus *TransactionStatusResponse
	Diagnosis         *DiagnosisResponse
	Display           *DisplayResponse
	GetTotals         *GetTotalsResponse
	Reconciliation    *ReconciliationResponse
}

// Err returns the response's failure as an *Error, or nil on success.
func (r *Response) Err() error {
	if r.Status.Result != Failure {
		return nil
	}
	return &Error{Condition: r.Status.ErrorCondition, Text: r.Status.AdditionalResponse}
}

// LoginResponse carries POISystemData.
type LoginResponse struct {
	POIDateTime     time.Time
	GlobalStatus    string
	POISerialNumber string
}

// PaymentResponse is the body of a payment's response.
type PaymentResponse struct {
	SaleTransactionID TransactionID
	POITransactionID  TransactionID
	// POIReconciliationID (POIData) is the reconciliation period the
	// payment is counted in.
	POIReconciliationID string
	Result              *PaymentResult
	// Receipts (PaymentReceipt) of a successful payment; see Receipts.
	Receipts []PaymentReceipt
}

// PaymentResult is what a PaymentEngine returns for an approved payment and
// what the PaymentResponse's PaymentResult element carries.
type PaymentResult struct {
	POITransactionID TransactionID
	Type             PaymentType
	Brand            string // PaymentInstrumentData.CardData.PaymentBrand
	InstrumentType   string // PaymentInstrumentData.PaymentInstrumentType
	AuthorizedAmount Amount
	// PaymentAcquirerData: the provider's reference is AcquirerTransactionID.
	AcquirerID        string
	ProviderReference string
	ApprovalCode      string
	// MerchantID and AcquirerPOIID (PaymentAcquirerData, Max35Text): the
	// merchant and the terminal as the acquirer knows them.
	MerchantID    string
	AcquirerPOIID string
}

// ReversalResult is what a PaymentEngine returns for a successful reversal.
type ReversalResult struct {
	POITransactionID  TransactionID
	ProviderReference string
	// Refunds (nexo/refund.go): what a partial reversal refunded.
	ReversedAmount Amount
}

// ReversalResponse is the body of a reversal's response.
type ReversalResponse struct {
	OriginalPOITransactionID TransactionID
	POITransactionID         TransactionID
	// Refunds (nexo/refund.go): the amount a partial reversal refunded (a
	// decimal, as on the wire) and the receipts of a successful reversal.
	ReversedAmount string
	Receipts       []PaymentReceipt
}

// TransactionStatusResponse carries the original response of the transaction
// asked for.
type TransactionStatusResponse struct {
	MessageReference *MessageReference
	// Repeated is the original response (RepeatedMessageResponse).
	Repeated *Response
	// journaled: Repeated is the journal's Response itself, as Last or
	// Lookup returned it (read-only, perhaps shared), not a reprint's copy:
	// the server may reuse its encoding (nexo/status_json.go).
	journaled bool
}

// HostStatus is the reachability of one host the POI depends on.
type HostStatus struct {
	AcquirerID string
	Reachable  bool
}

// DiagnosisResponse reports the POI's health.
type DiagnosisResponse struct {
	GlobalStatus    string // OK, Busy, Maintenance, Unreachable
	CommunicationOK bool
	Hosts           []HostStatus
	LoggedSaleIDs   []string
	// OutboxDepth travels in AdditionalResponse (Nexo has no field for it).
	OutboxDepth int
}

// DisplayResponse reports the result of each output.
type DisplayResponse struct {
	Outputs []OutputResult
}

// OutputResult is the result of one DisplayOutput.
type OutputResult struct {
	Device      string
	InfoQualify string
	Status      ResponseStatus
}
