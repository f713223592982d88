package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/termagent/termagent/failpoint"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// EventsPath is the PPaaS device events endpoint the forwarder delivers
// transaction results, receipts and device status to.
const EventsPath = "/device-events/v1/events"

// keySpace makes idempotency keys stable per logical event: the same event
// appended twice (say, once before and once after a crash) gets the same key, so
// the receiver keeps one.
var keySpace = uuid.MustParse("6b3c2f1e-7a53-4c8e-9d0b-2f4f1f6f9a10")

func stableKey(parts ...string) uuid.UUID {
	var b bytes.Buffer
	for _, p := range parts {
		b.WriteString(p)
		b.WriteByte(0)
	}
	return uuid.NewSHA1(keySpace, b.Bytes())
}

// advisor queues the QR engine's reversal advices (qr.Advisor). The advice of
// a POS payment whose final response is not journaled yet is held until that
// response is: journal.finish commits both in one bbolt transaction, so a crash
// never leaves an advice without the Failure it explains, nor a Failure that
// says "a reversal is queued" without the advice. Any other advice (no journal
// entry, or one already final) is appended at once.
type advisor struct {
	st   *store.Store
	held *heldAdvices
}

// Advise implements qr.Advisor.
func (a advisor) Advise(ctx context.Context, adv qr.Advice) error {
	if a.held != nil {
		t, err := a.st.Txn(ctx, adv.ClientTransactionID)
		if err == nil && !t.Final && t.SaleID != "" {
			a.held.put(adv)
			return nil
		}
	}
	ev, err := adviceEvent(adv)
	if err != nil {
		return err
	}
	if _, err := a.st.Append(ctx, ev); err != nil {
		return fmt.Errorf("queue advice for %s: %w", adv.ClientTransactionID, err)
	}
	return nil
}

// adviceKey is the outbox idempotency key of a transaction's reversal advice.
func adviceKey(ctid string) uuid.UUID {
	return stableKey("advice", string(qr.AdviceReverse), ctid)
}

func adviceEvent(adv qr.Advice) (store.Event, error) {
	b, err := json.Marshal(adv)
	if err != nil {
		return store.Event{}, fmt.Errorf("queue advice: %w", err)
	}
	return store.Event{Kind: store.KindAdvice, Payload: b, Key: stableKey("advice", string(adv.Kind), adv.ClientTransactionID)}, nil
}

// heldAdvices are advices waiting for their payment's final response.
type heldAdvices struct {
	mu sync.Mutex
	m  map[string]qr.Advice
}

func newHeldAdvices() *heldAdvices { return &heldAdvices{m: map[string]qr.Advice{}} }

func (h *heldAdvices) put(a qr.Advice) {
	h.mu.Lock()
	h.m[a.ClientTransactionID] = a
	h.mu.Unlock()
}

func (h *heldAdvices) take(id string) (qr.Advice, bool) {
	if h == nil {
		return qr.Advice{}, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	a, ok := h.m[id]
	delete(h.m, id)
	return a, ok
}

// posEvents queues EventNotifications the POS could not take (nexo.Outbox).
type posEvents struct{ st *store.Store }

// EnqueueEvent implements nexo.Outbox.
func (p posEvents) EnqueueEvent(ctx context.Context, ev nexo.PendingEvent) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("queue POS event: %w", err)
	}
	if _, err := p.st.Append(ctx, store.Event{Kind: store.KindNexoEvent, Payload: b}); err != nil {
		return fmt.Errorf("queue POS event: %w", err)
	}
	return nil
}

// sender delivers outbox records (the forwarder's Sender): advices are carried out
// against PPaaS, POS events are posted to the POS, and the rest goes to the PPaaS
// device events endpoint with the record's idempotency key.
type sender struct {
	api     *http.Client
	apiURL  string
	pos     *http.Client
	engine  *qr.Engine
	journal journal
	now     func() time.Time
	logger  *slog.Logger
}

