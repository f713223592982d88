package ppaas

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Statuses decodes PPaaS status spellings into States. The statuses are our
// contract, not the PPaaS document's, so decoding is tolerant: a configured
// spelling maps to the State it names (the real platform may say AUTHORIZED
// for approved), our own spellings map to themselves in any case (APPROVED is
// approved; canceled is cancelled), and anything else is
// Pending — the transaction is not decided as far as the agent can tell, so it
// keeps polling — never an unknown outcome. A chargeback spelling (see
// ChargedBack) is Refunded. Each unknown spelling is reported
// once (Unknown) and every occurrence is counted. The zero value and nil are
// usable (no configured spellings).
type Statuses struct {
	m map[string]State // upper-cased spelling → state

	// chargebacks are the configured chargeback spellings (normalised, see
	// chargebackKey), besides DefaultChargebackSpellings; reasons the
	// phrases of a status reason that tell one (nil: the defaults).
	chargebacks map[string]struct{}
	reasons     []string

	// OnUnknown, when set, is called once per unknown spelling (the first 64
	// distinct ones: a peer cannot grow the set without bound), with the
	// spelling clipped to its first 64 bytes and copied: it shares no memory
	// with the body it came from.
	OnUnknown func(raw string)

	mu      sync.Mutex
	seen    map[string]struct{}
	unknown atomic.Int64

	oversized atomic.Int64 // bodies refused for an id over MaxIDLen (bound.go)
}

// maxSeenSpellings bounds the unknown spellings remembered for OnUnknown.
const maxSeenSpellings = 64

// maxSpellingBytes bounds each unknown spelling remembered (and passed to
// OnUnknown): a status decoded by hand is a slice of its whole body
// (decode.go), so remembering it as it came kept the body alive (100 bodies of
// 1 MB: +63 MiB of heap; TestUnknownSpellingsKeepNoBody).
const maxSpellingBytes = 64

// clipSpelling returns at most maxSpellingBytes of raw, cut at a character
// boundary (a slice of raw: the caller copies what it keeps).
func clipSpelling(raw string) string { return cut(raw, maxSpellingBytes) }

// Chargebacks. A chargeback — the card holder's bank taking a payment
// back — is a "refunded" to this contract, but unlike a refund no response of
// the agent's explains it, so it is always news to the POS. The platform may
// say it in its own status (CHARGED_BACK instead of refunded), in the
// provider's status (PTI's later update: provider.status CHARGED_BACK), or
// only in the status reason. Each of these is an assumption about a platform
// whose document is silent, so the spellings and phrases are configurable.

// ChargedBackState is the pseudo-state a ParseStatuses entry maps a
// chargeback spelling to ("RETROCESSION=charged_back"): it decodes to
// Refunded and ChargedBack reports it.
const ChargedBackState = "charged_back"

// DefaultChargebackSpellings are recognised as chargebacks whatever the
// configuration, in a status or a provider's status (case, spaces and
// hyphens aside: "Charged-Back" is CHARGED_BACK).
var DefaultChargebackSpellings = []string{"CHARGED_BACK", "CHARGEBACK"}

// DefaultChargebackReasons are the phrases of a status reason that tell a
// chargeback when no status does (case-insensitive, anywhere in the reason).
var DefaultChargebackReasons = []string{"charged back", "chargeback"}

// chargebackKey normalises a spelling: upper case, no surrounding spaces,
// spaces and hyphens as underscores.
func chargebackKey(raw string) string {
	return strings.NewReplacer(" ", "_", "-", "_").Replace(strings.ToUpper(strings.TrimSpace(raw)))
}

// maxChargebackReasons bounds the configured phrases.
const maxChargebackReasons = 32

