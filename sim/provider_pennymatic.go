package sim

import (
	"errors"
	"net/url"
	"strconv"

	"github.com/google/uuid"
	"github.com/termagent/termagent/ppaas"
)

// pennymatic models the Pennymatic crypto-wallet gateway (seed
// pennymatic-api-es.md): the QR is the wallet's connect URL; once the consumer
// connects the wallet (usertoken by webhook) the charge is made (/bsv/pay,
// giving a blockchain txhash), but it is only firm when /bsv/isconfirmed turns
// true. PPaaS reports confirming (paid, txhash present, isconfirmed false), then
// approved. A confirming transaction cannot be cancelled: the blockchain
// payment is made.
type pennymatic struct{ cfg PennymaticConfig }

// pennymaticConfirming is the PPaaS status "the consumer has paid, the
// provider has not confirmed yet" (the default PennymaticConfig.PaidStatus).
const pennymaticConfirming = ppaas.Confirming

type pennyState struct {
	appID, sessionID string
	connected        bool // the wallet granted consent (usertoken received)
	revoked          bool // the consumer withdrew the app's permission in the wallet
	txHash           string
	confirmed        bool
}

func (pennymatic) actions() []string {
	return []string{"pay", "decline", "abandon", "connect", "confirm", "reject", "disconnect"}
}

func (pennymatic) create(_ *payments, tx *SimTransaction, req ppaas.CreateRequest) error {
	st := &pennyState{appID: randomHex(12), sessionID: uuid.NewString()}
	tx.ps = st
	tx.ProviderReference = st.sessionID
	switch req.PaymentScenario {
	case ppaas.ConsumerScan:
		// The seed's connect answer: a deep link that opens the wallet and asks
		// for permission to charge it.
		tx.QRCode = &ppaas.QRCode{Payload: "https://wallet.pennymatic.sim.ppaas.test/#/authorizeApp?appId=" + st.appID + "&sessionid=" + st.sessionID}
	case ppaas.MerchantScan:
		// The terminal scanned a wallet already connected to the operator.
		st.connected = true
	}
	return nil
}

func (p pennymatic) raw(tx *SimTransaction, s ppaas.State) map[string]string {
	st := tx.ps.(*pennyState)
	m := map[string]string{
		"paymentType": tx.PaymentType, "coin": "bsv", "sessionid": st.sessionID,
		"status": "success", "code": "0", "connected": strconv.FormatBool(st.connected && !st.revoked),
	}
	if st.txHash != "" {
		m["txhash"] = st.txHash
		m["isconfirmed"] = strconv.FormatBool(st.confirmed)
		if s == ppaas.Cancelled && !st.confirmed {
			// A blockchain payment cannot be undone: the operator owes the
			// consumer a refund.
			m["refund"] = "owed"
		}
	}
	if s == ppaas.Declined {
		m["status"], m["code"] = "error", "1"
	}
	return m
}

func (p pennymatic) act(pm *payments, tx *SimTransaction, action string, _ url.Values) error {
	st := tx.ps.(*pennyState)
	if tx.Status.Final() {
		return errDecided(tx)
	}
	switch action {
	case "abandon":
		tx.Abandoned = true
	case "connect":
		if st.connected {
			return errors.New("wallet already connected")
		}
		p.connectLocked(pm, tx)
	case "disconnect":
		// Nothing is published: Pennymatic does not tell the operator, who
		// learns it from /connected or from a failed charge.
		st.revoked = true
	case "pay":
		if st.txHash != "" {
			return errors.New("already paid; waiting for confirmation") // never charge twice
		}
		if st.revoked {
			pm.setLocked(tx, ppaas.Declined, "wallet no longer connected (usertoken revoked)", p.raw(tx, ppaas.Declined))
			return nil
		}
		if !st.connected {
			p.connectLocked(pm, tx)
		}
		st.txHash = randomHex(32)
		pm.setLocked(tx, p.cfg.PaidStatus, "paid in wallet; waiting for blockchain confirmation", p.raw(tx, p.cfg.PaidStatus))
		if d := p.cfg.ConfirmDelay; d >= 0 {
			pm.afterLocked(d, func() { p.confirmLocked(pm, tx) })
		}
	case "confirm":
		if st.txHash == "" {
			return errors.New("nothing paid to confirm")
		}
		p.confirmLocked(pm, tx)
	case "reject":
		// The payment never makes it into a block (e.g. a double spend).
		if st.txHash == "" {
			return errors.New("nothing paid to reject")
		}
		pm.setLocked(tx, ppaas.Declined, "payment not confirmed on the blockchain", p.raw(tx, ppaas.Declined))
	case "decline":
		if st.txHash != "" {
			return errors.New("already paid; use reject")
		}
		pm.setLocked(tx, ppaas.Declined, "charge refused in wallet", p.raw(tx, ppaas.Declined))
	default:
		return errAction(p, action)
	}
	return nil
}

// connectLocked is the wallet's consent arriving by webhook (usertoken).
func (p pennymatic) connectLocked(pm *payments, tx *SimTransaction) {
	st := tx.ps.(*pennyState)
	st.connected = true
	pm.setLocked(tx, ppaas.AwaitingConsumer, "wallet connected", p.raw(tx, ppaas.AwaitingConsumer))
}

// confirmLocked is /bsv/isconfirmed turning true. The terminal may have
// cancelled meanwhile, or it may already be confirmed: then nothing happens.
func (p pennymatic) confirmLocked(pm *payments, tx *SimTransaction) {
	st := tx.ps.(*pennyState)
	if (tx.Status != ppaas.Pending && tx.Status != ppaas.Confirming) || st.confirmed {
		return
	}
	st.confirmed = true
	pm.setLocked(tx, ppaas.Approved, "confirmed on the blockchain", p.raw(tx, ppaas.Approved))
}
