package sim

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/termagent/termagent/ppaas"
)

// ktRetries is the number of callback retries in the seed's schedule.
const ktRetries = 6

// ktRetryDelay is the seed's callback retry schedule: when the merchant's
// callback_post_url does not answer {"status":"ok"}, KTWidget tries again
// after 15 s, 60 s, 3 m, 10 m, 30 m and 60 m.
func ktRetryDelay(i int) time.Duration {
	return [ktRetries]time.Duration{15 * time.Second, 60 * time.Second, 3 * time.Minute, 10 * time.Minute, 30 * time.Minute, 60 * time.Minute}[i]
}

// ktwidget models the KTWidget payment widget (seed ktwidget-ru.md): statuses
// pending (no card data yet) → authorized (funds blocked, further processing
// awaited) → success (paid, clearing from the card not finished) → completed
// (cleared), or error / denied. Those six are all the seed's statuses: a
// cancel or refund made at PPaaS has no widget status, so the provider map
// keeps the widget's last one. PPaaS forwards each change once; the widget's
// callback, sent only at its final statuses (completed, error, denied), is
// retried on the seed's schedule when PPaaS's acknowledgement is lost, so the
// device receives the same event (same eventId) more than once and must
// de-duplicate it.
type ktwidget struct{ cfg KTWidgetConfig }

type ktState struct {
	appID      string
	status     string // the widget's own status
	errType    string
	errMessage string
	lostAcks   int // deliveries of the final callback whose acknowledgement is lost
	deliveries int // deliveries of the final callback so far
}

func (ktwidget) actions() []string {
	return []string{"pay", "decline", "abandon", "authorize", "complete", "error", "input-error", "lose-acks"}
}

// ktStatus maps the widget's statuses to PPaaS's. success is a successful
// payment (the seed: "успешен, но не завершен клиринг" — successful, clearing
// not finished): the consumer has paid, so PPaaS approves; completed (cleared)
// is then a later update of an approved transaction, never a second charge.
func ktStatus(s string) ppaas.State {
	switch s {
	case "pending":
		return ppaas.AwaitingConsumer // the client has not entered card data yet
	case "authorized":
		return ppaas.Pending // funds blocked, further processing awaited
	case "success", "completed":
		return ppaas.Approved
	case "error", "denied":
		return ppaas.Declined
	}
	return ""
}

// ktFinal reports the seed's final statuses, the ones its callback is sent for.
func ktFinal(s string) bool { return s == "completed" || s == "error" || s == "denied" }

// ktErrors are the seed's error_type values.
var ktErrors = map[string]string{
	"ERROR_PAYMENT": "error while the transaction was carried out",
	"ERROR_INPUT":   "error while the card data were entered",
	"ERROR_SYSTEM":  "error while the transaction was processed inside ktpay",
}

func (k *ktwidget) create(_ *payments, tx *SimTransaction, req ppaas.CreateRequest) error {
	st := &ktState{appID: randomHex(16), status: "pending", lostAcks: k.cfg.LostAcks}
	tx.ps = st
	tx.ProviderReference = randomHex(20) // transaction_hash
	if req.PaymentScenario == ppaas.ConsumerScan {
		a := req.PaymentAmount.Amount
		tx.QRCode = &ppaas.QRCode{Payload: fmt.Sprintf("https://widget.ktwidget.sim.ppaas.test/pay?app_id=%s&order_id=%s&amount=%d.%02d&type=ecom",
			st.appID, url.QueryEscape(req.Order.OrderID), a/100, a%100)}
	}
	return nil
}

func (k *ktwidget) raw(tx *SimTransaction, _ ppaas.State) map[string]string {
	st := tx.ps.(*ktState)
	m := map[string]string{"paymentType": tx.PaymentType, "status": st.status, "transaction_hash": tx.ProviderReference, "order_id": tx.Order.OrderID}
	if st.errType != "" {
		m["error_type"], m["error_message"] = st.errType, st.errMessage
	}
	return m
}

