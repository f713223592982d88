package main

import (
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/sim/world"
)

// TestRefundCrashRefundsOnce kills the agent binary (kill -9 at a failpoint)
// in the middle of a 5.00 EUR refund of a 20.00 EUR payment: once its amount
// is reserved with nothing sent yet, and once PPaaS has refunded but before
// the agent journaled the answer. After the restart the refund desk re-sends
// it with the same idempotency key: PPaaS holds exactly one 5.00 refund,
// TransactionStatus says Success, the POS's retry of the same ServiceID is
// answered from the journal, and what remains refundable is 15.00, no more.
func TestRefundCrashRefundsOnce(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("failpoints kill the process with SIGKILL (unix)")
	}
	bin := failpointAgent(t)
	w := newCrashWorld(t)
	for i, fp := range []string{"refund.reserved.after", "refund.sent.after"} {
		t.Run(fp, func(t *testing.T) {
			m := &matrixRun{t: t, w: w, bin: bin, data: filepath.Join(w.dir, fmt.Sprintf("refund-%d", i)), timeout: "30s",
				sid: fmt.Sprintf("F%d", i), known: map[string]bool{}}
			txs, _ := w.sim.Transactions()
			for _, tx := range txs {
				m.known[tx.TransactionID] = true
			}
			require.True(t, m.start(fp), "agent start:\n%s", m.proc.logs)
			defer m.stop()
			ans := sendAsync(m.pos, m.pos.PaymentRequest(m.sid, 2000, "EUR", "KB"))
			tx, ok := m.newTx(10 * time.Second)
			require.True(t, ok, "no PPaaS transaction:\n%s", m.proc.logs)
			_, err := w.sim.Act(tx.TransactionID, "pay")
			require.NoError(t, err)
			paid := m.answerOrDeath(ans, 15*time.Second)
			require.NotNil(t, paid, m.proc.logs.String())
			require.Equal(t, nexo.Success, paid.Status.Result, world.Describe(paid))

			refundSID := fmt.Sprintf("RF%d", i)
			refund := m.pos.RefundRequest(refundSID, paid.Payment.POITransactionID.ID, 500, "EUR")
			require.Nil(t, m.answerOrDeath(sendAsync(m.pos, refund), 15*time.Second), "the agent answered instead of dying at %s", fp)
			m.stop()
			require.True(t, m.hit, "failpoint %s not hit:\n%s", fp, m.proc.logs)

			require.True(t, m.start(""), "restart:\n%s", m.proc.logs)
			var st *nexo.Response
			deadline := time.Now().Add(20 * time.Second)
			for {
				st, err = m.pos.Status(t.Context(), refundSID)
				require.NoError(t, err)
				if st.Status.Result == nexo.Success || time.Now().After(deadline) {
					break
				}
				require.Equal(t, nexo.InProgress, st.Status.ErrorCondition, world.Describe(st))
				m.pause()
			}
			require.Equal(t, nexo.Success, st.Status.Result, "refund still unsettled:\n%s\n%s", world.Describe(st), m.proc.logs)
			rep := st.TransactionStatus.Repeated
			require.Equal(t, nexo.Success, rep.Status.Result, world.Describe(rep))
			require.Equal(t, nexo.Amount{Minor: 500, Currency: "EUR"}, rep.Payment.Result.AuthorizedAmount)
			require.Len(t, rep.Payment.Receipts, 2, "the settled refund has its receipts")
			require.Equal(t, int64(500), w.simTx(tx.TransactionID).RefundedAmount, "refunded exactly once")

			again, err := m.pos.Client.Do(t.Context(), refund)
			require.NoError(t, err)
			require.Equal(t, nexo.Success, again.Status.Result, world.Describe(again))
			more, err := m.pos.Refund(t.Context(), "", paid.Payment.POITransactionID.ID, 1501, "EUR")
			require.NoError(t, err)
			require.Equal(t, nexo.Refusal, more.Status.ErrorCondition, world.Describe(more))
			require.Contains(t, more.Status.AdditionalResponse, "15.00 EUR")
			require.Equal(t, int64(500), w.simTx(tx.TransactionID).RefundedAmount)
		})
	}
}
