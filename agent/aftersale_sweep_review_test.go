package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// paidWithPPaaSID journals a finished payment of minor units whose QR
// transitions name PPaaS transaction txid, as the QR engine journals them.
func paidWithPPaaSID(t *testing.T, r *afterSaleRig, serviceID, txid string, minor int64) string {
	t.Helper()
	ctx := t.Context()
	id := beginPayment(t, r.j, serviceID, minor)
	for _, to := range []ppaas.State{ppaas.Created, ppaas.Approved} {
		require.NoError(t, r.j.Record(ctx, qr.Transition{ClientTransactionID: id, TransactionID: txid, To: to, At: time.Now(), Source: "event"}))
	}
	require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: serviceID}, successResponse(t, serviceID, id, minor), time.Now()))
	return id
}

// listedRefund is a transaction of the listing PPaaS says is refunded.
func listedRefund(id, txid string, minor int64) ppaas.Transaction {
	return ppaas.Transaction{TransactionID: txid, ClientTransactionID: id, Status: ppaas.Refunded, RawStatus: "refunded",
		Sequence: 4, PaymentAmount: ppaas.Amount{Amount: minor, Currency: "EUR"}, RefundedAmount: minor}
}

func newTestSweeper(r *afterSaleRig, list transactionLister, timing SweepTiming) *sweeper {
	return newSweeper(list, noneInFlight{}, r.j.after, nil, time.Minute, time.Hour, timing, time.Now, slog.New(slog.DiscardHandler), nil)
}

// Review: the listing carries no provider status, so a chargeback PPaaS
// shows there only as refunded was told as a refund, then told again as a
// chargeback when its event came: 40.00 gone on a 20.00 sale. The listing's
// refund now says it may be a chargeback, and the event is not told again.
func TestSweepFirstThenChargebackEventIsToldOnce(t *testing.T) {
	r := newAfterSaleRig(t, false)
	ctx := t.Context()
	id := paidWithPPaaSID(t, r, "A", "qr-A", 2000)
	s := newTestSweeper(r, &fakeListing{txs: []ppaas.Transaction{listedRefund(id, "qr-A", 2000)}}, SweepTiming{})
	require.NoError(t, s.sweep(ctx))
	_, journaled, err := r.j.after.news(ctx, ppaas.Event{EventID: "m1", Type: ppaas.EventTypeStatus, ClientTransactionID: id, TransactionID: "qr-A",
		Status: ppaas.Refunded, RawStatus: "refunded", Sequence: 5, Provider: map[string]string{"status": "CHARGED_BACK"}}, false, false)
	require.NoError(t, err)
	require.False(t, journaled, "the chargeback is the money the listing's update told")
	recs := afterSaleRecords(t, r.j.st, id)
	require.Len(t, recs, 1)
	require.Equal(t, afterRefunded, recs[0].Kind)
	require.True(t, recs[0].Listed)
	require.Contains(t, recs[0].Text, "refunded or charged back after the sale (PPaaS's listing does not say which): 20.00 EUR back to the consumer")
	require.Len(t, outboxOf(t, r.j.st, store.KindNexoEvent), 1, "the POS hears of it once")

	// A refund an event told, then a chargeback: both news, as before.
	id2 := paidWithPPaaSID(t, r, "B", "qr-B", 2000)
	for i, p := range []map[string]string{nil, {"status": "CHARGED_BACK"}} {
		_, journaled, err := r.j.after.news(ctx, ppaas.Event{EventID: "b" + string(rune('0'+i)), Type: ppaas.EventTypeStatus, ClientTransactionID: id2,
			TransactionID: "qr-B", Status: ppaas.Refunded, RawStatus: "refunded", Sequence: int64(4 + i), Provider: p}, false, false)
		require.NoError(t, err)
		require.True(t, journaled)
	}
	require.Len(t, afterSaleRecords(t, r.j.st, id2), 2)
}

