package ppaas

import (
	"errors"
	"fmt"
	"time"
)

// Scenario is PPaaS's paymentScenario.
type Scenario string

const (
	// ConsumerScan is merchant-presented mode: the terminal shows the QR.
	ConsumerScan Scenario = "consumerscan"
	// MerchantScan is consumer-presented mode: the terminal scans the wallet QR.
	MerchantScan Scenario = "merchantscan"
)

// Valid reports whether s is a scenario PPaaS knows.
func (s Scenario) Valid() bool { return s == ConsumerScan || s == MerchantScan }

// Amount is an amount in minor units of an ISO 4217 currency: 49.99 EUR is
// {4999, "EUR"}, 500 JPY is {500, "JPY"}. Every amount on the PPaaS wire
// (paymentAmount, refund amounts, refundedAmount) is in minor units; this is
// the one place that says so.
type Amount struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// Order identifies the merchant's order.
type Order struct {
	OrderID          string `json:"orderId"`
	OrderDescription string `json:"orderDescription,omitempty"`
}

// CreateRequest is the body of POST /qrcode-payment/v1/transactions.
type CreateRequest struct {
	PaymentType         string   `json:"paymentType"`
	PaymentScenario     Scenario `json:"paymentScenario"`
	ScannedPaymentID    string   `json:"scannedPaymentId,omitempty"`
	ClientTransactionID string   `json:"clientTransactionId"`
	PaymentAmount       Amount   `json:"paymentAmount"`
	Order               Order    `json:"order"`
}

// Validate checks what PPaaS would reject, so a bad request fails before any I/O.
func (r CreateRequest) Validate() error {
	if err := r.validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	return nil
}

// ErrInvalidRequest marks a payment request PPaaS would reject as malformed.
var ErrInvalidRequest = errors.New("invalid payment request")

func (r CreateRequest) validate() error {
	switch {
	case r.PaymentType == "":
		return errors.New("paymentType is required")
	case !r.PaymentScenario.Valid():
		return fmt.Errorf("paymentScenario %q is not consumerscan or merchantscan", r.PaymentScenario)
	case r.PaymentScenario == MerchantScan && r.ScannedPaymentID == "":
		return errors.New("scannedPaymentId is required with merchantscan")
	case r.ScannedPaymentID != "" && CheckScannedPaymentID(r.ScannedPaymentID) != nil:
		return fmt.Errorf("scannedPaymentId: %w", CheckScannedPaymentID(r.ScannedPaymentID))
	case r.ClientTransactionID == "":
		return errors.New("clientTransactionId is required")
	case r.PaymentAmount.Amount <= 0:
		return fmt.Errorf("paymentAmount.amount %d must be positive", r.PaymentAmount.Amount)
	case len(r.PaymentAmount.Currency) != 3:
		return fmt.Errorf("paymentAmount.currency %q is not an ISO 4217 code", r.PaymentAmount.Currency)
	case r.Order.OrderID == "":
		return errors.New("order.orderId is required")
	}
	return nil
}

// QRCode is the code a consumerscan transaction asks the terminal to show.
type QRCode struct {
	Payload  string `json:"payload"`
	ImagePNG []byte `json:"imagePng,omitempty"` // base64 in JSON
}

// Transaction is PPaaS's view of a QR transaction (see the package doc).
type Transaction struct {
	TransactionID       string    `json:"transactionId"`
	ClientTransactionID string    `json:"clientTransactionId"`
	PaymentType         string    `json:"paymentType"`
	PaymentScenario     Scenario  `json:"paymentScenario"`
	Status              State     `json:"status"`
	RawStatus           string    `json:"-"` // the spelling PPaaS sent
	StatusReason        string    `json:"statusReason,omitempty"`
	Sequence            int64     `json:"sequence"`
	QRCode              *QRCode   `json:"qrCode,omitempty"`
	ProviderReference   string    `json:"providerReference,omitempty"`
	PaymentAmount       Amount    `json:"paymentAmount"`
	Order               Order     `json:"order"`
	RefundedAmount      int64     `json:"refundedAmount"`
	CreatedAt           time.Time `json:"createdAt"`
	UpdatedAt           time.Time `json:"updatedAt"`
	Enrichment
}

// Enrichment is what PPaaS adds to a terminal's transaction before it
// forwards it to the provider: the document says PPaaS "enriches the content
// by providing additional data such as merchant ID and acquirer". Where the
// platform puts them in its answers is not documented: these optional fields
// are our assumption, decoded when present and ignored when absent.
type Enrichment struct {
	MerchantID    string `json:"merchantId,omitempty"`    // the merchant at the acquirer
	AcquirerID    string `json:"acquirerId,omitempty"`    // the acquirer
	AcquirerPOIID string `json:"acquirerPoiId,omitempty"` // the terminal at the acquirer
}

// DecodeTransaction parses and validates a Transaction body with no
// configured spellings (see Statuses).
func DecodeTransaction(b []byte) (Transaction, error) { return (*Statuses)(nil).DecodeTransaction(b) }

// RefundRequest is the body of POST …/transactions/{id}/refund.
type RefundRequest struct {
	ClientRefundID string `json:"clientRefundId"`
	Amount         Amount `json:"amount"`
}

// Refund is the refund response.
type Refund struct {
	RefundID       string    `json:"refundId"`
	ClientRefundID string    `json:"clientRefundId"`
	TransactionID  string    `json:"transactionId"`
	Status         string    `json:"status"`
	RawStatus      string    `json:"-"` // the spelling PPaaS sent (Statuses.DecodeRefund)
	Amount         Amount    `json:"amount"`
	CreatedAt      time.Time `json:"createdAt"`
}

// RefundDone is the refund status of a completed refund. Any other status
// ("pending", say) is an asynchronous refund still running: the transaction
// stays approved until a status read shows it refunded.
const RefundDone = "refunded"

// Done reports whether the refund is complete (a definitive answer). A refund
func (r Refund) Done() bool { return r.Status == RefundDone }

// Event is a provider event forwarded by PPaaS over MQTT (see the package doc).
type Event struct {
	EventID             string            `json:"eventId"`
	Type                string            `json:"type"`
	TransactionID       string            `json:"transactionId"`
	ClientTransactionID string            `json:"clientTransactionId,omitempty"`
	Status              State             `json:"status"`
	RawStatus           string            `json:"-"` // the spelling PPaaS sent
	StatusReason        string            `json:"statusReason,omitempty"`
	Sequence            int64             `json:"sequence"`
	Time                time.Time         `json:"time"`
	ProviderReference   string            `json:"providerReference,omitempty"`
	Provider            map[string]string `json:"provider,omitempty"`
	// reasonChargeback: DecodeEvent found a chargeback phrase in the whole
	// statusReason, before clipping it (ChargedBack).
	reasonChargeback bool
}

// EventTypeStatus is the only event type the agent acts on today.
const EventTypeStatus = "transaction.status"

// DecodeEvent parses and validates one MQTT event payload with no configured
// spellings (see Statuses).
func DecodeEvent(b []byte) (Event, error) { return (*Statuses)(nil).DecodeEvent(b) }

// EventTopic is the topic a device's events arrive on.
func EventTopic(serial string) string { return "ppaas/devices/" + serial + "/events" }
