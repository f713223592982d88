package store

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A non-critical record (a digital receipt) commits with a final transition;
// when the outbox is full it is refused, but the final transition and the
// critical records still commit.
func TestAppendTxnEventsNonCriticalIsBestEffort(t *testing.T) {
	ctx := t.Context()
	opts := Options{Now: newFakeClock().Now, MaxCount: 2}
	s, _ := openTest(t, opts)
	for _, id := range []string{"tx1", "tx2"} {
		_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "POS", ServiceID: id}, Transition{State: "started"})
		require.NoError(t, err)
	}
	done := []Transition{{State: "done", Final: true}}
	result := Event{Kind: KindTransactionResult, Payload: []byte(`{}`)}
	receipt := Event{Kind: KindReceipt, Payload: []byte(`{"receipts":[]}`)}

	require.NoError(t, s.AppendTxnEvents(ctx, "tx1", done, result, receipt))
	require.EqualValues(t, 2, s.Stats().Depth, "the receipt rides with the final response")

	// Full (2 records): the receipt is refused, the rest commits.
	require.NoError(t, s.AppendTxnEvents(ctx, "tx2", done, result, receipt))
	tx, err := s.Txn(ctx, "tx2")
	require.NoError(t, err)
	require.True(t, tx.Final)
	recs, err := s.List(ctx, 10)
	require.NoError(t, err)
	kinds := map[Kind]int{}
	for _, r := range recs {
		kinds[r.Kind]++
	}
	require.Equal(t, map[Kind]int{KindTransactionResult: 2, KindReceipt: 1}, kinds)
}