// ParseChargebackReasons parses the status-reason phrases that tell a
// chargeback: "" is DefaultChargebackReasons, "none" is none (only statuses
// tell), else comma-separated phrases (e.g. "charged back,retrocession").
func ParseChargebackReasons(spec string) ([]string, error) {
	spec = strings.TrimSpace(spec)
	switch {
	case spec == "":
		return slices.Clone(DefaultChargebackReasons), nil
	case strings.EqualFold(spec, "none"):
		return []string{}, nil
	}
	var out []string
	for _, p := range strings.Split(spec, ",") {
		p = strings.ToLower(strings.TrimSpace(p))
		switch {
		case p == "":
			continue
		case len(p) < 4:
			return nil, fmt.Errorf("chargeback reason %q: too short to tell a chargeback (at least 4 characters)", p)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, errors.New(`chargeback reasons: no phrase given (use "none" for none)`)
	}
	if len(out) > maxChargebackReasons {
		return nil, fmt.Errorf("chargeback reasons: %d phrases, at most %d", len(out), maxChargebackReasons)
	}
	return out, nil
}

// SetChargebackReasons replaces the status-reason phrases that tell a
// chargeback (ParseChargebackReasons); before any decoding.
func (s *Statuses) SetChargebackReasons(phrases []string) { s.reasons = phrases }

// IsChargeback reports whether a status spelling says chargeback.
func (s *Statuses) IsChargeback(raw string) bool {
	k := chargebackKey(raw)
	if k == "" {
		return false
	}
	if slices.Contains(DefaultChargebackSpellings, k) {
		return true
	}
	if s == nil {
		return false
	}
	_, ok := s.chargebacks[k]
	return ok
}

// ChargedBack reports whether a "refunded" event is a chargeback: its
// status as sent, its provider's status, or (when neither says) a phrase
// of its reason tells it.
func (s *Statuses) ChargedBack(ev Event) bool {
	return ev.reasonChargeback || s.IsChargeback(ev.RawStatus) || s.IsChargeback(ev.Provider["status"]) || s.reasonSaysChargeback(ev.StatusReason)
}

// reasonSaysChargeback reports whether reason holds a chargeback phrase.
func (s *Statuses) reasonSaysChargeback(reason string) bool {
	reasons := DefaultChargebackReasons
	if s != nil && s.reasons != nil {
		reasons = s.reasons
	}
	r := strings.ToLower(reason)
	for _, p := range reasons {
		if strings.Contains(r, p) {
			return true
		}
	}
	return false
}

// ParseStatuses parses "SPELLING=state,..." (e.g. "AUTHORIZED=approved,
// PENDING=pending"); states are the wire statuses of this package, or
// charged_back (ChargedBackState) for a chargeback spelling. A spelling is
// a chargeback or a state, never both: a chargeback spelling that is a wire
// status (REFUNDED=charged_back would make every refund a chargeback) or is
// mapped to a state is refused, and so is a state given to a chargeback
// spelling (CHARGED_BACK=approved would answer a chargeback as a payment).
func ParseStatuses(spec string) (*Statuses, error) {
	s := &Statuses{m: map[string]State{}, chargebacks: map[string]struct{}{}}
	mapped := map[string]string{} // chargebackKey of a spelling mapped to a state → its entry
	var chargebacks []string      // the chargeback entries
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		raw, st, ok := strings.Cut(item, "=")
		raw, st = strings.TrimSpace(raw), strings.TrimSpace(st)
		if !ok || raw == "" {
			return nil, fmt.Errorf("%q: want SPELLING=state", item)
		}
		if strings.EqualFold(st, ChargedBackState) {
			k := chargebackKey(raw)
			if State(strings.ToLower(k)).wire() {
				return nil, fmt.Errorf("%q: %s is a PPaaS status, it cannot also mean a chargeback (every %s would be one)", item, raw, strings.ToLower(k))
			}
			s.chargebacks[k] = struct{}{}
			chargebacks = append(chargebacks, item)
			continue
		}
		if !State(st).wire() {
			return nil, fmt.Errorf("%q: %q is not a status (created, awaiting_consumer, pending, confirming, approved, declined, cancelled, expired, refunded, or charged_back)", item, st)
		}
		if k := chargebackKey(raw); slices.Contains(DefaultChargebackSpellings, k) {
			return nil, fmt.Errorf("%q: %s is a chargeback spelling (decoded as refunded and told apart as a chargeback); it cannot be mapped to a status", item, raw)
		}
		s.m[strings.ToUpper(raw)] = State(st)
		mapped[chargebackKey(raw)] = item
	}
	for _, item := range chargebacks {
		raw, _, _ := strings.Cut(item, "=")
		if other, ok := mapped[chargebackKey(raw)]; ok {
			return nil, fmt.Errorf("%q and %q: a spelling is a chargeback or a status, not both", other, item)
		}
	}
	return s, nil
}

// State maps a wire spelling to a State.
func (s *Statuses) State(raw string) State {
	if st, ok := s.configured(raw); ok {
		return st
	}
	if st := State(raw); st.wire() {
		return st
	}
	if st, ok := ownSpelling(raw); ok {
		return st
	}
	if s.IsChargeback(raw) {
		return Refunded // a chargeback takes the payment back: ChargedBack tells which
	}
	if s != nil {
		s.unknown.Add(1)
		s.report(raw)
	}
	return Pending
}

// ownSpelling reads our own spellings whatever their case ("APPROVED",
// "Approved"), and the US spelling of cancelled, without configuration: a
// platform that writes them so means the same states, and reading them as
// unknown would keep a decided payment pending until its timeout.
func ownSpelling(raw string) (State, bool) {
	st := State(strings.ToLower(raw))
	if st == "canceled" {
		st = Cancelled
	}
	return st, st.wire()
}

