package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/store"
)

// Closing a refund the refund desk gave up to a person (agent/refund_desk.go,
// manualRefund). Such a refund stays unfinished, its amount reserved on the
// original payment, until PPaaS confirms it; a person who settled it some
// other way (PPaaS's back office says it failed, or the money went back
// outside PPaaS) closes it here, on a stopped agent (`agent refund close`),
// so that its TransactionStatus is final and SaleReconciliation is no longer
// Busy with it.

// ManualRefund is a refund given up to a person, as `agent refund list`
// shows it.
type ManualRefund struct {
	POITransactionID   string      `json:"poiTransactionId"`
	SaleID             string      `json:"saleId"`
	ServiceID          string      `json:"serviceId"`
	Kind               string      `json:"kind"` // refund, partial reversal or reversal
	Original           string      `json:"originalPoiTransactionId"`
	PPaaSTransactionID string      `json:"ppaasTransactionId,omitempty"`
	Amount             nexo.Amount `json:"amount"`
	Started            time.Time   `json:"started"`
	Why                string      `json:"why"` // the text TransactionStatus gives
}

// ManualRefunds lists the refunds given up to a person, oldest first.
func ManualRefunds(ctx context.Context, st *store.Store) ([]ManualRefund, error) {
	txns, err := st.UnfinishedTxns(ctx)
	if err != nil {
		return nil, fmt.Errorf("list unfinished transactions: %w", err)
	}
	var out []ManualRefund
	for _, t := range txns {
		if !manualMarked(t) {
			continue
		}
		m, err := manualRefundOf(ctx, st, t)
		if err != nil {
			return nil, err
		}
		out = append(out, m.ManualRefund)
	}
	return out, nil
}

// manualRefund is a ManualRefund with what closing it needs.
type manualRefund struct {
	ManualRefund
	order    refundOrder
	txn      store.Txn
	reserved bool // its amount is still reserved on the original
	mark     refundMark
	poiid    string
}

func manualRefundOf(ctx context.Context, st *store.Store, t store.Txn) (manualRefund, error) {
	o, ok := refundOrderOf(t)
	if !ok {
		return manualRefund{}, fmt.Errorf("POI transaction %s is marked for a person but is not a refund", t.ID)
	}
	m := manualRefund{order: o, txn: t, ManualRefund: ManualRefund{
		POITransactionID: t.ID, SaleID: t.SaleID, ServiceID: t.ServiceID, Kind: refundWord(o),
		Original: o.original, Amount: o.amount, Started: t.Started,
	}}
	if resp := entryOf(t, withResponse).Response; resp != nil {
		m.Why, m.poiid = resp.Status.AdditionalResponse, resp.Header.POIID
	}
	orig, err := st.Txn(ctx, o.original)
	if err != nil {
		return manualRefund{}, fmt.Errorf("read the original payment %s of refund %s: %w", o.original, t.ID, err)
	}
	m.mark, m.reserved = reservedIn(orig, o.id)
	if m.reserved {
		m.Amount = nexo.Amount{Minor: m.mark.Amount, Currency: m.mark.Currency}
	}
	if r, err := readRefundable(ctx, st, o.original, o.saleID); err == nil {
		m.PPaaSTransactionID = r.ppaasID
	}
	return m, nil
}

// ErrNotManual: the transaction named is not a refund given up to a person
// (unknown, finished, or the refund desk's own work).
var ErrNotManual = errors.New("not a refund given up to a person")

// CloseManualRefund closes refund id, given up to a person, with what the
// person found: refunded (the money went back to the consumer) or not. note
// goes into the POS's answer. Refunded, the amount stays taken from the
// original payment and the refund's answer is a Success with its receipts;
// not refunded, the amount is released (refundable again) first, then the
// answer is a Refusal; the decision is journaled on the refund before the
// release, so that a crash before the answer leaves the refund unfinished
// and released with it, and the refund desk journals that same answer at
// the next start (operatorClosed). It returns the refund's final answer.
func CloseManualRefund(ctx context.Context, st *store.Store, id string, refunded bool, note string, now time.Time) (*nexo.Response, error) {
	m, err := closable(ctx, st, id)
	if err != nil {
		return nil, err
	}
	resp, err := m.decide(ctx, st, refunded, note, now)
	if err != nil {
		return nil, err
	}
	if err := (journal{st: st}).finish(ctx, m.txn, resp, now, nil); err != nil {
		return nil, fmt.Errorf("journal the closed refund %s: %w", id, err)
	}
	return resp, nil
}

