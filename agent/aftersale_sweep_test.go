package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// The event a listed transaction stands for: only a refunded one (a
// chargeback spelling decodes as refunded) is an after-sale update; its id
// is the same for the same listing and changes with what makes the update.
func TestSweepEventFromListedTransaction(t *testing.T) {
	statuses := &ppaas.Statuses{}
	decode := func(status, reason string, seq, refunded int64) ppaas.Transaction {
		t.Helper()
		tx, err := statuses.DecodeTransaction([]byte(fmt.Sprintf(`{"transactionId":"tx-1","clientTransactionId":"c-1","status":%q,"statusReason":%q,`+
			`"sequence":%d,"paymentAmount":{"amount":2000,"currency":"EUR"},"refundedAmount":%d}`, status, reason, seq, refunded)))
		require.NoError(t, err)
		return tx
	}

	ev, ok := sweepEvent(decode("refunded", "refunded by the provider after the sale", 4, 2000))
	require.True(t, ok)
	require.Equal(t, ppaas.EventTypeStatus, ev.Type)
	require.Equal(t, "tx-1", ev.TransactionID)
	require.Equal(t, "c-1", ev.ClientTransactionID)
	require.Equal(t, ppaas.Refunded, ev.Status)
	require.Equal(t, int64(4), ev.Sequence)
	require.Equal(t, "refunded by the provider after the sale", ev.StatusReason)
	require.False(t, statuses.ChargedBack(ev))
	require.True(t, strings.HasPrefix(ev.EventID, "sweep-"), ev.EventID)
	again, _ := sweepEvent(decode("refunded", "refunded by the provider after the sale", 4, 2000))
	require.Equal(t, ev.EventID, again.EventID, "listed again unchanged: the same event")

	ids := map[string]bool{ev.EventID: true}
	for _, tx := range []ppaas.Transaction{
		decode("refunded", "refunded by the provider after the sale", 5, 2000), // a later sequence
		decode("refunded", "refunded by the provider after the sale", 4, 1500), // another amount
		decode("REFUNDED", "refunded by the provider after the sale", 4, 2000), // another spelling
		decode("refunded", "charged back by the card holder", 4, 2000),         // another reason
	} {
		e, ok := sweepEvent(tx)
		require.True(t, ok)
		require.False(t, ids[e.EventID], "%+v: a changed listing is a new event", tx)
		ids[e.EventID] = true
	}

	cb, ok := sweepEvent(decode("CHARGED_BACK", "", 5, 2000))
	require.True(t, ok, "a chargeback spelling decodes as refunded")
	require.True(t, statuses.ChargedBack(cb), "and the desk tells it from a refund by its status as sent")
	cb, ok = sweepEvent(decode("refunded", "charged back by the card holder", 5, 2000))
	require.True(t, ok)
	require.True(t, statuses.ChargedBack(cb), "or by its reason")

	for _, status := range []string{"approved", "declined", "cancelled", "expired", "pending", "created", "SOMETHING_NEW"} {
		_, ok := sweepEvent(decode(status, "", 3, 0))
		require.False(t, ok, "%s is not an after-sale status", status)
	}
	_, ok = sweepEvent(ppaas.Transaction{Status: ppaas.Refunded})
	require.False(t, ok, "no id to find the payment by")
}