// configured reports the State a configured spelling names.
func (s *Statuses) configured(raw string) (State, bool) {
	if s == nil || len(s.m) == 0 {
		return "", false
	}
	st, ok := s.m[strings.ToUpper(raw)]
	return st, ok
}

// UnknownCount is the number of unknown spellings decoded so far.
func (s *Statuses) UnknownCount() int64 {
	if s == nil {
		return 0
	}
	return s.unknown.Load()
}

func (s *Statuses) report(raw string) {
	if s.OnUnknown == nil {
		return
	}
	raw = clipSpelling(raw) // a longer spelling is told by its first bytes
	s.mu.Lock()
	if s.seen == nil {
		s.seen = map[string]struct{}{}
	}
	_, dup := s.seen[raw]
	full := len(s.seen) >= maxSeenSpellings
	var kept string
	if !dup && !full {
		kept = strings.Clone(raw) // not a slice of the body: that would keep it alive
		s.seen[kept] = struct{}{}
	}
	s.mu.Unlock()
	if !dup && !full {
		s.OnUnknown(kept)
	}
}

// wireStatus reads the raw status of a body.
type wireStatus struct {
	Status string `json:"status"`
}

// DecodeTransaction parses and validates a Transaction body, mapping its status.
func (s *Statuses) DecodeTransaction(b []byte) (Transaction, error) {
	var t Transaction
	if !t.decodePlain(b) { // decode.go
		var j Transaction
		if err := json.Unmarshal(b, &j); err != nil {
			return Transaction{}, fmt.Errorf("decode transaction: %w", err)
		}
		t = j
	}
	if t.TransactionID == "" {
		return Transaction{}, errors.New("decode transaction: transactionId missing")
	}
	if len(t.TransactionID) > MaxIDLen { // bound.go
		s.refused()
		return Transaction{}, fmt.Errorf("decode transaction: transactionId of %d bytes: %w (%d)", len(t.TransactionID), ErrOversized, MaxIDLen)
	}
	t.ClipText()
	t.RawStatus = string(t.Status)
	t.Status = s.State(t.RawStatus)
	return t, nil
}

// DecodeEvent parses and validates one MQTT event payload, mapping its status.
func (s *Statuses) DecodeEvent(b []byte) (Event, error) {
	var e Event
	if !e.decodePlain(b) { // decode.go
		var j Event
		if err := json.Unmarshal(b, &j); err != nil {
			return Event{}, fmt.Errorf("decode event: %w", err)
		}
		e = j
	}
	switch {
	case e.EventID == "":
		return Event{}, errors.New("decode event: eventId missing")
	case e.TransactionID == "" && e.ClientTransactionID == "":
		return Event{}, errors.New("decode event: transactionId and clientTransactionId missing")
	case e.Sequence < 0:
		return Event{}, fmt.Errorf("decode event: negative sequence %d", e.Sequence)
	}
	if err := e.checkIDs(); err != nil { // bound.go
		s.refused()
		return Event{}, err
	}
	// The phrase may lie past the clip: the whole reason is read first
	// (TestChargebackPhrasePastTheClipIsSeen).
	e.reasonChargeback = s.reasonSaysChargeback(e.StatusReason)
	e.clipText()
	if e.Type == "" || strings.EqualFold(e.Type, EventTypeStatus) {
		e.Type = EventTypeStatus // its spelling in any case, as statuses
	}
	e.RawStatus = string(e.Status)
	e.Status = s.State(e.RawStatus)
	return e, nil
}

// DecodeRefund parses a refund answer, reading a configured spelling of its
// status as the state it names: a platform that spells refunded REFUNDED
// (REFUNDED=refunded) says so of its refunds too, and a refund left "not done"
// would be re-sent and held pending although the money went back. RefundDone
// in any case is done without configuration, as our own transaction
// spellings are (ownSpelling). A refund's
// own words (RefundDone, "pending", "failed", …) are not transaction statuses,
// so any other spelling is kept as sent and not counted as unknown.
func (s *Statuses) DecodeRefund(b []byte) (Refund, error) {
	var r Refund
	if err := json.Unmarshal(b, &r); err != nil {
		return Refund{}, fmt.Errorf("decode refund: %w", err)
	}
	r.clipText() // bound.go
	r.RawStatus = r.Status
	if st, ok := s.configured(r.Status); ok {
		r.Status = string(st)
	} else if strings.EqualFold(r.Status, RefundDone) {
		r.Status = RefundDone // REFUNDED is done without configuration too
	}
	return r, nil
}
