package sim

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/termagent/termagent/ppaas"
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
	return []string{"pay", "decline", "soft-decline", "abandon", "error", "review", "authorize", "capture", "settle", "refund", "chargeback", "monitoring-deny"}
}

// ptiResponseCodes are the seed's transactionStatusDetail.providerResponseCode
// values; ptiComplianceCodes its transactionMonitoringResultDetail ones.
var (
	ptiResponseCodes = []string{"PTI_TECHNICAL_ERROR", "PAYMENT_PROVIDER_TECHNICAL_ERROR", "FRAUD_SUSPICION", "BLOCKED_COUNTRY",
		"AVS_CHECK_FAILED", "CVV_CHECK_FAILED", "PAYMENT_INSTRUMENT_PROBLEM", "PAYMENT_PROVIDER_DECLINED"}
	ptiComplianceCodes = []string{"FRAUD_SUSPICION", "TRANSACTION_VELOCITY_VIOLATION", "BLOCKED_JURISDICTION", "GEO_FENCING_VIOLATION", "SANCTION_SCREENING"}
)

// ptiCode is the code named by arg among allowed, def when arg is empty.
func ptiCode(arg, def string, allowed []string) (string, error) {
	if arg == "" {
		return def, nil
	}
	if !slices.Contains(allowed, arg) {
		return "", fmt.Errorf("code %q is not one of the seed's: %s", arg, strings.Join(allowed, ", "))
	}
	return arg, nil
}

// ptiStatus maps PTI's statuses to PPaaS's.
func ptiStatus(s string) ppaas.State {
	switch s {
	case "PENDING":
		return ppaas.Pending
	case "AUTHORIZED", "CAPTURED", "SETTLED":
		return ppaas.Approved
	case "REFUSED", "ERROR":
		return ppaas.Declined
	case "CANCELED":
		return ppaas.Cancelled
	case "REFUNDED", "CHARGED_BACK":
		return ppaas.Refunded
	}
	return ""
}

func (pti) create(_ *payments, tx *SimTransaction, req ppaas.CreateRequest) error {
	tx.ps = &ptiState{}
	tx.ProviderReference = "pti_" + uuid.NewString() // PaymentProviderTransactionId
	if req.PaymentScenario == ppaas.ConsumerScan {
		a := req.PaymentAmount.Amount
		// The seed's SDK payment form; requestId is the integrator's UUID.
		tx.QRCode = &ppaas.QRCode{Payload: fmt.Sprintf("https://sdk.pti.sim.ppaas.test/form?type=FIAT_FUNDING&requestId=%s&amount=%d.%02d&currency=%s",
			req.ClientTransactionID, a/100, a%100, url.QueryEscape(req.PaymentAmount.Currency))}
	}
	return nil
}

func (pti) raw(tx *SimTransaction, s ppaas.State) map[string]string {
	st := tx.ps.(*ptiState)
	status := st.status
	switch s {
	case ppaas.Cancelled:
		status = "CANCELED"
	case ppaas.Refunded:
		if status != "CHARGED_BACK" && status != "CANCELED" {
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

func (p pti) act(pm *payments, tx *SimTransaction, action string, args url.Values) error {
	st := tx.ps.(*ptiState)
	// The subsequent updates act on an authorized transaction; everything else
	// on a live one. Transaction monitoring may deny either.
	late := action == "capture" || action == "settle" || action == "refund" || action == "chargeback"
	switch {
	case late && tx.Status != ppaas.Approved:
		return fmt.Errorf("%s needs an authorized transaction; it is %s", action, tx.Status)
	case action == "monitoring-deny" && tx.Status.Final() && tx.Status != ppaas.Approved:
		return errDecided(tx)
	case !late && action != "monitoring-deny" && tx.Status.Final():
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
		code, err := ptiCode(args.Get("code"), "PAYMENT_PROVIDER_DECLINED", ptiResponseCodes)
		if err != nil {
			return err
		}
		p.setLocked(pm, tx, "REFUSED", code, "HARD_DECLINE", "refused by the payment provider ("+code+")")
	case "soft-decline":
		// A soft decline is still REFUSED: this payment failed; the consumer
		// may try again (another instrument, or later) in a new payment.
		code, err := ptiCode(args.Get("code"), "PAYMENT_INSTRUMENT_PROBLEM", ptiResponseCodes)
		if err != nil {
			return err
		}
		p.setLocked(pm, tx, "REFUSED", code, "SOFT_DECLINE", "refused by the payment provider ("+code+", soft decline: the consumer may retry)")
	case "monitoring-deny":
		code, err := ptiCode(args.Get("code"), "FRAUD_SUSPICION", ptiComplianceCodes)
		if err != nil {
			return err
		}
		p.monitoringDenyLocked(pm, tx, code)
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

// monitoringDenyLocked is a TRANSACTION_MONITORING webhook with status DENY. Before
// the payment is decided it declines it; after AUTHORIZED the funds go back to
// the consumer (a CANCELED subsequent update), which PPaaS reports as refunded:
// a late event the terminal must not take for a new outcome.
func (p pti) monitoringDenyLocked(pm *payments, tx *SimTransaction, code string) {
	st := tx.ps.(*ptiState)
	reason := "transaction monitoring: DENY (" + code + ")"
	ev := func(s ppaas.State) map[string]string {
		m := p.raw(tx, s)
		m["resourceType"], m["status"], m["complianceProviderResponseCode"] = "TRANSACTION_MONITORING", "DENY", code
		delete(m, "PaymentProviderTransactionId")
		return m
	}
	if tx.Status != ppaas.Approved {
		pm.setLocked(tx, ppaas.Declined, reason, ev(ppaas.Declined))
		return
	}
	pm.setLocked(tx, ppaas.Approved, reason, ev(ppaas.Approved))
	tx.RefundedAmount = tx.PaymentAmount.Amount
	st.status, st.code, st.category = "CANCELED", "", ""
	pm.setLocked(tx, ppaas.Refunded, "authorization reversed: "+reason, p.raw(tx, ppaas.Refunded))
}

// setLocked records a PTI webhook and forwards it.
func (p pti) setLocked(pm *payments, tx *SimTransaction, status, code, category, reason string) {
	st := tx.ps.(*ptiState)
	st.status, st.code, st.category = status, code, category
	s := ptiStatus(status)
	pm.setLocked(tx, s, reason, p.raw(tx, s))
}
