package ppaas

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
)

// Statuses decodes PPaaS status spellings into States. The statuses are our
// contract, not the PPaaS document's, so decoding is tolerant: a configured
// spelling maps to the State it names (the real platform may say AUTHORIZED
// for approved), our own spellings map to themselves, and anything else is
// Pending — the transaction is not decided as far as the agent can tell, so it
// keeps polling — never an unknown outcome. Each unknown spelling is reported
// once (Unknown) and every occurrence is counted. The zero value and nil are
// usable (no configured spellings).
type Statuses struct {
	m map[string]State // upper-cased spelling → state

	// OnUnknown, when set, is called once per unknown spelling (the first 64
	// distinct ones: a peer cannot grow the set without bound).
	OnUnknown func(raw string)

	mu      sync.Mutex
	seen    map[string]struct{}
	unknown atomic.Int64
}

// maxSeenSpellings bounds the unknown spellings remembered for OnUnknown.
const maxSeenSpellings = 64

// ParseStatuses parses "SPELLING=state,..." (e.g. "AUTHORIZED=approved,
// PENDING=pending"); states are the wire statuses of this package.
func ParseStatuses(spec string) (*Statuses, error) {
	s := &Statuses{m: map[string]State{}}
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
		if !State(st).wire() {
			return nil, fmt.Errorf("%q: %q is not a status (created, awaiting_consumer, pending, confirming, approved, declined, cancelled, expired, refunded)", item, st)
		}
		s.m[strings.ToUpper(raw)] = State(st)
	}
	return s, nil
}

// State maps a wire spelling to a State.
func (s *Statuses) State(raw string) State {
	if s != nil && len(s.m) > 0 {
		if st, ok := s.m[strings.ToUpper(raw)]; ok {
			return st
		}
	}
	if st := State(raw); st.wire() {
		return st
	}
	if s != nil {
		s.unknown.Add(1)
		s.report(raw)
	}
	return Pending
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
	s.mu.Lock()
	if s.seen == nil {
		s.seen = map[string]struct{}{}
	}
	_, dup := s.seen[raw]
	full := len(s.seen) >= maxSeenSpellings
	if !dup && !full {
		s.seen[raw] = struct{}{}
	}
	s.mu.Unlock()
	if !dup && !full {
		s.OnUnknown(raw)
	}
}

// wireStatus reads the raw status of a body.
type wireStatus struct {
	Status string `json:"status"`
}

// DecodeTransaction parses and validates a Transaction body, mapping its status.
func (s *Statuses) DecodeTransaction(b []byte) (Transaction, error) {
	var t Transaction
	if err := json.Unmarshal(b, &t); err != nil {
		return Transaction{}, fmt.Errorf("decode transaction: %w", err)
	}
	if t.TransactionID == "" {
		return Transaction{}, errors.New("decode transaction: transactionId missing")
	}
	t.RawStatus = string(t.Status)
	t.Status = s.State(t.RawStatus)
	return t, nil
}

// DecodeEvent parses and validates one MQTT event payload, mapping its status.
func (s *Statuses) DecodeEvent(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	switch {
	case e.EventID == "":
		return Event{}, errors.New("decode event: eventId missing")
	case e.TransactionID == "" && e.ClientTransactionID == "":
		return Event{}, errors.New("decode event: transactionId and clientTransactionId missing")
	case e.Sequence < 0:
		return Event{}, fmt.Errorf("decode event: negative sequence %d", e.Sequence)
	}
	if e.Type == "" {
		e.Type = EventTypeStatus
	}
	e.RawStatus = string(e.Status)
	e.Status = s.State(e.RawStatus)
	return e, nil
}
