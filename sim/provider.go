package sim

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/skip2/go-qrcode"

	"github.com/termagent/termagent/ppaas"
)

// provider models one payment service provider behind the simulated PPaaS,
// selected by the create request's paymentType. Its methods run with
// payments.mu held and change transactions only through payments.setLocked and
// payments.afterLocked, so events, charges and timers stay consistent; the
// provider maps its own vocabulary to PPaaS statuses and puts its raw status in
// the event's provider map, so the agent needs no provider knowledge.
type provider interface {
	// create prepares a new transaction (status awaiting_consumer): provider
	// reference, QR payload, the provider's own state in tx.ps.
	create(pm *payments, tx *SimTransaction, req ppaas.CreateRequest) error
	// act is the consumer or the provider acting (control API). args are the
	// control request's query parameters.
	act(pm *payments, tx *SimTransaction, action string, args url.Values) error
	// raw is the provider's view of a change PPaaS itself made (the terminal
	// cancelled or refunded), for the event's provider map.
	raw(tx *SimTransaction, s ppaas.State) map[string]string
	// actions lists the control actions, for errors and the control API.
	actions() []string
}

// ProvidersConfig configures the modelled providers (see PROVIDERS.md). Zero
// values take the defaults noted; delays are real time, so tests use
// milliseconds.
type ProvidersConfig struct {
	Pennymatic PennymaticConfig
	Pledg      PledgConfig
	KTWidget   KTWidgetConfig
	// KBImageOnly makes the generic (KB) provider return its QR code as an
	// image only (qrCode.imagePng without payload), as the PPaaS document
	// allows ("e.g. an image").
	KBImageOnly bool
}

// PennymaticConfig configures the Pennymatic-like wallet.
type PennymaticConfig struct {
	// ConfirmDelay is how long a paid transaction stays unconfirmed on the
	// blockchain (isconfirmed false) before it is confirmed and approved.
	// Default 3 s; negative: only the control action confirm confirms.
	ConfirmDelay time.Duration
	// PaidStatus is the PPaaS status of a payment paid but not confirmed yet:
	// confirming (default: the consumer has paid; such a transaction must not
	// be cancelled by a timeout) or pending (an older platform's spelling).
	PaidStatus ppaas.State
}

// PledgConfig configures the Pledg-like split payment.
type PledgConfig struct {
	// Shares is the number of payers when the order description does not say
	// ("shares=3"); default 2.
	Shares int
	// Deadline is how long the co-buyers have to pay their shares; default 48 h
	// as in the seed.
	Deadline time.Duration
	// Signing is how notifications are signed: "sha256" (default: SHA-256 over
	// the sorted fields and the secret) or "jwt" (HS256 JWT of the body).
	Signing string
	// Secret is shared between Pledg and the merchant (PPaaS); default random
	// per simulator. Never logged.
	Secret string
}

// KTWidgetConfig configures the KTWidget-like widget.
type KTWidgetConfig struct {
	// RetryScale multiplies the seed's callback retry schedule (15 s, 60 s,
	// 3 m, 10 m, 30 m, 60 m); default 1, tests use e.g. 0.0001.
	RetryScale float64
	// LostAcks is how many deliveries of the final callback go unacknowledged
	// (each one retried on the schedule, so the device gets it again); default
	// 1, negative for none, at most 6.
	LostAcks int
	// ClearingDelay is the time from success to completed (clearing); default 1 s.
	ClearingDelay time.Duration
}

func (c ProvidersConfig) withDefaults() ProvidersConfig {
	if c.Pennymatic.ConfirmDelay == 0 {
		c.Pennymatic.ConfirmDelay = 3 * time.Second
	}
	if c.Pennymatic.PaidStatus == "" {
		c.Pennymatic.PaidStatus = ppaas.Confirming
	}
	if c.Pledg.Shares <= 0 {
		c.Pledg.Shares = 2
	}
	if c.Pledg.Deadline <= 0 {
		c.Pledg.Deadline = 48 * time.Hour
	}
	if c.Pledg.Signing == "" {
		c.Pledg.Signing = PledgSHA256
	}
	if c.Pledg.Secret == "" {
		c.Pledg.Secret = randomHex(32)
	}
	if c.KTWidget.RetryScale <= 0 {
		c.KTWidget.RetryScale = 1
	}
	switch {
	case c.KTWidget.LostAcks == 0:
		c.KTWidget.LostAcks = 1
	case c.KTWidget.LostAcks < 0:
		c.KTWidget.LostAcks = 0
	}
	c.KTWidget.LostAcks = min(c.KTWidget.LostAcks, ktRetries)
	if c.KTWidget.ClearingDelay <= 0 {
		c.KTWidget.ClearingDelay = time.Second
	}
	return c
}

func (c ProvidersConfig) validate() error {
	if c.Pennymatic.PaidStatus != ppaas.Pending && c.Pennymatic.PaidStatus != pennymaticConfirming {
		return fmt.Errorf("pennymatic paid status %q is not %s or %s", c.Pennymatic.PaidStatus, ppaas.Pending, pennymaticConfirming)
	}
	if c.Pledg.Signing != PledgSHA256 && c.Pledg.Signing != PledgJWT {
		return fmt.Errorf("pledg signing %q is not %s or %s", c.Pledg.Signing, PledgSHA256, PledgJWT)
	}
	return nil
}

