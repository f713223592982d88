package ppaas

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Bounds of the platform's text. The platform is a peer: what it writes
// reaches the POS's answer and receipts, the journal and the logs. A
// providerReference of 200,000 bytes made an approved answer of 601 KB, and
// one of 450 KB an answer the POS's client could not read at all (over its
// 1 MiB bound): a charge the POS could not see. So each string is bounded
// where it is decoded (DecodeTransaction, DecodeEvent, ClipText), and the
// agent fits what fills a Nexo field to that field.
const (
	// MaxIDLen bounds an id the platform names things by: an event naming
	// a longer eventId, transactionId or clientTransactionId, or a
	// transaction whose transactionId is longer, is refused (ErrOversized).
	// Every event id is stored (the de-dup set), and a transaction id is
	// journaled with each step of its payment, told to the POS and printed
	// on its receipts (the agent needs it whole: it addresses the
	// transaction), so its length is disk and answer size the platform could
	// otherwise take at will.
	MaxIDLen = 128
	// MaxReferenceLen bounds a providerReference as kept (Clip).
	MaxReferenceLen = 128
	// MaxTextLen bounds free text: a statusReason, an error's message.
	MaxTextLen = 200
)

// ErrOversized marks a body refused for an id longer than MaxIDLen.
var ErrOversized = errors.New("id longer than the platform's ids may be")

// Clip bounds a platform-given string: longer than n bytes, it is cut at the
// last character boundary at or before n and marked with "…" (3 bytes more).
// n must not be negative.
func Clip(v string, n int) string {
	if len(v) <= n {
		return v
	}
	return cut(v, n) + "…"
}

// cut is v's first n bytes at most, ending at a character boundary (a slice
// of v).
func cut(v string, n int) string {
	if len(v) <= n {
		return v
	}
	for n > 0 && !utf8.RuneStart(v[n]) {
		n--
	}
	return v[:n]
}

// ClipText bounds the platform's free text in t as DecodeTransaction does:
// for a transaction decoded otherwise (the one an error body carries).
func (t *Transaction) ClipText() {
	t.StatusReason = Clip(t.StatusReason, MaxTextLen)
	t.ProviderReference = Clip(t.ProviderReference, MaxReferenceLen)
}

// clipText bounds the platform's free text in e as ClipText does.
func (e *Event) clipText() {
	e.StatusReason = Clip(e.StatusReason, MaxTextLen)
	e.ProviderReference = Clip(e.ProviderReference, MaxReferenceLen)
	e.Type = Clip(e.Type, MaxIDLen)
}

// clipText bounds the platform's words in r: none addresses anything (a
// refund is asked for by its clientRefundId), and a status longer than
// MaxIDLen is none of the short words a refund's status is compared with, so
// it means the same clipped; the id and the status are quoted in the
// journal and to the POS.
func (r *Refund) clipText() {
	r.RefundID = Clip(r.RefundID, MaxIDLen)
	r.TransactionID = Clip(r.TransactionID, MaxIDLen)
	r.ClientRefundID = Clip(r.ClientRefundID, MaxIDLen)
	r.Status = Clip(r.Status, MaxIDLen)
}

// checkIDs refuses an event naming an id longer than MaxIDLen, saying which
// and how long, not the id itself (the refusal is logged).
func (e *Event) checkIDs() error {
	for _, f := range [...]struct{ name, v string }{
		{"eventId", e.EventID}, {"transactionId", e.TransactionID}, {"clientTransactionId", e.ClientTransactionID},
	} {
		if len(f.v) > MaxIDLen {
			return fmt.Errorf("decode event: %s of %d bytes: %w (%d)", f.name, len(f.v), ErrOversized, MaxIDLen)
		}
	}
	return nil
}

// refused counts a body refused with ErrOversized.
func (s *Statuses) refused() {
	if s != nil {
		s.oversized.Add(1)
	}
}

// OversizedCount is the number of bodies refused with ErrOversized so far.
func (s *Statuses) OversizedCount() int64 {
	if s == nil {
		return 0
	}
	return s.oversized.Load()
}