// closable reads refund id and checks that a person may close it.
func closable(ctx context.Context, st *store.Store, id string) (manualRefund, error) {
	t, err := st.Txn(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return manualRefund{}, fmt.Errorf("POI transaction %s: %w (no such transaction)", id, ErrNotManual)
	}
	if err != nil {
		return manualRefund{}, fmt.Errorf("read POI transaction %s: %w", id, err)
	}
	if t.Final || !manualMarked(t) {
		return manualRefund{}, fmt.Errorf("POI transaction %s: %w (see `agent refund list`)", id, ErrNotManual)
	}
	m, err := manualRefundOf(ctx, st, t)
	if err != nil {
		return manualRefund{}, err
	}
	if !m.reserved {
		return manualRefund{}, fmt.Errorf("refund %s holds no reservation on %s any more: start the agent, its refund desk settles it (as closed, if it was closed here)", id, m.Original)
	}
	return m, nil
}

// maxNote bounds a person's note, in bytes.
const maxNote = 256

// decide is the refund's final answer for what the person found; not
// refunded, it journals the decision on the refund, then releases the
// amount on the original payment.
func (m manualRefund) decide(ctx context.Context, st *store.Store, refunded bool, note string, now time.Time) (*nexo.Response, error) {
	id := m.POITransactionID
	note = strings.TrimSpace(note)
	if note == "" {
		note = "no note"
	}
	if len(note) > maxNote {
		n := maxNote
		for n > 0 && !utf8.RuneStart(note[n]) {
			n-- // not inside a character
		}
		note = note[:n]
	}
	if refunded {
		r, err := readRefundable(ctx, st, m.Original, m.SaleID)
		if err != nil {
			return nil, fmt.Errorf("read the original payment %s: %w", m.Original, err)
		}
		ref := ppaas.Refund{ClientRefundID: id, TransactionID: r.ppaasID, Status: ppaas.RefundDone,
			Amount: ppaas.Amount{Amount: m.Amount.Minor, Currency: m.Amount.Currency}}
		resp := refundResponse(m.poiid, m.order, &refundOutcome{amount: m.Amount, original: r, ref: ref}, nil)
		resp.Status.AdditionalResponse = "closed by an operator as refunded: " + note
		return resp, nil
	}
	resp := refundResponse(m.poiid, m.order, nil, nexo.Errorf(nexo.Refusal,
		"%s closed by an operator as not refunded: %s; nothing was refunded", m.Kind, note))
	// The decision first, on the refund: if the agent stops before the
	// final answer, its refund desk journals this answer at the next start
	// (operatorClosed), not "refused by PPaaS".
	rec, err := responseRecord(resp)
	if err != nil {
		return nil, fmt.Errorf("close refund %s: %w", id, err)
	}
	if err := st.AppendTxn(ctx, id, store.Transition{At: now, State: stateRefundClosed, Data: rec}); err != nil {
		return nil, fmt.Errorf("journal the close of refund %s: %w", id, err)
	}
	rel, err := json.Marshal(m.mark) // as release journals it (agent/refund.go)
	if err != nil {
		return nil, fmt.Errorf("release the amount of refund %s: %w", id, err)
	}
	if err := st.AppendTxn(ctx, m.Original, store.Transition{At: now, State: stateRefundReleased, Data: rel}); err != nil {
		return nil, fmt.Errorf("release the amount of refund %s on %s: %w", id, m.Original, err)
	}
	return resp, nil
}
