package qr

import (
	"errors"
	"fmt"
	"time"

	"github.com/termagent/termagent/ppaas"
)

// Unknown is the state of a transaction whose outcome the agent could not learn
// (PPaaS unreachable). It exists only on the agent side: PPaaS never sends it.
const Unknown ppaas.State = "unknown"

// transitions lists the legal moves. Intermediate states may be skipped because
// events can be lost or arrive out of order; final states never move except
// approved → refunded, and unknown resolves to whatever PPaaS later says.
var transitions = map[ppaas.State][]ppaas.State{
	ppaas.Created:          {ppaas.AwaitingConsumer, ppaas.Pending, ppaas.Confirming, ppaas.Approved, ppaas.Declined, ppaas.Cancelled, ppaas.Expired, Unknown},
	ppaas.AwaitingConsumer: {ppaas.Pending, ppaas.Confirming, ppaas.Approved, ppaas.Declined, ppaas.Cancelled, ppaas.Expired, Unknown},
	ppaas.Pending:          {ppaas.Confirming, ppaas.Approved, ppaas.Declined, ppaas.Cancelled, ppaas.Expired, Unknown},
	ppaas.Confirming:       {ppaas.Approved, ppaas.Declined, ppaas.Cancelled, ppaas.Expired, Unknown},
	Unknown:                {ppaas.AwaitingConsumer, ppaas.Pending, ppaas.Confirming, ppaas.Approved, ppaas.Declined, ppaas.Cancelled, ppaas.Expired, ppaas.Refunded},
	ppaas.Approved:         {ppaas.Refunded},
}

// ErrIllegalTransition is returned (wrapped) for a move the machine forbids.
var ErrIllegalTransition = errors.New("illegal transition")

// CanMove reports whether from → to is legal. Staying in place is not a move.
func CanMove(from, to ppaas.State) bool {
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
	From, To            ppaas.State
	At                  time.Time
	Source              string // "agent", "event", "poll", "cancel", "refund"
	EventID             string // set when Source is "event"
	Sequence            int64
	Reason              string
}

// machine holds one transaction's state; the caller serialises access.
type machine struct {
	state   ppaas.State
	lastSeq int64
}

// move validates from → to and returns the Transition to record. It does not
// change the machine: the caller commits with apply once the transition is
// durably recorded, so a failed write leaves memory and journal in agreement.
func (m *machine) move(to ppaas.State) error {
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
