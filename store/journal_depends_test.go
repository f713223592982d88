package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// dependsOnData: the test's unfinished transactions name what they depend on
// in their first transition's data ({"on":"id"}), as a refund names its
// original payment.
func dependsOnData(t Txn) string {
	var d struct{ On string }
	if len(t.Transitions) > 0 {
		_ = json.Unmarshal(t.Transitions[0].Data, &d)
	}
	return d.On
}

// Review item 4: the original payment of an unfinished refund (it holds the
// refund's reservation) was evicted by the journal budget and pruned after
// the journal retention, and the refund desk then looped on "original
// payment unreadable" for ever. Neither deletes what an unfinished
// transaction depends on (Options.DependsOn); once it finishes, both may.
func TestJournalKeepsWhatAnUnfinishedTransactionDependsOn(t *testing.T) {
	const max = 1 << 20
	ctx := context.Background()
	clk := newFakeClock()
	s, _ := openTest(t, Options{NoSync: true, Now: clk.Now, JournalMaxBytes: max, AdviceTxnID: adviceTxnID,
		DependsOn: dependsOnData, ServiceIDRetention: 48 * time.Hour, JournalRetention: 30 * 24 * time.Hour})
	data := json.RawMessage(`"` + string(bytes.Repeat([]byte("r"), 1024)) + `"`)
	_, err := s.StartTxn(ctx, TxnRef{ID: "payment", SaleID: "POS1", ServiceID: "p"}, Transition{State: "started", Data: data})
	require.NoError(t, err)
	require.NoError(t, s.AppendTxn(ctx, "payment", Transition{State: "done", Final: true, Data: data}))
	_, err = s.StartTxn(ctx, TxnRef{ID: "refund", SaleID: "POS1", ServiceID: "r"}, Transition{State: "started", Data: json.RawMessage(`{"on":"payment"}`)})
	require.NoError(t, err)
	clk.Advance(72 * time.Hour)
	for i := range 3000 {
		id := fmt.Sprintf("t%04d", i)
		_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "POS1", ServiceID: fmt.Sprint(i)}, Transition{State: "started", Data: data})
		require.NoError(t, err)
		require.NoError(t, s.AppendTxn(ctx, id, Transition{State: "done", Final: true, Data: data}))
	}
	clk.Advance(72 * time.Hour)
	n, err := s.EnforceJournalBudget(ctx)
	require.NoError(t, err)
	require.Positive(t, n)
	_, err = s.Txn(ctx, "t0000")
	require.ErrorIs(t, err, ErrNotFound, "older finished transactions are evicted")
	_, err = s.Txn(ctx, "payment")
	require.NoError(t, err, "the budget keeps the original of an unfinished refund")

	clk.Advance(31 * 24 * time.Hour)
	_, err = s.PruneJournal(ctx, clk.Now())
	require.NoError(t, err)
	_, err = s.Txn(ctx, "payment")
	require.NoError(t, err, "the retention keeps the original of an unfinished refund")

	require.NoError(t, s.AppendTxn(ctx, "refund", Transition{State: "done", Final: true}))
	_, err = s.PruneJournal(ctx, clk.Now())
	require.NoError(t, err)
	_, err = s.Txn(ctx, "payment")
	require.ErrorIs(t, err, ErrNotFound, "once the refund is final the payment goes as any other")
}

