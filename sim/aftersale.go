package sim

import (
	"fmt"
	"maps"

	"github.com/termagent/termagent/ppaas"
)

// After-sale actions (issue 14): whatever its provider, an approved
// transaction can later be refunded by the provider (not at the terminal's
// request) or charged back by the consumer's bank, as PTI's subsequent
// updates are. PPaaS records it refunded in full and publishes the event on
// the transaction the terminal answered long ago. Through the control API
// (POST /control/transactions/{id}/{action}) and a scenario's consumer step.
const (
	ActionProviderRefund = "provider-refund"
	ActionChargeback     = "provider-chargeback"
)

// afterSaleLocked carries out an after-sale action; handled is false for any
// other action (the provider's own).
func (pm *payments) afterSaleLocked(tx *SimTransaction, action string) (handled bool, err error) {
	var reason, raw string
	switch action {
	case ActionProviderRefund:
		reason, raw = "refunded by the provider after the sale", "REFUNDED"
	case ActionChargeback:
		reason, raw = "charged back by the card holder", "CHARGED_BACK"
	default:
		return false, nil
	}
	if tx.Status != ppaas.Approved {
		return true, fmt.Errorf("%s needs an approved transaction; it is %s", action, tx.Status)
	}
	m := maps.Clone(tx.Provider)
	if m == nil {
		m = map[string]string{}
	}
	m["status"] = raw
	tx.RefundedAmount = tx.PaymentAmount.Amount
	pm.setLocked(tx, ppaas.Refunded, reason, m)
	return true, nil
}
