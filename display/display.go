// Package display is the terminal display's vocabulary: the one Screen the
// payment engine, the agent's Nexo Display handler, the agent's display
// outputs (log, remote display) and the simulator's virtual terminal page all
// speak, and its one JSON form (what the agent POSTs to a remote display and
// what the virtual terminal streams to its page).
//
// The package has no behaviour beyond drawing a screen's QR code on demand;
// the interfaces that consume a Screen are declared by their users (qr.Display,
// agent.Screens).
package display

import (
	"fmt"
	"time"
)

// The states a screen shows besides a payment's (ppaas.State: created,
// awaiting_consumer, pending, approved, declined, ...).
const (
	// Idle: nothing to show (a terminal that has shown nothing yet).
	Idle = "idle"
	// Message: texts (and maybe a QR code) the POS asked to show with a Nexo
	// Display request.
	Message = "message"
	// AwaitingScan: a consumer-presented (merchantscan) payment waits for the
	// terminal's scanner to read the customer's wallet code.
	AwaitingScan = "awaiting_scan"
)

// Screen is what a terminal's display shows: the payment in progress (amount,
// state, QR code) or a message from the POS. Its JSON form is the display
// protocol between the agent and a remote display.
type Screen struct {
	// Serial is the terminal; a remote display sets it from its URL (the agent
	// does not send it).
	Serial              string    `json:"serial,omitempty"`
	State               string    `json:"state"` // a payment state, Idle or Message
	Message             string    `json:"message,omitempty"`
	Amount              int64     `json:"amount,omitempty"` // minor units of Currency
	Currency            string    `json:"currency,omitempty"`
	TransactionID       string    `json:"transactionId,omitempty"`       // PPaaS id; empty before create answered
	ClientTransactionID string    `json:"clientTransactionId,omitempty"` // the POI transaction id
	QRPayload           string    `json:"qrPayload,omitempty"`
	QRPNG               []byte    `json:"qrPng,omitempty"` // base64 in JSON
	Time                time.Time `json:"time"`

	// QR, when set, draws QRPNG: the payment engine hands its screens over
	// undrawn (a QR code costs ~1.5 ms of CPU the payment need not wait for,
	// and an instantly approved payment never needs) and the display draws
	// them (Drawn). Never in the JSON form.
	QR Drawing `json:"-"`
}

// Drawing is a QR code drawn on first use.
type Drawing interface {
	PNG() ([]byte, error)
}

// Drawn returns the screen with its QR code drawn into QRPNG (and QR cleared);
// a screen without a pending drawing is returned as is.
func (s Screen) Drawn() (Screen, error) {
	if s.QR == nil {
		return s, nil
	}
	png, err := s.QR.PNG()
	if err != nil {
		return s, fmt.Errorf("draw QR code: %w", err)
	}
	s.QRPNG, s.QR = png, nil
	return s, nil
}