// Review: a listed refund with our clientTransactionId but another PPaaS
// transaction was journaled as our payment's refund. Neither the listing nor
// an event naming another PPaaS transaction is acted on now.
func TestRefundNamingAnotherPPaaSTransactionIsNotTold(t *testing.T) {
	r := newAfterSaleRig(t, false)
	ctx := t.Context()
	id := paidWithPPaaSID(t, r, "C", "qr-C", 2000)
	s := newTestSweeper(r, &fakeListing{txs: []ppaas.Transaction{listedRefund(id, "someone-elses-tx", 2000)}}, SweepTiming{})
	require.NoError(t, s.sweep(ctx))
	_, journaled, err := r.j.after.news(ctx, ppaas.Event{EventID: "x1", Type: ppaas.EventTypeStatus, ClientTransactionID: id,
		TransactionID: "someone-elses-tx", Status: ppaas.Refunded, RawStatus: "refunded", Sequence: 5}, false, false)
	require.NoError(t, err)
	require.False(t, journaled)
	require.Empty(t, afterSaleRecords(t, r.j.st, id))
	require.Empty(t, outboxOf(t, r.j.st, store.KindNexoEvent))

	s = newTestSweeper(r, &fakeListing{txs: []ppaas.Transaction{listedRefund(id, "qr-C", 2000)}}, SweepTiming{})
	require.NoError(t, s.sweep(ctx))
	require.Len(t, afterSaleRecords(t, r.j.st, id), 1, "its own PPaaS transaction's refund is told")
}

// expiringCursor refuses any after but the first page's; next optionally
// repeats the after asked for.
type expiringCursor struct {
	afters []string
	repeat bool
}

func (l *expiringCursor) List(_ context.Context, _, _ time.Time, after string, _ int) (qr.TransactionPage, error) {
	l.afters = append(l.afters, after)
	if l.repeat && after != "" {
		return qr.TransactionPage{Transactions: []ppaas.Transaction{{TransactionID: "tx-0", Status: ppaas.Approved}}, Next: after}, nil
	}
	if after != "" {
		return qr.TransactionPage{}, &qr.APIError{Op: "list transactions", StatusCode: 400, Code: "invalid_request", Message: "after is not a transaction of the window"}
	}
	return qr.TransactionPage{Transactions: []ppaas.Transaction{{TransactionID: "tx-0", Status: ppaas.Approved}}, Next: "tx-0"}, nil
}

// Review: a cursor the platform stopped taking was kept, so every later
// sweep failed on it until a restart; a next page naming the page just read
// was read MaxPages times a sweep, for ever.
func TestSweepStartsANewPassAfterAListingError(t *testing.T) {
	r := newAfterSaleRig(t, false)
	l := &expiringCursor{}
	s := newTestSweeper(r, l, SweepTiming{MaxPages: 1})
	require.NoError(t, s.sweep(t.Context()))
	require.Error(t, s.sweep(t.Context()), "the platform refuses the cursor")
	require.NoError(t, s.sweep(t.Context()), "a new walk")
	require.Equal(t, []string{"", "tx-0", ""}, l.afters)

	l = &expiringCursor{repeat: true}
	s = newTestSweeper(r, l, SweepTiming{})
	require.NoError(t, s.sweep(t.Context()))
	require.NoError(t, s.sweep(t.Context()))
	require.Equal(t, []string{"", "tx-0", "", "tx-0"}, l.afters, "a repeated next ends the pass")
}

