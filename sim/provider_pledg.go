package sim

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/termagent/termagent/ppaas"
)

// Signing modes of Pledg notifications (seed pledg-integration.md).
const (
	PledgSHA256 = "sha256" // "signature" field: SHA-256 over sorted key=value joined by the secret
	PledgJWT    = "jwt"    // body {"signature": HS256 JWT of the notification}
)

// pledgMaxNotification bounds a notification body.
const pledgMaxNotification = 16 << 10

// pledgMaxShares bounds the payers of one purchase.
const pledgMaxShares = 10

// pledg models the Pledg split payment: the purchase amount is split in
// shares, one per co-buyer; it completes when every share is paid and fails
// at the deadline (48 h in the seed) otherwise. Pledg reports by signed
// notifications, which the simulated PPaaS verifies before forwarding
// anything to the device: a forged notification must never approve.
type pledg struct{ cfg PledgConfig }

type pledgShare struct {
	ID     string
	Amount int64
	Paid   bool
}

type pledgState struct {
	uid    string // pur_…
	shares []pledgShare
}

func (st *pledgState) paid() int {
	n := 0
	for _, s := range st.shares {
		if s.Paid {
			n++
		}
	}
	return n
}

func (pledg) actions() []string {
	return []string{"pay", "decline", "abandon", "pay-share", "shares", "expire", "fail", "transfer", "forge"}
}

// pledgErrors are the seed's error.type values ("Errors handling") with its
// descriptions; a failed notification carries one of them.
var pledgErrors = map[string]string{
	"invalid_request_error":       "Your settings are malformed (ex.: invalid merchantId, invalid email, invalid amountCents, ...)",
	"maintenance":                 "The Pledg backend is under maintenance",
	"internal_error":              "The Pledg backend failed",
	"payment_refused":             "The PSP of Pledg failed",
	"bad_gateway":                 "The PSP of the merchant failed (back mode only)",
	"3DS_confirmation_timeout":    "The 3DS payment process could not be completed on time",
	"direct_confirmation_timeout": "The direct (i.e. without 3DS) payment process could not be completed on time",
	"not_eligible":                "The customer is not eligible to this type of payment (an authorization may appear on the customer account but no money will be debited)",
}

// pledgDeadlineError is the error of a split purchase whose shares were not all
// paid in time: the seed has no error of its own for the 48 h deadline, and
// direct_confirmation_timeout ("could not be completed on time") is the one
// that says it.
const pledgDeadlineError = "direct_confirmation_timeout"

// sharesInDescription finds "shares=3" (or "shares: 3") in an order description.
func sharesInDescription(d string) (int, bool) {
	m := regexp.MustCompile(`(?i)\bshares?\s*[=:]\s*(\d+)`).FindStringSubmatch(d)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}

// split divides amount into n shares; the leader (first) takes the remainder.
func split(amount int64, n int) ([]pledgShare, error) {
	if n < 1 || n > pledgMaxShares {
		return nil, fmt.Errorf("split payment needs 1 to %d payers, not %d", pledgMaxShares, n)
	}
	if amount < int64(n) {
		return nil, fmt.Errorf("amount %d is too small for %d shares", amount, n)
	}
	shares := make([]pledgShare, n)
	for i := range shares {
		shares[i] = pledgShare{ID: "shr_" + uuid.NewString()[:13], Amount: amount / int64(n)}
	}
	shares[0].Amount += amount % int64(n)
	return shares, nil
}

func (p *pledg) create(pm *payments, tx *SimTransaction, req ppaas.CreateRequest) error {
	n, ok := sharesInDescription(req.Order.OrderDescription)
	if !ok {
		n = p.cfg.Shares
	}
	shares, err := split(req.PaymentAmount.Amount, n)
	if err != nil {
		return fmt.Errorf("pledg: %w", err)
	}
	st := &pledgState{uid: "pur_" + uuid.NewString(), shares: shares}
	tx.ps = st
	tx.ProviderReference = fmt.Sprintf("PLEDG_%013d", randomDigits())
	if req.PaymentScenario == ppaas.ConsumerScan {
		// The seed's direct call of the Pledg front, with the merchant's
		// parameters in a JWT signed with the shared secret.
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"reference": tx.ProviderReference, "amountCents": req.PaymentAmount.Amount,
			"currency": req.PaymentAmount.Currency, "paymentType": "SPLIT",
			"exp": pm.now().Add(p.cfg.Deadline).Unix(),
		}).SignedString([]byte(p.cfg.Secret))
		if err != nil {
			return fmt.Errorf("pledg: sign front parameters: %w", err)
		}
		// The seed: "The path of the URL is /purchases".
		tx.QRCode = &ppaas.QRCode{Payload: "https://front.ecard.pledg.sim.ppaas.test/purchases?signature=" + tok}
	}
	pm.afterLocked(p.cfg.Deadline, func() {
		if live(tx) {
			p.notifyLocked(pm, tx, "failed", pledgDeadlineError, st.uid, false)
		}
	})
	return nil
}