// aftersale_sweep_interval: 10m with polling only, 60m with a broker, 0 or
// negative off; a bad value, and a window out of bounds, name the field.
func TestConfigSweepDefaultsByModeAndBounds(t *testing.T) {
	c := DefaultConfig()
	c.Serial, c.Model = "2097CD800007", "DX8000"
	fieldErr := func(c Config, field string) bool {
		var fe *FieldError
		for _, err := range unwrapAll(c.Validate()) {
			if errors.As(err, &fe) && fe.Field == field {
				return true
			}
		}
		return false
	}

	d, err := c.SweepInterval()
	require.NoError(t, err)
	require.Equal(t, 10*time.Minute, d, "polling only")
	require.Equal(t, 120*24*time.Hour, c.AfterSaleSweepWindow, "a card scheme's chargeback window")
	c.MQTTURL = "ssl://broker.example:8883"
	d, err = c.SweepInterval()
	require.NoError(t, err)
	require.Equal(t, time.Hour, d, "with a broker")
	require.False(t, fieldErr(c, "aftersale_sweep_interval"))
	require.False(t, fieldErr(c, "aftersale_sweep_window"))

	for _, off := range []string{"0", "0s", "-1m"} {
		c.AfterSaleSweepInterval = off
		d, err := c.SweepInterval()
		require.NoError(t, err, off)
		require.Zero(t, d, "%s: off", off)
		require.False(t, fieldErr(c, "aftersale_sweep_interval"), off)
	}
	c.AfterSaleSweepInterval = "30m"
	d, err = c.SweepInterval()
	require.NoError(t, err)
	require.Equal(t, 30*time.Minute, d)

	for _, bad := range []string{"5s", "25h", "10 minutes", "often"} {
		c.AfterSaleSweepInterval = bad
		require.True(t, fieldErr(c, "aftersale_sweep_interval"), bad)
		require.ErrorContains(t, c.Validate(), "config aftersale_sweep_interval (flag -aftersale-sweep-interval", bad)
	}
	c.AfterSaleSweepInterval = ""
	for _, bad := range []time.Duration{0, -time.Hour, time.Minute, 401 * 24 * time.Hour} {
		c.AfterSaleSweepWindow = bad
		require.True(t, fieldErr(c, "aftersale_sweep_window"), bad.String())
	}
	c.AfterSaleSweepWindow = 400 * 24 * time.Hour
	require.False(t, fieldErr(c, "aftersale_sweep_window"))
	// A payment created between two sweeps must be listed by one of them.
	c.AfterSaleSweepInterval, c.AfterSaleSweepWindow = "24h", 47*time.Hour
	require.True(t, fieldErr(c, "aftersale_sweep_window"), "window under twice the interval")
	require.ErrorContains(t, c.Validate(), "at least twice aftersale_sweep_interval")
	c.AfterSaleSweepWindow = 48 * time.Hour
	require.False(t, fieldErr(c, "aftersale_sweep_window"))
	c.AfterSaleSweepInterval, c.AfterSaleSweepWindow = "0", time.Hour
	require.False(t, fieldErr(c, "aftersale_sweep_window"), "no sweep: any window")
	c.AfterSaleSweepInterval, c.AfterSaleSweepWindow = "", 400*24*time.Hour

	// The file, the environment and the flags set them by their names.
	cfg, _, err := LoadConfig("agent", []string{"-aftersale-sweep-interval", "0", "-aftersale-sweep-window", "48h"},
		func(string) string { return "" }, &strings.Builder{})
	require.NoError(t, err)
	require.Equal(t, "0", cfg.AfterSaleSweepInterval)
	require.Equal(t, 48*time.Hour, cfg.AfterSaleSweepWindow)
}

// unwrapAll flattens a joined error.
func unwrapAll(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unwrapAll(e)...)
		}
		return out
	}
	return []error{err}
}

// fakeListing is a device's listing at PPaaS, paged as the simulator pages
// it; fail makes the next call fail.
type fakeListing struct {
	mu     sync.Mutex
	txs    []ppaas.Transaction
	afters []string // the after of each call
	fail   error
	check  func() // called on each call
}

func (f *fakeListing) List(_ context.Context, _, _ time.Time, after string, limit int) (qr.TransactionPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.check != nil {
		f.check()
	}
	f.afters = append(f.afters, after)
	if err := f.fail; err != nil {
		f.fail = nil
		return qr.TransactionPage{}, err
	}
	start := 0
	if after != "" {
		start = len(f.txs)
		for i, t := range f.txs {
			if t.TransactionID == after {
				start = i + 1
			}
		}
	}
	end := min(start+limit, len(f.txs))
	pg := qr.TransactionPage{Transactions: f.txs[start:end]}
	if end < len(f.txs) {
		pg.Next = f.txs[end-1].TransactionID
	}
	return pg, nil
}

type noneInFlight struct{}

func (noneInFlight) Payment(ppaas.Event) (string, bool) { return "", false }

