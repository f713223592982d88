package store

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Issue 17: LastTxnForSaleSince reads only the header while the SaleID's
// last transaction is the one the caller has, unchanged; any step journaled
// on it (a deferred one included), a new transaction of the SaleID, or its
// eviction is a different answer.
func TestLastTxnForSaleSince(t *testing.T) {
	ctx := t.Context()
	clk := newFakeClock()
	s, _ := openTest(t, Options{Now: clk.Now})

	_, stamp, ok, err := s.LastTxnForSaleSince(ctx, "A", TxnStamp{})
	require.NoError(t, err)
	require.False(t, ok, "no transaction yet")

	_, err = s.StartTxn(ctx, TxnRef{ID: "a1", SaleID: "A", ServiceID: "1"}, Transition{State: "started", Data: []byte("req")})
	require.NoError(t, err)
	got, stamp, ok, err := s.LastTxnForSaleSince(ctx, "A", TxnStamp{}, "started")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, TxnStamp{ID: "a1", N: 1}, stamp)
	require.Equal(t, "a1", got.ID)
	require.Equal(t, "req", string(got.Transitions[0].Data))

	got, again, ok, err := s.LastTxnForSaleSince(ctx, "A", stamp, "started")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, stamp, again, "unchanged")
	require.Empty(t, got.ID, "not read again")

	require.NoError(t, s.AppendTxn(ctx, "a1", Transition{State: "done", Final: true, Data: []byte("resp")}))
	got, next, ok, err := s.LastTxnForSaleSince(ctx, "A", stamp, "done")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, TxnStamp{ID: "a1", N: 2}, next)
	require.Len(t, got.Transitions, 2)
	require.Equal(t, "resp", string(got.Transitions[1].Data))

	require.NoError(t, s.AppendTxnDeferred("a1", Transition{State: "note"}))
	require.NoError(t, s.AppendTxn(ctx, "a1", Transition{State: "done", Final: true, Data: []byte("settled")}))
	got, later, _, err := s.LastTxnForSaleSince(ctx, "A", next, "done")
	require.NoError(t, err)
	require.Equal(t, TxnStamp{ID: "a1", N: 4}, later, "the deferred step counts too")
	require.Equal(t, "settled", string(got.Transitions[3].Data))

	clk.Advance(time.Second)
	_, err = s.StartTxn(ctx, TxnRef{ID: "a2", SaleID: "A", ServiceID: "2"}, Transition{State: "started"})
	require.NoError(t, err)
	got, newer, ok, err := s.LastTxnForSaleSince(ctx, "A", later)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, TxnStamp{ID: "a2", N: 1}, newer, "a new transaction of the SaleID")
	require.Equal(t, "a2", got.ID)

	require.NoError(t, s.AppendTxn(ctx, "a2", Transition{State: "done", Final: true}))
	clk.Advance(365 * 24 * time.Hour)
	n, err := s.PruneJournal(ctx, clk.Now())
	require.NoError(t, err)
	require.Positive(t, n)
	_, _, ok, err = s.LastTxnForSaleSince(ctx, "A", newer)
	require.NoError(t, err)
	require.False(t, ok, "evicted: gone, not kept")
}

// TxnByServiceIDSince answers as TxnByServiceID, reading the header only
// while the pair's transaction is the one the caller has, unchanged.
func TestTxnByServiceIDSince(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t, Options{})
	_, _, ok, err := s.TxnByServiceIDSince(ctx, "A", "1", TxnStamp{})
	require.NoError(t, err)
	require.False(t, ok)

	_, err = s.StartTxn(ctx, TxnRef{ID: "a1", SaleID: "A", ServiceID: "1"}, Transition{State: "started"})
	require.NoError(t, err)
	_, err = s.StartTxn(ctx, TxnRef{ID: "a2", SaleID: "A", ServiceID: "2"}, Transition{State: "started"})
	require.NoError(t, err)
	got, stamp, ok, err := s.TxnByServiceIDSince(ctx, "A", "1", TxnStamp{})
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, TxnStamp{ID: "a1", N: 1}, stamp, "the pair's, not the SaleID's last")
	require.Equal(t, "a1", got.ID)

	got, again, _, err := s.TxnByServiceIDSince(ctx, "A", "1", stamp)
	require.NoError(t, err)
	require.Equal(t, stamp, again)
	require.Empty(t, got.ID, "not read again")

	require.NoError(t, s.AppendTxn(ctx, "a1", Transition{State: "done", Final: true, Data: []byte("resp")}))
	got, next, _, err := s.TxnByServiceIDSince(ctx, "A", "1", stamp, "done")
	require.NoError(t, err)
	require.Equal(t, TxnStamp{ID: "a1", N: 2}, next)
	require.Equal(t, "resp", string(got.Transitions[1].Data))

	got, other, ok, err := s.TxnByServiceIDSince(ctx, "A", "2", next)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, TxnStamp{ID: "a2", N: 1}, other, "another pair's stamp is not an answer")
	require.Equal(t, "a2", got.ID)
}

// headerN reads the N decode reads, from either layout, and fails where
// decode fails short.
func TestHeaderN(t *testing.T) {
	for _, h := range []txnHeader{
		{SaleID: "POS1", ServiceID: "42", Started: time.Unix(1, 2).UTC(), Updated: time.Unix(3, 4).UTC(), State: "nexo.done", Final: true, N: 7, Order: 9},
		{N: 1 << 40},
		{SaleID: "é", State: "s", Compact: true, N: 300},
	} {
		n, err := headerN(h.encode())
		require.NoError(t, err)
		require.Equal(t, h.N, n)
		legacy, err := json.Marshal(h)
		require.NoError(t, err)
		n, err = headerN(legacy)
		require.NoError(t, err)
		require.Equal(t, h.N, n)
		b := h.encode()
		_, err = headerN(b[:len(b)-2]) // Order, and N at least in part, cut
		require.Error(t, err)
	}
	_, err := headerN(nil)
	require.Error(t, err)
	_, err = headerN([]byte{headerVersion + 1})
	require.Error(t, err)
}
