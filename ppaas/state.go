package ppaas

// State is the status of a QR transaction as PPaaS reports it (the "status"
// of a Transaction or an Event). The set is an assumption of this project (see
// the package doc); Statuses maps the spellings of a real platform onto it. The
// client adds one state of its own, qr.Unknown, which never travels on the wire.
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
)

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
