package store

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A final transition and the outbox records it owes commit together: both
// are in the file, or (the transaction does not exist, a non-critical kind)
// neither is.
func TestAppendTxnEventsAllOrNothing(t *testing.T) {
	ctx := t.Context()
	clk := newFakeClock()
	opts := Options{Now: clk.Now}
	s, _ := openTest(t, opts)
	_, err := s.StartTxn(ctx, TxnRef{ID: "tx1", SaleID: "POS", ServiceID: "S1"}, Transition{State: "started"})
	require.NoError(t, err)

	advice := Event{Kind: KindAdvice, Payload: []byte(`{"kind":"reverse"}`)}
	result := Event{Kind: KindTransactionResult, Payload: []byte(`{}`)}
	done := []Transition{{State: "reversal"}, {State: "done", Final: true}}

	err = s.AppendTxnEvents(ctx, "nope", done, advice, result)
	require.ErrorIs(t, err, ErrNotFound)
	require.Zero(t, s.Stats().Depth, "nothing queued by a refused commit")

	require.NoError(t, s.AppendTxnEvents(ctx, "tx1", done, advice, result))
	s = reopen(t, s, opts)
	tx, err := s.Txn(ctx, "tx1")
	require.NoError(t, err)
	require.True(t, tx.Final)
	require.Len(t, tx.Transitions, 3)
	recs, err := s.List(ctx, 10)
	require.NoError(t, err)
	require.Len(t, recs, 2)
	require.Equal(t, KindAdvice, recs[0].Kind)
	require.True(t, recs[0].Expires.IsZero(), "a critical record never expires by time alone")
	require.True(t, recs[1].Expires.IsZero())
	unfinished, err := s.UnfinishedTxns(ctx)
	require.NoError(t, err)
	require.Empty(t, unfinished)

	found, dead, ok, err := s.FindKey(ctx, recs[0].Key)
	require.NoError(t, err)
	require.True(t, ok)
	require.False(t, dead)
	require.Equal(t, recs[0].Seq, found.Seq)
}
