package store

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

func TestOpenCreatesPrivateFile(t *testing.T) {
	_, path := openTest(t, Options{})
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

func TestOpenTightensPermissions(t *testing.T) {
	s, path := openTest(t, Options{})
	require.NoError(t, s.Close())
	require.NoError(t, os.Chmod(path, 0o644))
	s2, err := Open(t.Context(), path, Options{})
	require.NoError(t, err)
	defer s2.Close()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

func TestOpenLockedByAnotherHolder(t *testing.T) {
	_, path := openTest(t, Options{})
	start := time.Now()
	_, err := Open(t.Context(), path, Options{LockTimeout: 200 * time.Millisecond})
	require.ErrorIs(t, err, ErrLocked)
	require.Contains(t, err.Error(), "data dir in use by another agent process?")
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestOpenCorruptFile(t *testing.T) {
	tests := []struct {
		name  string
		bytes func(valid []byte) []byte
	}{
		{"garbage", func([]byte) []byte { return []byte(strings.Repeat("not a bolt file ", 1024)) }},
		{"both meta pages zeroed", func(b []byte) []byte {
			clear(b[:2*4096])
			return b
		}},
		{"truncated", func(b []byte) []byte { return b[:100] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, path := openTest(t, Options{})
			appendN(t, s, KindReceipt, 3)
			require.NoError(t, s.Close())
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(path, tt.bytes(b), 0o600))

			_, err = Open(t.Context(), path, Options{})
			require.ErrorIs(t, err, ErrCorrupt)
			require.Contains(t, err.Error(), "--recover")
		})
	}
}

func TestOpenRejectsNewerSchema(t *testing.T) {
	s, path := openTest(t, Options{})
	require.NoError(t, s.Close())
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error { return putSchema(tx.Bucket(bucketMeta), schemaVersion+1) }))
	require.NoError(t, db.Close())
	_, err = Open(t.Context(), path, Options{})
	require.ErrorIs(t, err, ErrSchemaTooNew)
}

func TestMigrations(t *testing.T) {
	s, path := openTest(t, Options{})
	require.NoError(t, s.Close())
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	defer db.Close()

	ran := []int{}
	migs := []migration{
		{from: 2, name: "second", apply: func(tx *bolt.Tx) error { ran = append(ran, 2); return nil }},
		{from: 1, name: "first", apply: func(tx *bolt.Tx) error {
			ran = append(ran, 1)
			_, err := tx.CreateBucket([]byte("new"))
			return err
		}},
	}
	require.NoError(t, db.Update(func(tx *bolt.Tx) error { return applyMigrations(tx, 1, 3, migs) }))
	require.Equal(t, []int{1, 2}, ran)
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		v, _ := getSchema(tx.Bucket(bucketMeta))
		require.Equal(t, 3, v)
		require.NotNil(t, tx.Bucket([]byte("new")))
		return nil
	}))
	// A missing step fails and leaves the file unchanged (the transaction rolls back).
	err = db.Update(func(tx *bolt.Tx) error { return applyMigrations(tx, 3, 5, migs) })
	require.ErrorContains(t, err, "no migration from schema 3")
}

func TestVerifyDetectsBadRecord(t *testing.T) {
	s, path := openTest(t, Options{})
	appendN(t, s, KindReceipt, 3)
	require.NoError(t, s.Close())
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOutbox).Put(seqKey(2), []byte{9, 9, 9})
	}))
	require.NoError(t, db.Close())

	_, err = Open(t.Context(), path, Options{Verify: true})
	require.ErrorIs(t, err, ErrCorrupt)

	// Without Verify the damage surfaces when the record is read.
	s2, err := Open(t.Context(), path, Options{})
	require.NoError(t, err)
	defer s2.Close()
	_, err = s2.List(t.Context(), 10)
	require.ErrorIs(t, err, ErrCorrupt)
}

func TestRecoverSalvagesReadableRecords(t *testing.T) {
	ctx := t.Context()
	s, path := openTest(t, Options{})
	recs := appendN(t, s, KindTransactionResult, 20)
	require.NoError(t, s.DeadLetter(ctx, recs[0].Seq, "x"))
	_, err := s.StartTxn(ctx, TxnRef{ID: "t1", SaleID: "POS1", ServiceID: "17"}, Transition{State: "started"})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	// Damage one outbox record's value in place.
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOutbox).Put(seqKey(5), []byte("garbage"))
	}))
	require.NoError(t, db.Close())

	rep, err := Recover(path)
	require.NoError(t, err)
	require.True(t, rep.Opened)
	require.FileExists(t, rep.MovedTo)
	require.True(t, strings.HasPrefix(filepath.Base(rep.MovedTo), "termagent.db.corrupt-"))
	require.Equal(t, 18, rep.Copied["outbox"])
	require.Equal(t, 1, rep.Skipped["outbox"])
	require.Equal(t, 1, rep.Copied["dead"])

	s2, err := Open(ctx, path, Options{Verify: true})
	require.NoError(t, err)
	defer s2.Close()
	st := s2.Stats()
	require.Equal(t, int64(18), st.Depth)
	require.Equal(t, int64(1), st.Dead)
	tx, err := s2.Txn(ctx, "t1")
	require.NoError(t, err)
	require.Equal(t, "started", tx.State)
	r, err := s2.Append(ctx, Event{Kind: KindReceipt})
	require.NoError(t, err)
	require.Equal(t, uint64(21), r.Seq, "sequence continues past salvaged records")
}

func TestRecoverUnreadableFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "termagent.db")
	require.NoError(t, os.WriteFile(path, []byte(strings.Repeat("x", 10000)), 0o600))
	rep, err := Recover(path)
	require.NoError(t, err)
	require.False(t, rep.Opened)
	require.NotEmpty(t, rep.Errors)
	s, err := Open(t.Context(), path, Options{})
	require.NoError(t, err)
	defer s.Close()
	require.Zero(t, s.Stats().Depth)
}

func TestRecoverRefusesLockedFile(t *testing.T) {
	_, path := openTest(t, Options{})
	_, err := Recover(path)
	require.ErrorIs(t, err, ErrLocked)
	require.NoFileExists(t, path+".corrupt")
}

func TestCountersRebuiltWhenMissing(t *testing.T) {
	s, path := openTest(t, Options{})
	appendN(t, s, KindReceipt, 7)
	require.NoError(t, s.Close())
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyCounters) }))
	require.NoError(t, db.Close())
	s2, err := Open(context.Background(), path, Options{})
	require.NoError(t, err)
	defer s2.Close()
	require.Equal(t, int64(7), s2.Stats().Depth)
}

func TestCountersEncoding(t *testing.T) {
	c := counters{count: 1, bytes: 2, dead: 3, deadBytes: 4}
	got, ok := decodeCounters(c.encode())
	require.True(t, ok)
	require.Equal(t, c, got)
	_, ok = decodeCounters(binary.BigEndian.AppendUint64(nil, 1))
	require.False(t, ok)
}