// Review: a full POS refund pending when the listing said refunded was
// "nothing new", remembered, and the provider's refund stayed untold for the
// rest of the run once the POS's refund was released. Each pass over the
// window checks it again.
func TestSweepRechecksEachPass(t *testing.T) {
	r := newAfterSaleRig(t, false)
	ctx := t.Context()
	id := paidWithPPaaSID(t, r, "D", "qr-D", 2000)
	mark, err := json.Marshal(refundMark{RefundID: "r1", Amount: 2000, Currency: "EUR"})
	require.NoError(t, err)
	require.NoError(t, r.j.st.AppendTxn(ctx, id, store.Transition{At: time.Now(), State: stateRefundReserved, Data: mark}))
	s := newTestSweeper(r, &fakeListing{txs: []ppaas.Transaction{listedRefund(id, "qr-D", 2000)}}, SweepTiming{})
	require.NoError(t, s.sweep(ctx))
	require.Empty(t, afterSaleRecords(t, r.j.st, id), "the POS's pending refund explains it")
	require.NoError(t, r.j.st.AppendTxn(ctx, id, store.Transition{At: time.Now(), State: stateRefundReleased, Data: mark}))
	require.NoError(t, s.sweep(ctx))
	require.Len(t, afterSaleRecords(t, r.j.st, id), 1, "released: the provider's refund is told at the next pass")
	require.NoError(t, s.sweep(ctx))
	require.Len(t, afterSaleRecords(t, r.j.st, id), 1, "and once")
}

// Review: a refunded transaction listed without a clientTransactionId was
// looked up by its PPaaS id, which commits the journal's pending index:
// one write commit per entry, every sweep. It is left alone now, counted
// once a pass, and the platform's long ids are kept as digests.
func TestSweepLeavesCtidLessTransactions(t *testing.T) {
	r := newAfterSaleRig(t, false)
	l := &fakeListing{}
	long := strings.Repeat("x", 2500)
	for i := range 300 {
		l.txs = append(l.txs, ppaas.Transaction{TransactionID: long + string(rune('a'+i%26)) + strings.Repeat("y", i), Status: ppaas.Refunded, RawStatus: "refunded", Sequence: 3})
	}
	s := newTestSweeper(r, l, SweepTiming{})
	d0 := r.j.st.DiskStats()
	require.NoError(t, s.sweep(t.Context()))
	require.Equal(t, d0.Commits, r.j.st.DiskStats().Commits, "no journal write for transactions not ours")
	require.EqualValues(t, 300, s.Stats().Unknown)
	require.NoError(t, s.sweep(t.Context()))
	require.EqualValues(t, 600, s.Stats().Unknown, "counted once a pass")
	require.Len(t, s.recent.unknown, 300)
}

// Review: a status reason had no bound; it was journaled twice.
func TestStatusReasonIsBounded(t *testing.T) {
	r := newAfterSaleRig(t, false)
	id := paidWithPPaaSID(t, r, "E", "qr-E", 2000)
	_, journaled, err := r.j.after.news(t.Context(), ppaas.Event{EventID: "e1", Type: ppaas.EventTypeStatus, ClientTransactionID: id, TransactionID: "qr-E",
		Status: ppaas.Refunded, RawStatus: "refunded", Sequence: 5, StatusReason: strings.Repeat("é", 100_000)}, false, false)
	require.NoError(t, err)
	require.True(t, journaled)
	recs := afterSaleRecords(t, r.j.st, id)
	require.Len(t, recs, 1)
	require.Less(t, len(recs[0].Text), 400)
	require.True(t, strings.HasSuffix(recs[0].Text, "é…)"), "cut at a character: %q", recs[0].Text[len(recs[0].Text)-10:])
}

// agedListing pages, oldest first, the transactions created within the
// asked window, as the simulator does.
type agedListing struct {
	txs    []ppaas.Transaction // oldest first
	afters []string
}

func (l *agedListing) List(_ context.Context, from, to time.Time, after string, limit int) (qr.TransactionPage, error) {
	l.afters = append(l.afters, after)
	var in []ppaas.Transaction
	for _, t := range l.txs {
		if !t.CreatedAt.Before(from) && !t.CreatedAt.After(to) {
			in = append(in, t)
		}
	}
	start := 0
	for i, t := range in {
		if after != "" && t.TransactionID == after {
			start = i + 1
		}
	}
	end := min(start+limit, len(in))
	pg := qr.TransactionPage{Transactions: in[start:end]}
	if end < len(in) {
		pg.Next = in[end-1].TransactionID
	}
	return pg, nil
}

