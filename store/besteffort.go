package store

import "errors"

// bestEffort makes an outbox append that rides with a journal commit
// (AppendTxnEvents) optional: a record of a non-critical kind (a digital
// receipt, a POS notification) is refused when the outbox is full, as Append
// refuses it (counted in the refused metric), but its refusal never fails the
// commit it rides with: the final response it accompanies must be written.
func bestEffort(fn op) op {
	return func(w *wtx) error {
		if err := fn(w); !errors.Is(err, ErrOutboxFull) {
			return err
		}
		return nil
	}
}
