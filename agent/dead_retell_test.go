package agent

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/nexo"
	"github.com/termagent/termagent/qr"
	"github.com/termagent/termagent/store"
)

// A crash between moving a reversal to the dead letters and telling it in
// the payment's journal entry (two writes) left TransactionStatus saying a
// reversal is queued while nothing would send it. At start the agent tells
// every dead-lettered reversal in its entry, once.
func TestDeadLetteredReversalToldAfterACrash(t *testing.T) {
	st := openAgentStore(t, filepath.Join(t.TempDir(), "termagent.db"))
	j := journal{st: st}
	id := failedPayment(t, j, "D1", 999, nexo.UnreachableHost, "outcome unknown; a reversal is queued")
	require.NoError(t, advisor{st: st}.Advise(t.Context(), qr.Advice{Kind: qr.AdviceReverse, ClientTransactionID: id, TransactionID: "qr-1", Reason: "outcome unknown"}))
	recs := outboxOf(t, st, store.KindAdvice)
	require.Len(t, recs, 1)
	// The forwarder's first write, then the crash: DeadLettered never ran.
	require.NoError(t, st.DeadLetter(t.Context(), recs[0].Seq, "PPaaS refused the refund: not refundable"))

	text := func() (string, int) {
		tx, err := st.Txn(t.Context(), id)
		require.NoError(t, err)
		e := entryOf(tx, withResponse)
		require.NotNil(t, e.Response)
		return e.Response.Status.AdditionalResponse, len(tx.Transitions)
	}
	before, _ := text()
	require.NotContains(t, before, "manual action needed")

	s := sender{journal: j}
	n, err := s.retellDeadLetters(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	told, steps := text()
	require.Contains(t, told, "manual action needed")
	require.Contains(t, told, "not refundable")

	n, err = s.retellDeadLetters(t.Context())
	require.NoError(t, err)
	require.Zero(t, n, "told once: a restart does not write it again")
	_, again := text()
	require.Equal(t, steps, again)
}