func (k *ktwidget) act(pm *payments, tx *SimTransaction, action string, args url.Values) error {
	st := tx.ps.(*ktState)
	// Clearing goes on after the payment succeeded (approved at PPaaS).
	clearing := action == "complete" && tx.Status == ppaas.Approved && st.status == "success"
	if tx.Status.Final() && !clearing {
		return errDecided(tx)
	}
	switch action {
	case "abandon":
		tx.Abandoned = true
	case "lose-acks":
		n, err := strconv.Atoi(args.Get("n"))
		if err != nil || n < 0 || n > ktRetries {
			return fmt.Errorf("lose-acks needs n=0..%d", ktRetries)
		}
		st.lostAcks = n
	case "authorize":
		if st.status != "pending" {
			return fmt.Errorf("widget transaction is %s, not pending", st.status)
		}
		k.setLocked(pm, tx, "authorized", "card authorized; funds blocked")
	case "pay":
		if st.status != "pending" {
			return fmt.Errorf("widget transaction is %s; use complete", st.status)
		}
		k.setLocked(pm, tx, "authorized", "card authorized; funds blocked")
		k.succeedLocked(pm, tx)
	case "complete":
		if st.status == "pending" {
			return errors.New("widget transaction is not authorized yet")
		}
		if st.status == "authorized" {
			k.setLocked(pm, tx, "success", "paid; clearing in progress")
		}
		k.setLocked(pm, tx, "completed", "cleared")
	case "decline":
		st.errType, st.errMessage = "ERROR_PAYMENT", "KKB rejected payment"
		k.setLocked(pm, tx, "denied", "denied by the acquirer: "+ktErrors[st.errType])
	case "error":
		st.errType, st.errMessage = "ERROR_SYSTEM", "processing error in ktpay"
		k.setLocked(pm, tx, "error", "widget error: "+ktErrors[st.errType])
	case "input-error":
		st.errType, st.errMessage = "ERROR_INPUT", "invalid card data"
		k.setLocked(pm, tx, "error", "widget error: "+ktErrors[st.errType])
	default:
		return errAction(k, action)
	}
	return nil
}

// succeedLocked moves an authorized transaction to success, and to completed
// once clearing is done.
func (k *ktwidget) succeedLocked(pm *payments, tx *SimTransaction) {
	k.setLocked(pm, tx, "success", "paid; clearing in progress")
	pm.afterLocked(k.cfg.ClearingDelay, func() {
		// Cleared unless PPaaS cancelled or refunded it meanwhile.
		if tx.ps.(*ktState).status == "success" && tx.Status == ppaas.Approved {
			k.setLocked(pm, tx, "completed", "cleared")
		}
	})
}

// setLocked records the widget status and forwards it; a final status is the
// widget's callback, retried while its acknowledgement is lost.
func (k *ktwidget) setLocked(pm *payments, tx *SimTransaction, status, reason string) {
	st := tx.ps.(*ktState)
	st.status = status
	s := ktStatus(status)
	payload := pm.setLocked(tx, s, reason, k.raw(tx, s))
	if !ktFinal(status) || payload == nil {
		return
	}
	st.deliveries = 1
	k.retryLocked(pm, tx, payload, 0)
}

// retryLocked schedules redelivery i of the final callback if delivery i's
// acknowledgement was lost.
func (k *ktwidget) retryLocked(pm *payments, tx *SimTransaction, payload []byte, i int) {
	st := tx.ps.(*ktState)
	if i >= st.lostAcks || i >= ktRetries {
		return
	}
	d := time.Duration(float64(ktRetryDelay(i)) * k.cfg.RetryScale)
	pm.afterLocked(d, func() {
		st.deliveries++
		pm.redeliverLocked(tx, payload)
		k.retryLocked(pm, tx, payload, i+1)
	})
}
