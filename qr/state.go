package qr

import (
	"errors"
	"fmt"
	"time"
)

// State is the state of an APM transaction. The wire statuses of PPaaS use the
// same strings; Unknown exists only on the agent side (the outcome could not be
// learnt because PPaaS was unreachable).
type State string

const (
	Created          State = "created"
	AwaitingConsumer State = "awaiting_consumer" // QR shown, or wallet QR scanned and sent
	Pending          State = "pending"           // the consumer acted; the provider is deciding
	// Confirming: the consumer has paid, the provider has not confirmed yet
	// (a blockchain payment waiting for its confirmations). Never cancelled
	// by a timeout: it waits for the confirmation.
	Confirming State = "confirming"
	Approved   State = "approved"
	Declined   State = "declined"
	Cancelled  State = "cancelled"
	Expired    State = "expired"
	Refunded   State = "refunded"
	Unknown    State = "unknown"
)

// transitions lists the legal moves. Intermediate states may be skipped because
// events can be lost or arrive out of order; final states never move except
// approved → refunded, and unknown resolves to whatever PPaaS later says.
var transitions = map[State][]State{
	Created:          {AwaitingConsumer, Pending, Confirming, Approved, Declined, Cancelled, Expired, Unknown},
	AwaitingConsumer: {Pending, Confirming, Approved, Declined, Cancelled, Expired, Unknown},
	Pending:          {Confirming, Approved, Declined, Cancelled, Expired, Unknown},
	Confirming:       {Approved, Declined, Cancelled, Expired, Unknown},
	Unknown:          {AwaitingConsumer, Pending, Confirming, Approved, Declined, Cancelled, Expired, Refunded},
	Approved:         {Refunded},
}

// ErrIllegalTransition is returned (wrapped) for a move the machine forbids.
var ErrIllegalTransition = errors.New("illegal transition")

// Final reports whether no further payment decision can happen in s. Approved is
// final for the payment even though it may later be refunded.
func (s State) Final() bool {
	switch s {
	case Approved, Declined, Cancelled, Expired, Refunded:
		return true
	}
	return false
}

// wire reports whether s may appear in a PPaaS response or event.
func (s State) wire() bool {
	switch s {
	case Created, AwaitingConsumer, Pending, Confirming, Approved, Declined, Cancelled, Expired, Refunded:
		return true
	}
	return false
}

// CanMove reports whether from → to is legal. Staying in place is not a move.
func CanMove(from, to State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Transition is one recorded state change of a transaction.
type Transition struct {
	ClientTransactionID string
	TransactionID       string // PPaaS id; empty before create answered
	From, To            State
	At                  time.Time
	Source              string // "agent", "event", "poll", "cancel", "refund"
	EventID             string // set when Source is "event"
	Sequence            int64
	Reason              string
}

// machine holds one transaction's state; the caller serialises access.
type machine struct {
	state   State
	lastSeq int64
}

// move validates from → to and returns the Transition to record. It does not
// change the machine: the caller commits with apply once the transition is
// durably recorded, so a failed write leaves memory and journal in agreement.
func (m *machine) move(to State) error {
	if !CanMove(m.state, to) {
		return fmt.Errorf("%w: %s → %s", ErrIllegalTransition, m.state, to)
	}
	return nil
}

func (m *machine) apply(t Transition) {
	m.state = t.To
	if t.Sequence > m.lastSeq {
		m.lastSeq = t.Sequence
	}
}
