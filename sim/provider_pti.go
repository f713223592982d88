package sim

import (
	"errors"
	"fmt"
	"net/url"

	"github.com/google/uuid"

	"github.com/termagent/termagent/qr"
)

// pti models the PTI payment processor (seed pti-integration-guide.md):
// PAYMENT_PROCESSOR webhooks with AUTHORIZED/REFUSED/ERROR/PENDING, and
// "subsequent updates" on a transaction already authorized (CAPTURED,
// SETTLED, REFUNDED, CHARGED_BACK). PPaaS forwards those late updates as
// events on the approved transaction; a terminal whose payment is over must
// log and ignore them, never change the outcome it gave the POS.
type pti struct{}

type ptiState struct {
	status   string // PTI's own status
	code     string // transactionStatusDetail.providerResponseCode
	category string // transactionStatusDetail.providerResponseCategory
}

func (pti) actions() []string {
	return []string{"pay", "decline", "abandon", "error", "review", "authorize", "capture", "settle", "refund", "chargeback"}
}

// ptiStatus maps PTI's statuses to PPaaS's.
func ptiStatus(s string) qr.State {
	switch s {
	case "PENDING":
		return qr.Pending
	case "AUTHORIZED", "CAPTURED", "SETTLED":
		return qr.Approved
	case "REFUSED", "ERROR":
		return qr.Declined
	case "CANCELED":
		return qr.Cancelled
	case "REFUNDED", "CHARGED_BACK":
		return qr.Refunded
	}
	return ""
}

func (pti) create(_ *payments, tx *SimTransaction, req qr.CreateRequest) error {
	tx.ps = &ptiState{}
	tx.ProviderReference = "pti_" + uuid.NewString() // PaymentProviderTransactionId
	if req.PaymentScenario == qr.ConsumerScan {
		a := req.PaymentAmount.Amount
		// The seed's SDK payment form; requestId is the integrator's UUID.
		tx.QRCode = &qr.QRCode{Payload: fmt.Sprintf("https://sdk.pti.sim.ppaas.test/form?type=FIAT_FUNDING&requestId=%s&amount=%d.%02d&currency=%s",
			req.ClientTransactionID, a/100, a%100, url.QueryEscape(req.PaymentAmount.Currency))}
	}
	return nil
}

func (pti) raw(tx *SimTransaction, s qr.State) map[string]string {
	st := tx.ps.(*ptiState)
	status := st.status
	switch s {
	case qr.Cancelled:
		status = "CANCELED"
	case qr.Refunded:
		if status != "CHARGED_BACK" {
			status = "REFUNDED"
		}
	}
	a := tx.PaymentAmount.Amount
	m := map[string]string{
		"paymentType": tx.PaymentType, "resourceType": "PAYMENT_PROCESSOR", "status": status,
		"requestId": tx.ClientTransactionID, "transactionType": "FUNDING", "paymentMethod": "TOKEN",
		"amount": fmt.Sprintf("%d.%02d", a/100, a%100), "currency": tx.PaymentAmount.Currency,
		"PaymentProviderTransactionId": tx.ProviderReference,
	}
	if st.code != "" {
		m["providerResponseCode"], m["providerResponseCategory"] = st.code, st.category
	}
	return m
}

func (p pti) act(pm *payments, tx *SimTransaction, action string, _ url.Values) error {
	st := tx.ps.(*ptiState)
	// The subsequent updates act on an authorized transaction; everything else
	// on a live one.
	late := action == "capture" || action == "settle" || action == "refund" || action == "chargeback"
	switch {
	case late && tx.Status != qr.Approved:
		return fmt.Errorf("%s needs an authorized transaction; it is %s", action, tx.Status)
	case !late && tx.Status.Final():
		return errDecided(tx)
	}
	switch action {
	case "abandon":
		tx.Abandoned = true
	case "review":
		if st.status == "PENDING" {
			return errors.New("already pending")
		}
		p.setLocked(pm, tx, "PENDING", "", "", "payment under review")
	case "pay", "authorize":
		if st.status != "PENDING" {
			p.setLocked(pm, tx, "PENDING", "", "", "payment submitted")
		}
		p.setLocked(pm, tx, "AUTHORIZED", "", "", "")
	case "decline":
		p.setLocked(pm, tx, "REFUSED", "PAYMENT_PROVIDER_DECLINED", "HARD_DECLINE", "refused by the payment provider")
	case "error":
		p.setLocked(pm, tx, "ERROR", "PAYMENT_PROVIDER_TECHNICAL_ERROR", "ERROR", "payment provider technical error")
	case "capture":
		p.setLocked(pm, tx, "CAPTURED", "", "", "captured")
	case "settle":
		p.setLocked(pm, tx, "SETTLED", "", "", "settled")
	case "refund", "chargeback":
		status, reason := "REFUNDED", "refunded by the merchant at PTI"
		if action == "chargeback" {
			status, reason = "CHARGED_BACK", "charged back by the card holder"
		}
		tx.RefundedAmount = tx.PaymentAmount.Amount
		p.setLocked(pm, tx, status, "", "", reason)
	default:
		return errAction(p, action)
	}
	return nil
}

// setLocked records a PTI webhook and forwards it.
func (p pti) setLocked(pm *payments, tx *SimTransaction, status, code, category, reason string) {
	st := tx.ps.(*ptiState)
	st.status, st.code, st.category = status, code, category
	s := ptiStatus(status)
	pm.setLocked(tx, s, reason, p.raw(tx, s))
}