// Review: with a window of 120 days read oldest first, a refund of
// yesterday's payment waited for the whole window to be read (18 sweeps for
// 36,000 transactions), and for ever on a terminal restarted more often
// than that. The last 7 days have a walk of their own, half of each sweep's
// pages: found at the first sweep; a chargeback of a payment 60 days old is
// found when the older walk reaches it.
func TestSweepFindsARecentRefundFirst(t *testing.T) {
	r := newAfterSaleRig(t, false)
	ctx := t.Context()
	now := time.Now()
	l := &agedListing{}
	old := paidWithPPaaSID(t, r, "OLD", "qr-old", 2000)
	recent := paidWithPPaaSID(t, r, "NEW", "qr-new", 2000)
	for i := range 3000 {
		tx := ppaas.Transaction{TransactionID: fmt.Sprintf("tx-%04d", i), ClientTransactionID: fmt.Sprintf("c-%d", i), Status: ppaas.Approved,
			CreatedAt: now.Add(-90*24*time.Hour + time.Duration(i)*time.Minute)}
		if i == 2500 {
			tx = listedRefund(old, "qr-old", 2000)
			tx.StatusReason, tx.CreatedAt = "charged back by the card holder", now.Add(-90*24*time.Hour+2500*time.Minute)
		}
		l.txs = append(l.txs, tx)
	}
	fresh := listedRefund(recent, "qr-new", 2000)
	fresh.CreatedAt = now.Add(-24 * time.Hour)
	l.txs = append(l.txs, fresh)

	s := newSweeper(l, noneInFlight{}, r.j.after, nil, time.Minute, 120*24*time.Hour, SweepTiming{}, time.Now, slog.New(slog.DiscardHandler), nil)
	require.NoError(t, s.sweep(ctx))
	require.Len(t, afterSaleRecords(t, r.j.st, recent), 1, "yesterday's refund, at the first sweep")
	require.Empty(t, afterSaleRecords(t, r.j.st, old), "not reached yet")
	require.Len(t, l.afters, 10, "one sweep reads at most 10 pages")
	require.NoError(t, s.sweep(ctx))
	recs := afterSaleRecords(t, r.j.st, old)
	require.Len(t, recs, 1, "the older walk reaches it at the second sweep")
	require.Equal(t, afterChargedBack, recs[0].Kind)
	require.Len(t, afterSaleRecords(t, r.j.st, recent), 1, "told once")
}

// badPage fails every listing of one part's second page with an error that
// is no refusal of the cursor (a transaction the client cannot decode).
type badPage struct {
	agedListing
	badAfter string
}

func (l *badPage) List(ctx context.Context, from, to time.Time, after string, limit int) (qr.TransactionPage, error) {
	if after == l.badAfter {
		l.afters = append(l.afters, after)
		return qr.TransactionPage{}, errors.New("list transactions: transaction 3: no transactionId")
	}
	return l.agedListing.List(ctx, from, to, after, limit)
}

// Re-review: a page that never lists (not a 4xx) stopped its walk for good,
// and a failing recent walk kept the older one from its pages. Two failures
// at one cursor start the walk over; the other walk reads on.
func TestSweepWalksSurviveABadPage(t *testing.T) {
	r := newAfterSaleRig(t, false)
	ctx := t.Context()
	now := time.Now()
	old := paidWithPPaaSID(t, r, "OLDB", "qr-oldb", 2000)
	l := &badPage{badAfter: "r-1"}
	for i := range 4 { // the recent part: pages of 2, the second one bad
		l.txs = append(l.txs, ppaas.Transaction{TransactionID: fmt.Sprintf("r-%d", i), Status: ppaas.Approved, CreatedAt: now.Add(-time.Duration(4-i) * time.Hour)})
	}
	tx := listedRefund(old, "qr-oldb", 2000)
	tx.CreatedAt = now.Add(-30 * 24 * time.Hour)
	l.txs = append([]ppaas.Transaction{tx}, l.txs...)
	s := newSweeper(l, noneInFlight{}, r.j.after, nil, time.Minute, 120*24*time.Hour, SweepTiming{PageSize: 2, MaxPages: 4}, time.Now, slog.New(slog.DiscardHandler), nil)

	require.Error(t, s.sweep(ctx), "the recent walk's second page fails")
	require.Len(t, afterSaleRecords(t, r.j.st, old), 1, "the older walk read its pages all the same")
	require.Equal(t, "r-1", s.recent.cursor, "asked again at the next sweep")
	require.Error(t, s.sweep(ctx))
	require.Empty(t, s.recent.cursor, "failing twice there: the walk starts over")
	require.Error(t, s.sweep(ctx), "the bad page is still bad")
	require.Equal(t, "r-1", s.recent.cursor, "but the walk goes on reaching it, and past it once it lists")
	l.badAfter = "no such page" // the platform mends it
	require.NoError(t, s.sweep(ctx))
	require.Empty(t, s.recent.cursor, "read to its end")
}

