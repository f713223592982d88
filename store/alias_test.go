package store

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// A transaction is found by the alias a transition gave it (the PPaaS id of
// a payment, all some events name it by); the entries go with it, and a file
// written before the index opens with an empty one.
func TestTxnByAlias(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s, _ := openTest(t, Options{NoSync: true, Now: clk.Now, PruneInterval: -1, JournalRetention: 24 * time.Hour})
	for _, id := range []string{"p1", "p2"} {
		_, err := s.StartTxn(ctx, TxnRef{ID: id, SaleID: "POS1", ServiceID: id}, Transition{State: "started"})
		require.NoError(t, err)
	}
	require.NoError(t, s.AppendTxn(ctx, "p1", Transition{State: "qr.created", Alias: "qr-1"}))
	require.NoError(t, s.AppendTxnDeferred("p1", Transition{State: "qr.approved", Alias: "qr-1"}))
	require.NoError(t, s.AppendTxnEvents(ctx, "p2", []Transition{{State: "qr.created", Alias: "qr-2\x00odd"}}))
	require.NoError(t, s.AppendTxn(ctx, "p2", Transition{State: "done", Final: true, Alias: strings.Repeat("x", MaxAliasLen+1)}))

	find := func(alias string) string {
		t.Helper()
		tx, ok, err := s.TxnByAlias(ctx, alias)
		require.NoError(t, err)
		if !ok {
			return ""
		}
		return tx.ID
	}
	require.Equal(t, "p1", find("qr-1"))
	require.Equal(t, "p2", find("qr-2\x00odd"))
	require.Empty(t, find(strings.Repeat("x", MaxAliasLen+1)), "too long: not indexed")
	require.Empty(t, find("qr-3"))
	require.Empty(t, find(""))
	tx, err := s.Txn(ctx, "p1")
	require.NoError(t, err)
	require.Len(t, tx.Transitions, 3)
	require.Empty(t, tx.Transitions[1].Alias, "the alias is an index, not part of the transition")

	// Pruned with its transaction (p1 is unfinished: kept).
	clk.Advance(48 * time.Hour)
	n, err := s.PruneJournal(ctx, clk.Now())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Empty(t, find("qr-2\x00odd"))
	require.Equal(t, "p1", find("qr-1"))
	require.NoError(t, s.view(func(tx *bolt.Tx) error {
		require.Equal(t, 1, tx.Bucket(bucketAlias).Stats().KeyN)
		require.Equal(t, 1, aliasEntries(tx), "p2's went with it")
		return nil
	}))

	// A file written before the index opens with an empty one.
	require.NoError(t, s.Close())
	db, err := bolt.Open(s.Path(), 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		require.NoError(t, tx.DeleteBucket(bucketAlias))
		return tx.DeleteBucket(bucketAliasOf)
	}))
	require.NoError(t, db.Close())
	s, err = Open(ctx, s.Path(), Options{NoSync: true, Now: clk.Now, PruneInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	require.Empty(t, find("qr-1"))
	require.NoError(t, s.AppendTxn(ctx, "p1", Transition{State: "qr.refunded", Alias: "qr-1"}))
	require.Equal(t, "p1", find("qr-1"))
}

// aliasEntries counts what deleteAliases reads: the entries in
// journal.alias.txn (schema 1) and those beside the headers.
func aliasEntries(tx *bolt.Tx) int {
	n := tx.Bucket(bucketAliasOf).Stats().KeyN
	_ = tx.Bucket(bucketTxn).ForEach(func(k, _ []byte) error {
		if id, rest, ok := bytes.Cut(k, []byte{0}); ok && len(rest) > 8 && keySeq(rest[:8]) == 0 && len(id) > 0 {
			n++
		}
		return nil
	})
	return n
}
