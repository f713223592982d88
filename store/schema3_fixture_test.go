package store

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// testdata/schema3.db is a crash image of a schema 3 file (journal indexes
// written after the step, unindexed.go) taken with index work pending: POS1
// started p1 (finished, ServiceID S1, alias ppaas-p1), whose indexes were
// applied, then p2 (POS1 S2, unfinished, alias ppaas-p2) and q1 (POS2 S1,
// finished, alias ppaas-q1), whose were not, one minute apart from
// 2026-03-01 12:00 UTC. Regenerate with TERMAGENT_WRITE_TESTDATA=1 (only
// while schema 3 is current); a later schema's migration is tested on it.
func writeSchema3Fixture(t *testing.T) {
	ctx := t.Context()
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "termagent.db")
	s, err := Open(ctx, path, Options{PruneInterval: -1, Now: clk.Now, manualIndexes: true})
	require.NoError(t, err)
	defer s.Close()
	step := func(ref TxnRef, alias string, final bool) {
		_, err := s.StartTxn(ctx, ref, Transition{State: "nexo.started"})
		require.NoError(t, err)
		require.NoError(t, s.AppendTxn(ctx, ref.ID, Transition{State: "qr.created", Alias: alias}))
		if final {
			require.NoError(t, s.FinishTxnEvents(ctx, ref.ID, []Transition{{State: "nexo.done", Final: true}}))
		}
		clk.Advance(time.Minute)
	}
	step(TxnRef{ID: "p1", SaleID: "POS1", ServiceID: "S1"}, "ppaas-p1", true)
	require.NoError(t, s.applyIndexesNow(ctx))
	step(TxnRef{ID: "p2", SaleID: "POS1", ServiceID: "S2"}, "ppaas-p2", false)
	step(TxnRef{ID: "q1", SaleID: "POS2", ServiceID: "S1"}, "ppaas-q1", true)
	image, err := os.ReadFile(path) // every commit is synced: the file as a kill -9 leaves it
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join("testdata", "schema3.db"), image, 0o644))
}

func TestSchema3FileWithPendingIndexesOpens(t *testing.T) {
	if os.Getenv("TERMAGENT_WRITE_TESTDATA") != "" {
		writeSchema3Fixture(t)
	}
	ctx := t.Context()
	raw, err := bolt.Open(filepath.Join("testdata", "schema3.db"), 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	require.NoError(t, raw.View(func(tx *bolt.Tx) error {
		v, _ := getSchema(tx.Bucket(bucketMeta))
		require.Equal(t, 3, v)
		require.Equal(t, 2, tx.Bucket(bucketUnindexed).Stats().KeyN, "the image holds pending index work")
		return nil
	}))
	require.NoError(t, raw.Close())

	s := openTestdataCopy(t, "schema3.db", Options{PruneInterval: -1, Now: newFakeClock().Now})
	require.NoError(t, s.view(func(tx *bolt.Tx) error {
		v, _ := getSchema(tx.Bucket(bucketMeta))
		require.Equal(t, schemaVersion, v)
		require.Zero(t, tx.Bucket(bucketUnindexed).Stats().KeyN, "Open applied what the crash left")
		return nil
	}))
	for sale, want := range map[string]string{"POS1": "p2", "POS2": "q1"} {
		last, ok, err := s.LastTxnForSale(ctx, sale)
		require.NoError(t, err)
		require.True(t, ok, sale)
		require.Equal(t, want, last.ID, sale)
	}
	last, ok, err := s.LastTxn(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "q1", last.ID)
	for alias, want := range map[string]string{"ppaas-p1": "p1", "ppaas-p2": "p2", "ppaas-q1": "q1"} {
		got, ok, err := s.TxnByAlias(ctx, alias)
		require.NoError(t, err)
		require.True(t, ok, alias)
		require.Equal(t, want, got.ID, alias)
	}
	for _, ref := range []TxnRef{{ID: "again1", SaleID: "POS1", ServiceID: "S1"}, {ID: "again2", SaleID: "POS1", ServiceID: "S2"}, {ID: "again3", SaleID: "POS2", ServiceID: "S1"}} {
		_, err := s.StartTxn(ctx, ref, Transition{State: "nexo.started"})
		require.ErrorIs(t, err, ErrDuplicateServiceID, "%+v", ref)
	}
	unfinished, err := s.UnfinishedTxns(ctx)
	require.NoError(t, err)
	require.Len(t, unfinished, 1)
	require.Equal(t, "p2", unfinished[0].ID)
	require.Len(t, unfinished[0].Transitions, 2)
}