// cycling names, as the next page, a page the walk read two pages before.
type cycling struct{ afters []string }

func (l *cycling) List(_ context.Context, _, _ time.Time, after string, _ int) (qr.TransactionPage, error) {
	l.afters = append(l.afters, after)
	next := map[string]string{"": "A", "A": "B", "B": "A"}[after]
	return qr.TransactionPage{Transactions: []ppaas.Transaction{{TransactionID: after + "x", Status: ppaas.Approved}}, Next: next}, nil
}

// Re-review: a listing cycling A → B → A was read until maxPassPages.
func TestSweepEndsACyclingWalk(t *testing.T) {
	r := newAfterSaleRig(t, false)
	l := &cycling{}
	s := newTestSweeper(r, l, SweepTiming{})
	require.NoError(t, s.sweep(t.Context()))
	require.Equal(t, []string{"", "A", "B"}, l.afters, "B names A, read already: the walk ends")
	require.Empty(t, s.recent.cursor)
}

// windows records how far back each listing asked from.
type windows struct{ backs []time.Duration }

func (l *windows) List(_ context.Context, from, _ time.Time, _ string, _ int) (qr.TransactionPage, error) {
	l.backs = append(l.backs, time.Since(from).Round(time.Hour))
	return qr.TransactionPage{}, nil
}

// Re-review: with one page a sweep, the older part was never listed. The
// two parts take turns.
func TestSweepOnePageASweepTakesTurns(t *testing.T) {
	r := newAfterSaleRig(t, false)
	l := &windows{}
	s := newSweeper(l, noneInFlight{}, r.j.after, nil, time.Minute, 120*24*time.Hour, SweepTiming{MaxPages: 1}, time.Now, slog.New(slog.DiscardHandler), nil)
	for range 4 {
		require.NoError(t, s.sweep(t.Context()))
	}
	require.Equal(t, []time.Duration{7 * 24 * time.Hour, 120 * 24 * time.Hour, 7 * 24 * time.Hour, 120 * 24 * time.Hour}, l.backs)
}

// unreachable fails every listing after the first page as a network error.
type unreachable struct{ afters []string }

func (l *unreachable) List(_ context.Context, _, _ time.Time, after string, _ int) (qr.TransactionPage, error) {
	l.afters = append(l.afters, after)
	if after != "" {
		return qr.TransactionPage{}, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	}
	return qr.TransactionPage{Transactions: []ppaas.Transaction{{TransactionID: "tx-0", Status: ppaas.Approved}}, Next: "tx-0"}, nil
}

// Final review: two sweeps that could not reach the platform threw a long
// walk's progress away. Only the platform's own answers count toward
// starting over; a sweep that read a page counts as run.
func TestSweepKeepsItsPlaceWhileThePlatformIsUnreachable(t *testing.T) {
	r := newAfterSaleRig(t, false)
	l := &unreachable{}
	s := newTestSweeper(r, l, SweepTiming{MaxPages: 2})
	require.Error(t, s.sweep(t.Context()), "the second page cannot be reached")
	for range 3 {
		require.Error(t, s.sweep(t.Context()))
		require.Equal(t, "tx-0", s.recent.cursor, "kept while the link is down")
	}
	require.EqualValues(t, 1, s.Stats().Sweeps, "the first sweep read a page")
}