// Send implements Sender.
func (s sender) Send(ctx context.Context, r store.Record) error {
	switch r.Kind {
	case store.KindAdvice:
		var adv qr.Advice
		if err := json.Unmarshal(r.Payload, &adv); err != nil {
			return Permanent(fmt.Errorf("decode advice: %w", err))
		}
		out, err := s.engine.ResolveAdvice(ctx, adv)
		if errors.Is(err, qr.ErrWrongTransaction) {
			return Permanent(err) // nothing to retry: a person looks (dead letter, TransactionStatus)
		}
		if err != nil {
			// Only a definitive PPaaS answer settles a reversal: anything else
			// (a 404 included) keeps the advice, retried until PPaaS says.
			return classify(err)
		}
		failpoint.Hit("advice.resolved")
		// The advice can be carried out before the payment's final response is
		// journaled only for an advice appended on its own (no journal entry
		// then); settle then has nothing to rewrite.
		return s.journal.settle(ctx, adv.ClientTransactionID, afterSettled, settledText(adv.Reason, out.State))
	case store.KindNexoEvent:
		var ev nexo.PendingEvent
		if err := json.Unmarshal(r.Payload, &ev); err != nil {
			return Permanent(fmt.Errorf("decode POS event: %w", err))
		}
		return nexo.DeliverEvent(ctx, s.pos, ev)
	default:
		return s.post(ctx, r)
	}
}

func (s sender) post(ctx context.Context, r store.Record) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.apiURL+EventsPath, bytes.NewReader(r.Payload))
	if err != nil {
		return Permanent(fmt.Errorf("deliver event: %w", err))
	}
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(r.Payload)), nil }
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", r.Key.String())
	req.Header.Set("X-Event-Kind", r.Kind.String())
	resp, err := s.api.Do(req)
	if err != nil {
		return fmt.Errorf("deliver event %d: %w", r.Seq, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusUnauthorized || resp.StatusCode/100 == 5:
		return fmt.Errorf("deliver event %d: PPaaS answered HTTP %d", r.Seq, resp.StatusCode)
	default:
		// A 400/403/404 may be a receiver deployed without the endpoint yet,
		// or a permission not granted yet: retried a bounded number of
		// times, never dead-lettered at once.
		return Rejected(fmt.Errorf("deliver event %d: PPaaS refused it with HTTP %d", r.Seq, resp.StatusCode))
	}
}

// classify sorts a reversal's failure: a PPaaS refusal (4xx other than 401,
// 408 and 429, which the client retries) is retried a bounded number of times
// then dead-lettered; anything else (unreachable, not settled yet, and the
// answers that are not refusals, see inconclusive) is retried with backoff for
// as long as it takes — an advice never expires by time alone.
func classify(err error) error {
	var ae *qr.APIError
	if errors.As(err, &ae) && ae.StatusCode/100 == 4 {
		if inconclusive(ae.StatusCode) {
			// PPaaS answered: the platform is up, this advice is not settled
			// yet. Never counted as an outage, which would pause the whole
			// outbox behind it.
			return fmt.Errorf("%w (%w)", err, qr.ErrNotSettled)
		}
		return Rejected(err)
	}
	return err
}

// inconclusive are the 4xx answers to a reversal that do not say PPaaS will
// not reverse: a 404 about a transaction PPaaS gave the agent an id for is an
// inconsistency of PPaaS's (qr.Engine.Reverse), and a 409 is the same refund
// key still being processed (as the refund desk reads it). Dead-lettering
// either would send a person to refund by hand what PPaaS may yet refund:
// the consumer refunded twice. They are retried until PPaaS answers.
func inconclusive(code int) bool {
	return code == http.StatusNotFound || code == http.StatusConflict
}

// DeadLettered implements DeadLetterer: a reversal given up is written into the
// payment's journal entry, so TransactionStatus tells the POS that the money
// may still be charged and a person has to act, with the PPaaS id.
func (s sender) DeadLettered(ctx context.Context, r store.Record, reason string) {
	if r.Kind != store.KindAdvice {
		return
	}
	var adv qr.Advice
	if err := json.Unmarshal(r.Payload, &adv); err != nil {
		return
	}
	if err := s.journal.settle(ctx, adv.ClientTransactionID, afterReversalFailed, deadText(adv, reason)); err != nil {
		s.log().Error("journal the failed reversal", "client_transaction_id", adv.ClientTransactionID, "err", err)
	}
}

func (s sender) log() *slog.Logger {
	if s.logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.logger
}

// maxRetold bounds the dead letters retellDeadLetters reads at start.
const maxRetold = 1024