func (p *pledg) raw(tx *SimTransaction, s ppaas.State) map[string]string {
	status := map[ppaas.State]string{ppaas.Cancelled: "voided", ppaas.Refunded: "refunded"}[s]
	return p.rawFields(tx, pledgNotification{Status: status, Reference: tx.ProviderReference, ID: tx.ps.(*pledgState).uid})
}

func (p *pledg) rawFields(tx *SimTransaction, n pledgNotification) map[string]string {
	st := tx.ps.(*pledgState)
	m := map[string]string{
		"paymentType": tx.PaymentType, "status": n.Status, "reference": n.Reference, "id": n.ID,
		"uid": st.uid, "shares": strconv.Itoa(len(st.shares)), "sharesPaid": strconv.Itoa(st.paid()),
	}
	if n.Error != "" {
		m["error"] = n.Error
	}
	return m
}

func (p *pledg) act(pm *payments, tx *SimTransaction, action string, args url.Values) error {
	st := tx.ps.(*pledgState)
	if tx.Status.Final() {
		return errDecided(tx)
	}
	switch action {
	case "abandon":
		tx.Abandoned = true
	case "shares":
		if st.paid() > 0 {
			return errors.New("shares cannot change once one is paid")
		}
		n, err := strconv.Atoi(args.Get("n"))
		if err != nil {
			return fmt.Errorf("shares needs n=<payers>: %w", err)
		}
		shares, err := split(tx.PaymentAmount.Amount, n)
		if err != nil {
			return err
		}
		st.shares = shares
	case "pay-share":
		i, err := p.shareIndex(st, args.Get("share"))
		if err != nil {
			return err
		}
		p.payShareLocked(pm, tx, i)
	case "pay":
		for i := range st.shares {
			if !st.shares[i].Paid && live(tx) {
				p.payShareLocked(pm, tx, i)
			}
		}
	case "decline":
		// A co-buyer's card is refused by Pledg's PSP: the split purchase fails.
		p.notifyLocked(pm, tx, "failed", "payment_refused", st.uid, false)
	case "expire":
		p.notifyLocked(pm, tx, "failed", pledgDeadlineError, st.uid, false)
	case "fail":
		code := args.Get("error")
		if _, ok := pledgErrors[code]; !ok {
			return fmt.Errorf("fail needs error=<one of the seed's error types: %s>", strings.Join(slices.Sorted(maps.Keys(pledgErrors)), ", "))
		}
		p.notifyLocked(pm, tx, "failed", code, st.uid, false)
	case "transfer":
		// Transfer mode: Pledg validates the purchase and will transfer the
		// amount at the end of the day; its notification is a JWT of the
		// transfer (no status field).
		return p.transferLocked(pm, tx)
	case "forge":
		// Someone who does not hold the secret claims the purchase completed.
		p.notifyLocked(pm, tx, "completed", "", st.uid, true)
	default:
		return errAction(p, action)
	}
	return nil
}

// shareIndex is the share a pay-share acts on: "share" is 1-based, default the
// first unpaid one. Paying a paid share is refused: a co-buyer is charged once.
func (p *pledg) shareIndex(st *pledgState, arg string) (int, error) {
	if arg == "" {
		for i, s := range st.shares {
			if !s.Paid {
				return i, nil
			}
		}
		return 0, errors.New("every share is paid")
	}
	n, err := strconv.Atoi(arg)
	if err != nil || n < 1 || n > len(st.shares) {
		return 0, fmt.Errorf("share %q is not 1..%d", arg, len(st.shares))
	}
	if st.shares[n-1].Paid {
		return 0, fmt.Errorf("share %d is already paid", n)
	}
	return n - 1, nil
}

func (p *pledg) payShareLocked(pm *payments, tx *SimTransaction, i int) {
	st := tx.ps.(*pledgState)
	st.shares[i].Paid = true
	p.notifyLocked(pm, tx, "authorized", "", st.shares[i].ID, false)
	if st.paid() == len(st.shares) {
		p.notifyLocked(pm, tx, "completed", "", st.uid, false)
	}
}

