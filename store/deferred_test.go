package store

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func startTestTxn(t *testing.T, s *Store, id string) {
	t.Helper()
	_, err := s.StartTxn(t.Context(), TxnRef{ID: id, SaleID: "POS1", ServiceID: id}, Transition{State: "started"})
	require.NoError(t, err)
}

func states(t *testing.T, s *Store, id string) []string {
	t.Helper()
	tx, err := s.Txn(t.Context(), id)
	require.NoError(t, err)
	var out []string
	for _, tr := range tx.Transitions {
		out = append(out, tr.State)
	}
	return out
}

func TestDeferredWritesRideWithTheNextDurableWrite(t *testing.T) {
	s, _ := openTest(t, Options{DeferredFlush: time.Hour})
	startTestTxn(t, s, "T1")
	require.NoError(t, s.AppendTxnDeferred("T1", Transition{State: "a"}))
	require.NoError(t, s.AppendTxnDeferred("T1", Transition{State: "b"}))
	require.Equal(t, []string{"started"}, states(t, s, "T1"), "deferred writes wait for a durable one")
	seen, err := s.SeenEventDeferred(t.Context(), "E1")
	require.NoError(t, err)
	require.False(t, seen)

	require.NoError(t, s.AppendTxn(t.Context(), "T1", Transition{State: "c", Final: true}))
	require.Equal(t, []string{"started", "a", "b", "c"}, states(t, s, "T1"), "in submission order, before the durable write")
	seen, err = s.SeenEventDeferred(t.Context(), "E1")
	require.NoError(t, err)
	require.True(t, seen)
}

func TestDeferredWritesFlushOnTheirOwn(t *testing.T) {
	s, _ := openTest(t, Options{DeferredFlush: 10 * time.Millisecond})
	startTestTxn(t, s, "T1")
	require.NoError(t, s.AppendTxnDeferred("T1", Transition{State: "a"}))
	require.Eventually(t, func() bool { return len(states(t, s, "T1")) == 2 }, 5*time.Second, 5*time.Millisecond)
}

func TestCloseCommitsDeferredWrites(t *testing.T) {
	s, _ := openTest(t, Options{DeferredFlush: time.Hour})
	startTestTxn(t, s, "T1")
	require.NoError(t, s.AppendTxnDeferred("T1", Transition{State: "a"}))
	s = reopen(t, s, Options{})
	require.Equal(t, []string{"started", "a"}, states(t, s, "T1"))
	require.NoError(t, s.Close())
	require.ErrorIs(t, s.AppendTxnDeferred("T1", Transition{State: "late"}), ErrClosed)
}

func TestDeferredWriteErrorsDoNotFailOthers(t *testing.T) {
	s, _ := openTest(t, Options{DeferredFlush: time.Hour})
	startTestTxn(t, s, "T1")
	require.NoError(t, s.AppendTxnDeferred("missing", Transition{State: "x"}))
	require.NoError(t, s.AppendTxn(context.Background(), "T1", Transition{State: "b"}))
	require.Equal(t, []string{"started", "b"}, states(t, s, "T1"))
}

func TestAppendDeferredCommitsWithTheNextDurableWrite(t *testing.T) {
	s, _ := openTest(t, Options{DeferredFlush: time.Hour})
	startTestTxn(t, s, "T1")
	require.NoError(t, s.AppendDeferred(Event{Kind: KindTransactionResult, Payload: []byte(`{"r":1}`)}))
	require.EqualValues(t, 0, s.Stats().Depth)
	require.NoError(t, s.AppendTxn(t.Context(), "T1", Transition{State: "done", Final: true}))
	require.EqualValues(t, 1, s.Stats().Depth)
	recs, err := s.List(t.Context(), 10)
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, `{"r":1}`, string(recs[0].Payload))
	require.Error(t, s.AppendDeferred(Event{Kind: Kind(200)}), "bad input is refused at once")
}

func TestAckDeferredAndPeekAfter(t *testing.T) {
	s, _ := openTest(t, Options{DeferredFlush: time.Hour})
	recs := appendN(t, s, KindReceipt, 3)
	require.NoError(t, s.AckDeferred(recs[0].Seq))
	head, ok, err := s.Peek(t.Context(), time.Now())
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, recs[0].Seq, head.Seq, "the removal is not committed yet")
	next, ok, err := s.PeekAfter(t.Context(), time.Now(), recs[0].Seq)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, recs[1].Seq, next.Seq, "a consumer reads on past its deferred ack")

	require.NoError(t, s.Ack(t.Context(), recs[1].Seq)) // durable: takes the deferred ack along
	head, ok, err = s.Peek(t.Context(), time.Now())
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, recs[2].Seq, head.Seq)
	require.EqualValues(t, 1, s.Stats().Depth)
}
