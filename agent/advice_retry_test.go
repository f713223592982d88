package agent

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/internal/testrig"
	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/ppaas"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// A reversal advice whose refund PPaaS answers 404 (an inconsistency of
// PPaaS's: it gave the agent the id) or 409 (the same refund key still in
// progress) is retried for as long as it takes, well past MaxRejections, and
// settles once PPaaS answers; a dead letter would send a person to refund by
// hand what PPaaS may still refund. A genuine refusal (400) still gives up,
// loudly, after MaxRejections. An inconclusive answer that lasts past
// EscalateAfter is told to a person once (TransactionStatus, a counter), and
// the advice is still retried.
func TestAdviceRetriedWhilePPaaSAnswers404Or409(t *testing.T) {
	const maxRejections = 2
	for _, c := range []struct {
		code      int
		giveUp    bool
		errorBody string
	}{
		{http.StatusNotFound, false, `{"error":"not_found","message":"no such transaction"}`},
		{http.StatusConflict, false, `{"error":"conflict","message":"refund in progress"}`},
		{http.StatusBadRequest, true, `{"error":"bad_request","message":"not refundable"}`},
	} {
		t.Run(http.StatusText(c.code), func(t *testing.T) {
			st := openAgentStore(t, filepath.Join(t.TempDir(), "termagent.db"))
			// With the after-sale desk, as the agent runs it: what the POS
			// is notified of is checked too.
			j := newAfterSaleRigOn(t, st, false).j
			id := failedPayment(t, j, "U1", 999, nexo.UnreachableHost, "outcome unknown; a reversal is queued")

			var refunds atomic.Int64
			var answers atomic.Bool // PPaaS answers the refund at last
			tx := ppaas.Transaction{TransactionID: "qr-1", ClientTransactionID: id, PaymentType: "KB", Status: ppaas.Approved,
				PaymentAmount: ppaas.Amount{Amount: 999, Currency: "EUR"}}
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				switch {
				case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/qr-1"):
					_ = json.NewEncoder(w).Encode(tx)
				case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/qr-1/refund"):
					refunds.Add(1)
					if !answers.Load() {
						w.WriteHeader(c.code)
						_, _ = w.Write([]byte(c.errorBody))
						return
					}
					_ = json.NewEncoder(w).Encode(ppaas.Refund{RefundID: "r-1", TransactionID: "qr-1", Status: ppaas.RefundDone, Amount: tx.PaymentAmount})
				case r.Method == http.MethodPost && r.URL.Path == EventsPath: // the payment's other records
				default:
					http.Error(w, `{"error":"not_found"}`, http.StatusNotFound)
				}
			}))
			t.Cleanup(srv.Close)
			engine := ppaasEngine(t, st, srv)
			j.qr = engine
			require.NoError(t, advisor{st: st}.Advise(t.Context(), qr.Advice{Kind: qr.AdviceReverse, ClientTransactionID: id, TransactionID: "qr-1", Reason: "outcome unknown"}))

			f := NewForwarder(st, sender{api: srv.Client(), apiURL: srv.URL, engine: engine, journal: j}, ForwarderConfig{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, MaxRejections: maxRejections, EscalateAfter: 20 * time.Millisecond}, quietLog())
			startForwarder(t, f)
			dead := func() int {
				recs, err := st.ListDead(t.Context(), 10)
				require.NoError(t, err)
				return len(recs)
			}
			if c.giveUp {
				testrig.WaitFor(t, 10*time.Second, "the refused advice dead-lettered", func() bool { return dead() == 1 })
				require.Equal(t, int64(maxRejections), refunds.Load(), "given up after MaxRejections refusals")
				// The give-up is told loudly (the journal's text follows the
				// dead letter).
				testrig.WaitFor(t, 10*time.Second, "TransactionStatus says manual action is needed", func() bool {
					e, ok, err := j.Lookup(t.Context(), "POS1", "U1")
					require.NoError(t, err)
					require.True(t, ok)
					return strings.Contains(e.Response.Status.AdditionalResponse, "manual action needed")
				})
				require.Equal(t, []string{afterReversalFailed}, updateKinds(t, st, id), "the POS is told the reversal failed, never settled")
				return
			}
			testrig.WaitFor(t, 10*time.Second, "refunds answered many times", func() bool { return refunds.Load() >= 4*maxRejections })
			require.Zero(t, dead(), "an inconclusive answer is never a reason to give up")
			require.Len(t, outboxOf(t, st, store.KindAdvice), 1, "the advice stays queued")

			// Past EscalateAfter the POS is told, once, while retries go on.
			testrig.WaitFor(t, 10*time.Second, "TransactionStatus says the reversal is not settled", func() bool {
				e, ok, err := j.Lookup(t.Context(), "POS1", "U1")
				require.NoError(t, err)
				require.True(t, ok)
				return strings.Contains(e.Response.Status.AdditionalResponse, "not settled by PPaaS")
			})
			e, _, err := j.Lookup(t.Context(), "POS1", "U1")
			require.NoError(t, err)
			require.Equal(t, nexo.Failure, e.Response.Status.Result)
			require.Contains(t, e.Response.Status.AdditionalResponse, "the consumer may still be charged")
			require.Contains(t, e.Response.Status.AdditionalResponse, "qr-1")
			steps := func() int {
				tx, err := st.Txn(t.Context(), id)
				require.NoError(t, err)
				return len(tx.Transitions)
			}
			told, seen := steps(), refunds.Load()
			testrig.WaitFor(t, 10*time.Second, "more inconclusive answers", func() bool { return refunds.Load() >= seen+2*maxRejections })
			require.Equal(t, told, steps(), "escalated once, not on every retry")
			require.Equal(t, int64(1), f.Stats().Escalated)
			require.Len(t, outboxOf(t, st, store.KindAdvice), 1, "still queued after the escalation")

			answers.Store(true)
			testrig.WaitFor(t, 10*time.Second, "the advice carried out", func() bool { return len(outboxOf(t, st, store.KindAdvice)) == 0 })
			require.Zero(t, dead())
			e, ok, err := j.Lookup(t.Context(), "POS1", "U1")
			require.NoError(t, err)
			require.True(t, ok)
			require.Contains(t, e.Response.Status.AdditionalResponse, "refunded at PPaaS")
			require.Equal(t, []string{afterReversalUnconfirmed, afterSettled}, updateKinds(t, st, id), "told unconfirmed once, then settled")
		})
	}
}

// updateKinds are the kinds of payment id's after-sale updates, oldest
// first, each with its POS notification queued beside it.
func updateKinds(t *testing.T, st *store.Store, id string) []string {
	t.Helper()
	var kinds []string
	for _, r := range afterSaleRecords(t, st, id) {
		kinds = append(kinds, r.Kind)
	}
	notified := 0
	for _, rec := range outboxOf(t, st, store.KindNexoEvent) {
		var pe nexo.PendingEvent
		require.NoError(t, json.Unmarshal(rec.Payload, &pe))
		if strings.Contains(string(pe.Body), "POITransactionID="+id) {
			notified++
		}
	}
	require.Equal(t, len(kinds), notified, "each update is notified to the POS")
	return kinds
}