// notifyLocked is Pledg posting a signed notification to PPaaS's webhook;
// forged ones are signed with a wrong secret.
func (p *pledg) notifyLocked(pm *payments, tx *SimTransaction, status, errCode, id string, forged bool) {
	n := pledgNotification{
		CreatedAt: pm.now().UTC().Format(time.RFC3339Nano), Error: errCode, ID: id,
		Reference: tx.ProviderReference, Sandbox: "true", Status: status,
	}
	secret := p.cfg.Secret
	if forged {
		secret = randomHex(16)
	}
	body, err := encodePledgNotification(n, p.cfg.Signing, secret)
	if err != nil {
		pm.log.Error("simulated pledg encode notification", "err", err)
		return
	}
	if err := pm.pledgIngestLocked(body); err != nil && !forged {
		pm.log.Error("simulated pledg notification not accepted", "reference", n.Reference, "err", err)
	}
}

// pledgTransfer is the transfer-mode notification (seed "Transfer mode",
// "Notification"), always sent as {"signature": HS256 JWT of these fields}.
type pledgTransfer struct {
	Reference            string `json:"reference"`
	Created              string `json:"created"`
	TransferOrderItemUID string `json:"transfer_order_item_uid"`
	MerchantUID          string `json:"merchant_uid"`
	PurchaseUID          string `json:"purchase_uid"`
	AmountCents          int64  `json:"amount_cents"`
	jwt.RegisteredClaims
}

// transferLocked is Pledg validating a purchase in transfer mode: the
// notification says the full amount will be transferred.
func (p *pledg) transferLocked(pm *payments, tx *SimTransaction) error {
	st := tx.ps.(*pledgState)
	n := pledgTransfer{
		Reference: tx.ProviderReference, Created: pm.now().UTC().Format("2006-01-02 15:04:05.000000"),
		TransferOrderItemUID: "tri_" + randomHex(12), MerchantUID: "mer_" + uuid.NewString(),
		PurchaseUID: st.uid, AmountCents: tx.PaymentAmount.Amount,
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, n).SignedString([]byte(p.cfg.Secret))
	if err != nil {
		return fmt.Errorf("sign pledg transfer notification: %w", err)
	}
	body, _ := json.Marshal(map[string]string{"signature": tok})
	return pm.pledgIngestLocked(body)
}

// pledgNotification is Pledg's standard notification (seed "Standard
// notification"). Metadata and additional_data are not signed, so PPaaS
// takes no decision from them.
type pledgNotification struct {
	CreatedAt      string         `json:"created_at"`
	Error          string         `json:"error"`
	ID             string         `json:"id"`
	Reference      string         `json:"reference"`
	Sandbox        string         `json:"sandbox"`
	Status         string         `json:"status"`
	Metadata       map[string]any `json:"metadata,omitempty"`
	AdditionalData map[string]any `json:"additional_data,omitempty"`
	Signature      string         `json:"signature,omitempty"`
	// AmountCents is set from a transfer-mode notification only.
	AmountCents int64 `json:"-"`
}

// pledgClaims is the notification as the claims of a JWT-signed body: a
// standard notification, or a transfer-mode one (transfer_order_item_uid,
// amount_cents, created; no status).
type pledgClaims struct {
	pledgNotification
	Created              string `json:"created,omitempty"`
	TransferOrderItemUID string `json:"transfer_order_item_uid,omitempty"`
	AmountCents          int64  `json:"amount_cents,omitempty"`
	jwt.RegisteredClaims
}

// pledgTransferred is the status the simulated PPaaS gives a transfer-mode
// notification (the seed's has none): the purchase is validated.
const pledgTransferred = "transferred"

// pledgSignature is the seed's SHA-256 signature: the signed keys in
// alphabetical order as key=value, joined by the secret, hashed, upper-case hex.
func pledgSignature(n pledgNotification, secret string) string {
	s := strings.Join([]string{
		"created_at=" + n.CreatedAt, "error=" + n.Error, "id=" + n.ID,
		"reference=" + n.Reference, "sandbox=" + n.Sandbox, "status=" + n.Status,
	}, secret)
	sum := sha256.Sum256([]byte(s))
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// encodePledgNotification signs n in the given mode and encodes the body.
func encodePledgNotification(n pledgNotification, mode, secret string) ([]byte, error) {
	switch mode {
	case PledgSHA256:
		n.Signature = pledgSignature(n, secret)
		return json.Marshal(n)
	case PledgJWT:
		n.Signature = ""
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, pledgClaims{pledgNotification: n}).SignedString([]byte(secret))
		if err != nil {
			return nil, fmt.Errorf("sign pledg notification: %w", err)
		}
		return json.Marshal(map[string]string{"signature": tok})
	}
	return nil, fmt.Errorf("pledg signing %q unknown", mode)
}

// ErrPledgSignature is returned (wrapped) for a notification whose signature
// does not verify.
var ErrPledgSignature = errors.New("pledg notification signature invalid")