// A sweep reads at most MaxPages pages and the next one resumes where it
// stopped; a failed listing is retried from the same place. A refunded
// payment the journal knows is journaled once however often it is listed;
// refunded transactions it does not know are counted once and not invented
// into it.
func TestSweepPagesResumesAndJournalsOnce(t *testing.T) {
	r := newAfterSaleRig(t, false)
	ctx := t.Context()
	id := beginPayment(t, r.j, "S1", 2000)
	require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: "S1"}, successResponse(t, "S1", id, 2000), time.Now()))

	list := &fakeListing{}
	for i := range 5 {
		tx := ppaas.Transaction{TransactionID: fmt.Sprintf("tx-%d", i), ClientTransactionID: fmt.Sprintf("unknown-%d", i),
			Status: ppaas.Refunded, RawStatus: "refunded", Sequence: 3, PaymentAmount: ppaas.Amount{Amount: 100, Currency: "EUR"}, RefundedAmount: 100}
		if i == 1 {
			tx.Status, tx.RawStatus = ppaas.Approved, "approved"
		}
		if i == 3 {
			tx.ClientTransactionID, tx.StatusReason, tx.PaymentAmount.Amount, tx.RefundedAmount = id, "refunded by the provider after the sale", 2000, 2000
		}
		list.txs = append(list.txs, tx)
	}
	counts := map[string]int{}
	s := newSweeper(list, noneInFlight{}, r.j.after, nil, time.Minute, time.Hour, SweepTiming{PageSize: 2, MaxPages: 2}, time.Now,
		slog.New(slog.DiscardHandler), func(o string) { counts[o]++ })

	require.NoError(t, s.sweep(ctx))
	require.Equal(t, []string{"", "tx-1"}, list.afters, "two pages")
	require.Equal(t, "tx-3", s.recent.cursor, "resumes after the fourth")
	require.Equal(t, map[string]int{afterRefunded: 1}, r.counts, "the journaled payment's refund, on the second page")
	require.Len(t, afterSaleRecords(t, r.j.st, id), 1)

	list.fail = errors.New("platform down")
	require.ErrorContains(t, s.sweep(ctx), "platform down")
	require.Equal(t, "tx-3", s.recent.cursor, "a failed listing is retried from the same place")

	list.afters = nil
	require.NoError(t, s.sweep(ctx))
	require.Equal(t, []string{"tx-3"}, list.afters, "the last page")
	require.Empty(t, s.recent.cursor, "the window read to its end: the next sweep starts over")
	require.NoError(t, s.sweep(ctx))
	require.NoError(t, s.sweep(ctx))

	require.Len(t, afterSaleRecords(t, r.j.st, id), 1, "journaled once")
	require.Len(t, outboxOf(t, r.j.st, store.KindNexoEvent), 1, "notified once")
	st := s.Stats()
	// The unknown ones are counted (and logged) once a pass over the
	// window: the first pass and the one after it read them all.
	require.Equal(t, SweepStats{Sweeps: 4, Updates: 1, Unknown: 6}, st, "failed listings are counted by run, which logs them")
	require.Equal(t, map[string]int{sweepRun: 4, sweepUpdate: 1, sweepUnknown: 6}, counts)
	for k := range counts {
		require.True(t, sweepOutcomes[k], k)
	}
}

// The sweep never lists (nor writes) while the POS is being served: it
// waits for the Nexo server to be idle.
func TestSweepWaitsWhileThePOSIsServed(t *testing.T) {
	r := newAfterSaleRig(t, false)
	fg := &foreground{}
	list := &fakeListing{}
	listedBusy := 0
	list.check = func() {
		if fg.Busy() != nil {
			listedBusy++
		}
	}
	s := newSweeper(list, noneInFlight{}, r.j.after, fg, time.Minute, time.Hour, SweepTiming{}, time.Now, slog.New(slog.DiscardHandler), nil)

	fg.Begin()
	done := make(chan error, 1)
	go func() { done <- s.sweep(t.Context()) }()
	fg.End() // the sweep goes on only now (list.check)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("the sweep did not go on once the POS was idle")
	}
	require.Len(t, list.afters, 1)
	require.Zero(t, listedBusy, "listed while the POS was being served")

	// Stopping while the POS is served ends the wait.
	fg.Begin()
	defer fg.End()
	ctx, cancel := context.WithCancel(t.Context())
	go func() { done <- s.sweep(ctx) }()
	cancel()
	require.NoError(t, <-done)
	require.Len(t, list.afters, 1, "nothing listed")
}