// newProviders builds the provider registry, keyed by paymentType.
func newProviders(c ProvidersConfig) map[string]provider {
	return map[string]provider{
		"KB":         generic{},
		"PENNYMATIC": &pennymatic{cfg: c.Pennymatic},
		"PLEDG":      &pledg{cfg: c.Pledg},
		"KTWIDGET":   &ktwidget{cfg: c.KTWidget},
		"PTI":        pti{},
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// randomDigits is a random number of up to 13 decimal digits (Pledg references).
func randomDigits() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:]) % 1e13
}

// errAction is a control action the provider does not offer.
func errAction(p provider, action string) error {
	return fmt.Errorf("unknown action %q (offered: %v)", action, p.actions())
}

// errDecided is a control action on a transaction that can no longer change.
func errDecided(tx *SimTransaction) error {
	return fmt.Errorf("transaction is already %s", tx.Status)
}

// generic is the KB provider: immediate approve or decline per control API.
type generic struct{}

func (generic) actions() []string { return []string{"pay", "decline", "abandon"} }

func (generic) create(pm *payments, tx *SimTransaction, req ppaas.CreateRequest) error {
	tx.ProviderReference = "KB-" + uuid.NewString()[:8]
	if req.PaymentScenario == ppaas.MerchantScan {
		if !kbWalletCode(req.ScannedPaymentID) {
			return fmt.Errorf("scannedPaymentId is not a KB wallet code (16 to 32 digits, as the PPaaS document's 281666027690188713769014)")
		}
		tx.ps = kbScan{code: req.ScannedPaymentID}
	}
	if req.PaymentScenario == ppaas.ConsumerScan {
		tx.QRCode = &ppaas.QRCode{Payload: "https://pay.kb.sim.ppaas.test/p/" + tx.TransactionID}
		if pm.cfg.KBImageOnly {
			img, err := qrcode.Encode(tx.QRCode.Payload, qrcode.Medium, 256)
			if err != nil {
				return err
			}
			tx.QRCode = &ppaas.QRCode{ImagePNG: img}
		}
	}
	return nil
}

func (g generic) act(pm *payments, tx *SimTransaction, action string, _ url.Values) error {
	if tx.Status.Final() {
		return errDecided(tx)
	}
	switch action {
	case "pay":
		pm.decideLocked(tx, ppaas.Approved, "")
	case "decline":
		pm.decideLocked(tx, ppaas.Declined, "insufficient funds in wallet")
	case "abandon":
		// The consumer walks away: nothing happens until the terminal gives up.
		tx.Abandoned = true
	default:
		return errAction(g, action)
	}
	return nil
}

func (generic) raw(tx *SimTransaction, _ ppaas.State) map[string]string {
	return map[string]string{"paymentType": tx.PaymentType, "provider": "generic"}
}

// kbScan is a KB merchantscan payment's state: the code the terminal scanned.
type kbScan struct{ code string }

// kbWalletCode reports whether code looks like a KB wallet's one-time code:
// the PPaaS document's example is 24 digits.
func kbWalletCode(code string) bool {
	if len(code) < 16 || len(code) > 32 {
		return false
	}
	for _, c := range code {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// scannedLocked decides a KB merchantscan payment at once, as a wallet's
// one-time code authorises the charge: approved, or declined when the code was
// already used for another payment (a replayed screenshot).
func (generic) scannedLocked(pm *payments, tx *SimTransaction) {
	code := tx.ps.(kbScan).code
	for _, other := range pm.byID {
		if s, ok := other.ps.(kbScan); ok && other != tx && s.code == code {
			pm.decideLocked(tx, ppaas.Declined, "wallet code already used")
			return
		}
	}
	pm.decideLocked(tx, ppaas.Approved, "")
}

// live reports whether a provider may still decide tx (not final, not cancelled).
func live(tx *SimTransaction) bool { return !tx.Status.Final() }

// describe is the control API's view of the providers. The Pledg secret is
// left out: it is a credential.
func (pm *payments) describe() map[string]any {
	types := make([]string, 0, len(pm.providers))
	for t := range pm.providers {
		types = append(types, t)
	}
	slices.Sort(types)
	list := make([]map[string]any, 0, len(types))
	for _, t := range types {
		list = append(list, map[string]any{"paymentType": t, "actions": pm.providers[t].actions()})
	}
	c := pm.cfg
	pm.mu.Lock()
	rejected := pm.rejected
	pm.mu.Unlock()
	return map[string]any{
		"providers": list,
		"settings": map[string]map[string]string{
			"PENNYMATIC": {"confirmDelay": c.Pennymatic.ConfirmDelay.String(), "paidStatus": string(c.Pennymatic.PaidStatus)},
			"PLEDG":      {"shares": fmt.Sprint(c.Pledg.Shares), "deadline": c.Pledg.Deadline.String(), "signing": c.Pledg.Signing},
			"KTWIDGET": {"retryScale": fmt.Sprint(c.KTWidget.RetryScale), "lostAcks": fmt.Sprint(c.KTWidget.LostAcks),
				"clearingDelay": c.KTWidget.ClearingDelay.String()},
		},
		"rejectedNotifications": rejected,
	}
}