// Review: PruneJournal (30-day retention) deleted a payment whose reversal
// advice was still queued or dead-lettered — only the budget eviction pinned
// them — and TransactionStatus then answered NotFound instead of "manual
// action needed". An advice in the outbox or the dead letters keeps its
// transaction; once the advice is gone, the retention applies again.
func TestPruneKeepsWhatAnAdviceNames(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s, _ := openTest(t, Options{NoSync: true, Now: clk.Now, AdviceTxnID: adviceTxnID, PruneInterval: -1,
		ServiceIDRetention: 48 * time.Hour, JournalRetention: 30 * 24 * time.Hour})
	for _, id := range []string{"queued", "dead", "plain"} {
		_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "POS1", ServiceID: id}, Transition{State: "started"})
		require.NoError(t, err)
		require.NoError(t, s.AppendTxn(ctx, id, Transition{State: "done", Final: true}))
	}
	queued, err := s.Append(ctx, Event{Kind: KindAdvice, Payload: []byte(`{"id":"queued"}`)})
	require.NoError(t, err)
	dead, err := s.Append(ctx, Event{Kind: KindAdvice, Payload: []byte(`{"id":"dead"}`)})
	require.NoError(t, err)
	require.NoError(t, s.DeadLetter(ctx, dead.Seq, "refused 8 times"))

	clk.Advance(31 * 24 * time.Hour)
	n, err := s.PruneJournal(ctx, clk.Now())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = s.Txn(ctx, "plain")
	require.ErrorIs(t, err, ErrNotFound, "past the retention")
	for _, id := range []string{"queued", "dead"} {
		_, err := s.Txn(ctx, id)
		require.NoError(t, err, "%s: its advice keeps it", id)
	}

	require.NoError(t, s.Ack(ctx, queued.Seq))
	_, err = s.PurgeDead(ctx)
	require.NoError(t, err)
	n, err = s.PruneJournal(ctx, clk.Now())
	require.NoError(t, err)
	require.Equal(t, 2, n, "once the advices are gone the retention applies")
}

// Without AdviceTxnID the store cannot tell which transaction an advice is
// about: no finished transaction is pruned while one exists.
func TestPruneWithoutAdviceMappingKeepsAll(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s, _ := openTest(t, Options{NoSync: true, Now: clk.Now, PruneInterval: -1, JournalRetention: 24 * time.Hour})
	_, err := s.StartTxn(ctx, TxnRef{ID: "p", SaleID: "POS1", ServiceID: "p"}, Transition{State: "done", Final: true})
	require.NoError(t, err)
	adv, err := s.Append(ctx, Event{Kind: KindAdvice, Payload: []byte(`{}`)})
	require.NoError(t, err)
	clk.Advance(72 * time.Hour)
	n, err := s.PruneJournal(ctx, clk.Now())
	require.NoError(t, err)
	require.Zero(t, n)
	require.NoError(t, s.Ack(ctx, adv.Seq))
	n, err = s.PruneJournal(ctx, clk.Now())
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

// Review: one dead-lettered advice whose payload does not decode (it names no
// transaction) stopped both the retention prune and the budget's eviction for
// good, and the file grew without bound. A queued one still keeps everything
// (it is dead-lettered on its first attempt); a dead one pins nothing, while a
// readable dead advice still keeps its transaction.
func TestUndecodableDeadAdviceDoesNotStopPruning(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s, _ := openTest(t, Options{NoSync: true, Now: clk.Now, AdviceTxnID: adviceTxnID, PruneInterval: -1,
		ServiceIDRetention: 48 * time.Hour, JournalRetention: 30 * 24 * time.Hour})
	for _, id := range []string{"named", "plain"} {
		_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "POS1", ServiceID: id}, Transition{State: "started"})
		require.NoError(t, err)
		require.NoError(t, s.AppendTxn(ctx, id, Transition{State: "done", Final: true}))
	}
	named, err := s.Append(ctx, Event{Kind: KindAdvice, Payload: []byte(`{"id":"named"}`)})
	require.NoError(t, err)
	require.NoError(t, s.DeadLetter(ctx, named.Seq, "refused 8 times"))
	garbled, err := s.Append(ctx, Event{Kind: KindAdvice, Payload: []byte(`{"id":`)})
	require.NoError(t, err)

	clk.Advance(31 * 24 * time.Hour)
	n, err := s.PruneJournal(ctx, clk.Now())
	require.NoError(t, err)
	require.Zero(t, n, "a queued advice that names nothing readable keeps everything")

	require.NoError(t, s.DeadLetter(ctx, garbled.Seq, "decode advice: unexpected end of JSON input"))
	n, err = s.PruneJournal(ctx, clk.Now())
	require.NoError(t, err)
	require.Equal(t, 1, n, "a dead one does not")
	_, err = s.Txn(ctx, "plain")
	require.ErrorIs(t, err, ErrNotFound)
	_, err = s.Txn(ctx, "named")
	require.NoError(t, err, "a readable dead advice still keeps its transaction")
}
