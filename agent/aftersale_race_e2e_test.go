package agent_test

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/agent"
	"github.com/termagent/termagent/internal/testrig/worldrig"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim"
	simworld "github.com/termagent/termagent/sim/world"
)

// logWatch is a slog handler that tells when a record with one of its
// messages about a status is logged (with the attributes the logger was
// built With).
type logWatch struct {
	mu    sync.Mutex
	wants []logWant
	attrs []slog.Attr
	root  *logWatch
}

type logWant struct {
	msgs  []string
	value string // of the attribute status, update or kind
	hit   chan string
}

func newLogWatch() *logWatch { w := &logWatch{}; w.root = w; return w }

// watch returns a channel that gets the event_id of the first record whose
// message is one of msgs and that says status (its attribute status, update
// or kind).
func (w *logWatch) watch(status string, msgs ...string) <-chan string {
	ch := make(chan string, 1)
	w.root.mu.Lock()
	w.root.wants = append(w.root.wants, logWant{msgs: msgs, value: status, hit: ch})
	w.root.mu.Unlock()
	return ch
}

func (w *logWatch) Enabled(context.Context, slog.Level) bool { return true }

func (w *logWatch) Handle(_ context.Context, r slog.Record) error {
	attrs := map[string]string{}
	for _, a := range w.attrs {
		attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
	w.root.mu.Lock()
	defer w.root.mu.Unlock()
	kept := w.root.wants[:0]
	for _, want := range w.root.wants {
		if slices.Contains(want.msgs, r.Message) && slices.Contains([]string{attrs["status"], attrs["update"], attrs["kind"]}, want.value) {
			want.hit <- attrs["event_id"]
			continue
		}
		kept = append(kept, want)
	}
	w.root.wants = kept
	return nil
}

func (w *logWatch) WithAttrs(as []slog.Attr) slog.Handler {
	return &logWatch{attrs: append(slices.Clone(w.attrs), as...), root: w.root}
}

func (w *logWatch) WithGroup(string) slog.Handler { return w }

// End to end: the provider refunds a payment right after
// approving it (sim: pay, then provider-refund at once), the refund's
// event delivered twice. The refund event follows the approval on the agent's MQTT
// session within microseconds, while the engine still holds the payment
// decided or its answer is being journaled: it used to reach the engine,
// which logged "late update after final state ignored", and was acked — the
// POS never learned the money went back (agent/aftersale_race_test.go holds
// each window open deterministically). Whatever the interleaving, the POS is
// answered Success, notified of the refund once, and TransactionStatus tells
// it.
func TestE2ERefundRightAfterApprovalReachesThePOSOnce(t *testing.T) {
	logs := newLogWatch()
	ws, pos := worldrig.Start(t, func(c *simworld.WorldConfig) {
		worldrig.Agent(func(ac *agent.Config) { ac.PaymentTimeout, ac.EventWait = 30*time.Second, 10*time.Second })(c)
		c.Logger = slog.New(logs)
	})
	w := &world{World: ws, t: t, pos: pos, seen: map[string]bool{}}
	before := w.charges()

	ch := w.payAsync("S1", 2000)
	s := w.awaitQR()
	ctid, txID := s.ClientTransactionID, s.TransactionID
	raced := logs.watch("refunded", "qr event waits for its payment's final response")
	dup := logs.watch("refunded", "mqtt duplicate event ignored", "after-sale update already journaled; not notified again")
	_, err := w.PPaaS.Act(txID, "pay")
	require.NoError(t, err)
	w.PPaaS.SetPaymentFaults(sim.PaymentFaults{DuplicateEvents: 1}) // the refund's event, twice
	_, err = w.PPaaS.Act(txID, sim.ActionProviderRefund)
	require.NoError(t, err)

	r := w.answer(ch, 20*time.Second)
	require.Equal(t, nexo.Success, r.Status.Result, simworld.Describe(r))
	w.waitFor(10*time.Second, "the POS notified of the refund", func() bool {
		return len(w.POSEvents.Matching("Completed", "POITransactionID="+ctid, "Update=refunded")) > 0
	}, func() string { return "" })
	select {
	case <-dup:
	case <-time.After(10 * time.Second):
		t.Fatal("the refund event's second delivery was never handled")
	}
	select {
	case <-raced:
		t.Log("the refund event arrived before the payment's final response was journaled")
	default:
		t.Log("the refund event arrived after the payment's final response was journaled")
	}
	got := w.POSEvents.Matching("Completed", "POITransactionID="+ctid)
	require.Len(t, got, 1, "notified once")
	require.Contains(t, got[0].Event.EventDetails, "Amount=20.00")

	st := w.status("S1")
	require.Equal(t, nexo.Success, st.Status.Result, "the sale happened; the refund is told beside it")
	require.Contains(t, st.Status.AdditionalResponse, "refunded at the provider after the sale: 20.00 EUR back to the consumer")
	require.Equal(t, before+1, w.charges())
}