// decodePledgNotification parses a notification body and verifies it with
// secret, whichever mode it was signed in: a body that is only a JWT is the
// JWT mode, anything else must carry the SHA-256 signature.
func decodePledgNotification(body []byte, secret string) (pledgNotification, error) {
	if len(body) > pledgMaxNotification {
		return pledgNotification{}, errors.New("decode pledg notification: body too large")
	}
	var n pledgNotification
	if err := json.Unmarshal(body, &n); err != nil {
		return pledgNotification{}, fmt.Errorf("decode pledg notification: %w", err)
	}
	if n.Signature == "" {
		return pledgNotification{}, fmt.Errorf("decode pledg notification: %w: missing", ErrPledgSignature)
	}
	if n.Reference == "" && n.Status == "" && strings.Count(n.Signature, ".") == 2 {
		var c pledgClaims
		_, err := jwt.ParseWithClaims(n.Signature, &c, func(*jwt.Token) (any, error) { return []byte(secret), nil },
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}))
		if err != nil {
			return pledgNotification{}, fmt.Errorf("decode pledg notification: %w: %w", ErrPledgSignature, err)
		}
		n = c.pledgNotification
		n.Signature = "" // the whole body was signed; nothing left to compare
		if n.Status == "" && c.TransferOrderItemUID != "" {
			// Transfer mode: the purchase is validated; the amount will be
			// transferred. Its amount must be checked against the purchase's.
			n.Status, n.ID, n.CreatedAt = pledgTransferred, c.TransferOrderItemUID, c.Created
			n.AmountCents = c.AmountCents
		}
	} else {
		want := pledgSignature(n, secret)
		if subtle.ConstantTimeCompare([]byte(strings.ToUpper(n.Signature)), []byte(want)) != 1 {
			return pledgNotification{}, fmt.Errorf("decode pledg notification: %w", ErrPledgSignature)
		}
	}
	if n.Reference == "" || n.Status == "" {
		return pledgNotification{}, errors.New("decode pledg notification: reference and status are required")
	}
	return n, nil
}

// pledgStatus maps a verified notification to the PPaaS status.
func pledgStatus(n pledgNotification) (ppaas.State, string, error) {
	switch n.Status {
	case "authorized":
		return ppaas.Pending, "share paid", nil
	case "completed":
		return ppaas.Approved, "every share paid", nil
	case pledgTransferred:
		return ppaas.Approved, "purchase validated; paid to the merchant by transfer", nil
	case "failed":
		desc, ok := pledgErrors[n.Error]
		if !ok {
			desc = "unknown error"
		}
		if n.Error == "3DS_confirmation_timeout" || n.Error == "direct_confirmation_timeout" {
			return ppaas.Expired, n.Error + ": " + desc, nil
		}
		return ppaas.Declined, n.Error + ": " + desc, nil
	case "voided":
		return ppaas.Cancelled, "purchase voided", nil
	}
	return "", "", fmt.Errorf("pledg status %q unknown", n.Status)
}

// pledgNotify is PPaaS's Pledg webhook (control API for forgery tests).
func (pm *payments) pledgNotify(body []byte) error {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	return pm.pledgIngestLocked(body)
}

// pledgIngestLocked verifies a Pledg notification and forwards it to the
// device as an event. A bad signature is dropped and counted.
func (pm *payments) pledgIngestLocked(body []byte) error {
	n, err := decodePledgNotification(body, pm.cfg.Pledg.Secret)
	if err != nil {
		if errors.Is(err, ErrPledgSignature) {
			pm.rejected++
		}
		pm.log.Warn("simulated PPaaS dropped a pledg notification", "err", err)
		return err
	}
	tx := pm.byRef[n.Reference]
	if tx == nil || tx.PaymentType != "PLEDG" {
		return fmt.Errorf("pledg notification for unknown reference %q", n.Reference)
	}
	s, reason, err := pledgStatus(n)
	if err != nil {
		return err
	}
	if n.Status == pledgTransferred && n.AmountCents != tx.PaymentAmount.Amount {
		return fmt.Errorf("pledg transfer notification for %s: amount_cents %d, the purchase is %d", n.Reference, n.AmountCents, tx.PaymentAmount.Amount)
	}
	if tx.Status.Final() {
		pm.log.Info("simulated PPaaS ignored a pledg notification after the final state",
			"reference", n.Reference, "status", n.Status, "transaction_status", tx.Status)
		return nil
	}
	p := pm.providers["PLEDG"].(*pledg)
	raw := p.rawFields(tx, n)
	raw["signing"] = p.cfg.Signing
	if n.Status == pledgTransferred {
		raw["mode"], raw["signing"], raw["amount_cents"] = "transfer", PledgJWT, strconv.FormatInt(n.AmountCents, 10)
	}
	pm.setLocked(tx, s, reason, raw)
	return nil
}