// An update an MQTT event told is not told again when the sweep lists the
// payment in other words: the listing may carry another status reason, and
// no provider status to tell a chargeback by. A chargeback after a provider
// refund is still news.
func TestSweepDoesNotRetellWhatAnEventTold(t *testing.T) {
	r := newAfterSaleRig(t, false)
	ctx := t.Context()
	paid := func(serviceID string) string {
		id := beginPayment(t, r.j, serviceID, 2000)
		require.NoError(t, r.j.Finish(ctx, nexo.Txn{POITransactionID: id, SaleID: "POS1", ServiceID: serviceID}, successResponse(t, serviceID, id, 2000), time.Now()))
		return id
	}
	listed := func(id, reason string, seq int64) ppaas.Event {
		ev, ok := sweepEvent(ppaas.Transaction{TransactionID: "qr-" + id, ClientTransactionID: id, Status: ppaas.Refunded, RawStatus: "refunded",
			StatusReason: reason, Sequence: seq, PaymentAmount: ppaas.Amount{Amount: 2000, Currency: "EUR"}, RefundedAmount: 2000})
		require.True(t, ok)
		return ev
	}
	tell := func(ev ppaas.Event) bool {
		t.Helper()
		handled, journaled, err := r.j.after.news(ctx, ev, false, strings.HasPrefix(ev.EventID, "sweep-")) // the listing's, or an MQTT event
		require.NoError(t, err)
		require.True(t, handled)
		return journaled
	}
	kinds := func(id string) []string {
		var out []string
		for _, rec := range afterSaleRecords(t, r.j.st, id) {
			out = append(out, rec.Kind)
		}
		return out
	}

	cb := paid("CB")
	require.True(t, tell(ppaas.Event{EventID: "m1", Type: ppaas.EventTypeStatus, ClientTransactionID: cb, Status: ppaas.Refunded, RawStatus: "refunded",
		Sequence: 4, Provider: map[string]string{"status": "CHARGED_BACK"}}))
	require.False(t, tell(listed(cb, "", 4)), "the listing has no provider status: it reads as a refund, told as the chargeback")
	require.Equal(t, []string{afterChargedBack}, kinds(cb))

	rf := paid("RF")
	require.True(t, tell(ppaas.Event{EventID: "m2", Type: ppaas.EventTypeStatus, ClientTransactionID: rf, Status: ppaas.Refunded, RawStatus: "refunded",
		StatusReason: "refunded by the provider after the sale", Sequence: 4}))
	require.False(t, tell(listed(rf, "", 4)), "another reason, the same refund")
	require.True(t, tell(listed(rf, "charged back by the card holder", 5)), "a chargeback after the refund is news")
	require.False(t, tell(listed(rf, "refunded again", 6)), "nothing after a chargeback is")
	require.Equal(t, []string{afterRefunded, afterChargedBack}, kinds(rf))
	require.Equal(t, map[string]int{afterChargedBack: 2, afterRefunded: 1}, r.counts)
}

// termagent_aftersale_sweep_total's outcome label is a closed set.
func TestSweepMetricLabelsAreClosed(t *testing.T) {
	m := newMetrics()
	for _, o := range []string{sweepRun, sweepRun, sweepListFailed, sweepUpdate, sweepUnknown, sweepFailed, sweepSkipped, "anything else"} {
		m.sweepOutcome(o)
	}
	mfs, err := m.reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "termagent_aftersale_sweep_total" {
			continue
		}
		for _, mm := range mf.GetMetric() {
			got[mm.GetLabel()[0].GetValue()] = mm.GetCounter().GetValue()
		}
	}
	require.Equal(t, map[string]float64{sweepRun: 2, sweepListFailed: 1, sweepUpdate: 1, sweepUnknown: 1, sweepFailed: 1, sweepSkipped: 1, labelOther: 1}, got)
}