// retellDeadLetters makes sure every reversal in the dead letters is told in
// its payment's journal entry (DeadLettered). Moving an advice to the dead
// letters and writing "manual action needed" into the entry are two writes:
// a crash between them would leave TransactionStatus saying a reversal is
// queued while nothing will send it. Run at start; an entry already telling
// it is not written again. It returns how many entries it told.
func (s sender) retellDeadLetters(ctx context.Context) (int, error) {
	recs, err := s.journal.st.ListDead(ctx, maxRetold)
	if err != nil {
		return 0, fmt.Errorf("retell dead letters: %w", err)
	}
	told := 0
	for _, r := range recs {
		if r.Kind != store.KindAdvice {
			continue
		}
		var adv qr.Advice
		if json.Unmarshal(r.Payload, &adv) != nil {
			continue
		}
		text := deadText(adv, r.LastError)
		t, err := s.journal.st.Txn(ctx, adv.ClientTransactionID)
		if err != nil {
			continue // no entry (pruned, or never journaled): nothing to tell
		}
		if e := entryOf(t, withResponse); e.Response != nil && e.Response.Status.AdditionalResponse == text {
			continue
		}
		if err := s.journal.settle(ctx, adv.ClientTransactionID, afterReversalFailed, text); err != nil {
			s.log().Error("journal the failed reversal", "client_transaction_id", adv.ClientTransactionID, "err", err)
			continue
		}
		told++
	}
	return told, nil
}

// Escalate implements Escalator: a reversal PPaaS has not settled since it
// was queued is written into its payment's journal entry, so
// TransactionStatus tells the POS the consumer may still be charged while
// the agent keeps asking. The text depends only on the advice and since, so
// an entry that tells it already is not written again; nor is an entry whose
// reversal was settled (or given up) since then: a re-send after a lost
// acknowledgement must not take "the money is back" away.
func (s sender) Escalate(ctx context.Context, r store.Record, since time.Time) {
	if r.Kind != store.KindAdvice {
		return
	}
	var adv qr.Advice
	if err := json.Unmarshal(r.Payload, &adv); err != nil {
		return
	}
	t, err := s.journal.st.Txn(ctx, adv.ClientTransactionID)
	if err != nil {
		return // no entry (pruned, never journaled): the forwarder's log tells it
	}
	for _, tr := range t.Transitions {
		var o afterSaleRecord
		if tr.State == stateAfterSale && !tr.At.Before(since) && json.Unmarshal(tr.Data, &o) == nil &&
			(o.Kind == afterSettled || o.Kind == afterReversalFailed) {
			return
		}
	}
	if _, err := s.journal.tell(ctx, adv.ClientTransactionID, afterReversalUnconfirmed, stuckText(adv, since)); err != nil {
		s.log().Error("journal the unconfirmed reversal", "client_transaction_id", adv.ClientTransactionID, "err", err)
	}
}

// stuckText is what TransactionStatus says of a reversal PPaaS has not
// settled for ForwarderConfig.EscalateAfter.
func stuckText(adv qr.Advice, since time.Time) string {
	return fmt.Sprintf("%s not settled by PPaaS since %s (no definitive answer yet: unknown transaction, refund in progress or pending); the consumer may still be charged: the agent keeps asking, check it at PPaaS",
		reversalWhat(adv), since.UTC().Format(time.RFC3339))
}

// deadText is what TransactionStatus says of a reversal that gave up.
func deadText(adv qr.Advice, reason string) string {
	// reason names the PPaaS transaction when the reversal learnt its id.
	return fmt.Sprintf("%s failed at PPaaS: %s; the consumer may still be charged, manual action needed", reversalWhat(adv), reason)
}

// reversalWhat names a reversal for the POS: its amount and PPaaS id when
// the advice has them.
func reversalWhat(adv qr.Advice) string {
	what := "reversal"
	if adv.Amount.Amount > 0 {
		what += " of " + formatMinor(adv.Amount)
	}
	if adv.TransactionID != "" {
		what += " (PPaaS transaction " + adv.TransactionID + ")"
	}
	return what
}

// formatMinor writes an amount in minor units with its currency's decimals.
func formatMinor(a ppaas.Amount) string {
	exp, ok := nexo.CurrencyExponent(a.Currency)
	if !ok || exp == 0 {
		return fmt.Sprintf("%d %s", a.Amount, a.Currency)
	}
	p := int64(1)
	for range exp {
		p *= 10
	}
	return fmt.Sprintf("%d.%0*d %s", a.Amount/p, exp, a.Amount%p, a.Currency)
}

// settledText is what TransactionStatus tells once a reversal advice is
// carried out: why the payment failed and what became of it at PPaaS.
func settledText(reason string, st ppaas.State) string {
	why := "reversed after the outcome was unknown"
	if reason == reasonRestart || reason == reasonApprovedLate {
		why = reason
	}
	if st == ppaas.Refunded {
		return fmt.Sprintf("%s: refunded at PPaaS, the consumer has the money back", why)
	}
	return fmt.Sprintf("%s: %s at PPaaS, no money moved", why, st)
}
