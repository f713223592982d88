package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/termagent/termagent/store"
)

// queueDataDir makes a stopped agent's data dir: 5 queued records (one
// retried twice), 2 dead letters and one unfinished transaction.
func queueDataDir(t *testing.T) string {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "termagent.db"), store.Options{PruneInterval: -1})
	require.NoError(t, err)
	var recs []store.Record
	for i := range 7 {
		kind := store.KindTransactionResult
		if i%2 == 1 {
			kind = store.KindReceipt
		}
		r, err := st.Append(ctx, store.Event{Kind: kind, Payload: []byte(`{"n":1}`)})
		require.NoError(t, err)
		recs = append(recs, r)
	}
	require.NoError(t, st.Nack(ctx, recs[0].Seq, time.Now().Add(time.Hour), "503 Service Unavailable"))
	require.NoError(t, st.Nack(ctx, recs[0].Seq, time.Now().Add(time.Hour), "503 Service Unavailable"))
	require.NoError(t, st.DeadLetter(ctx, recs[5].Seq, "permanent: 400"))
	require.NoError(t, st.DeadLetter(ctx, recs[6].Seq, "expired"))
	_, err = st.StartTxn(ctx, store.TxnRef{ID: "t1", SaleID: "POS", ServiceID: "1"}, store.Transition{State: "qr-shown"})
	require.NoError(t, err)
	require.NoError(t, st.Close())
	return dir
}

func runQ(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := runQueue(t.Context(), args, &out, &errOut)
	return out.String() + errOut.String(), err
}

func TestQueueStatus(t *testing.T) {
	dir := queueDataDir(t)
	out, err := runQ(t, "status", "--data-dir", dir)
	require.NoError(t, err)
	require.Contains(t, out, "5 records")
	require.Contains(t, out, "seq 1 transaction-result, 2 failed attempt(s)")
	require.Contains(t, out, "last error: 503 Service Unavailable")
	require.Contains(t, out, "dead letters")
	require.Contains(t, out, "unfinished transactions  1")

	// Flags may also precede the command; JSON for scripts.
	out, err = runQ(t, "--data-dir", dir, "--json", "status")
	require.NoError(t, err)
	var st queueStatusJSON
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	require.Equal(t, int64(5), st.Depth)
	require.Equal(t, int64(2), st.Dead)
	require.Equal(t, 1, st.UnfinishedTxns)
	require.Equal(t, uint32(2), st.HeadAttempts)
}

func TestQueueList(t *testing.T) {
	dir := queueDataDir(t)
	out, err := runQ(t, "list", "--data-dir", dir, "--limit", "2")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	require.True(t, strings.HasPrefix(lines[1], "1 "), out)
	require.True(t, strings.HasPrefix(lines[2], "2 "), out)

	out, err = runQ(t, "list", "--data-dir", dir, "--dead", "--json")
	require.NoError(t, err)
	var recs []recordJSON
	require.NoError(t, json.Unmarshal([]byte(out), &recs))
	require.Len(t, recs, 2)
	require.Equal(t, "permanent: 400", recs[0].LastError)
	require.NotNil(t, recs[0].DeadAt)
}

func TestQueueRetryAndPurge(t *testing.T) {
	dir := queueDataDir(t)
	out, err := runQ(t, "retry", "6", "--data-dir", dir)
	require.NoError(t, err, "a dead letter retried by its sequence number")
	require.Contains(t, out, "moved 1 dead letter(s)")
	_, err = runQ(t, "retry", "--data-dir", dir, "--seq", "999")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = runQ(t, "retry", "--data-dir", dir, "--seq", "x")
	require.Error(t, err)

	_, err = runQ(t, "purge-dead", "--data-dir", dir)
	require.ErrorContains(t, err, "-yes")
	out, err = runQ(t, "purge-dead", "--data-dir", dir, "--yes")
	require.NoError(t, err)
	require.Contains(t, out, "deleted 1 dead letter(s)")

	out, err = runQ(t, "status", "--data-dir", dir, "--json")
	require.NoError(t, err)
	var st queueStatusJSON
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	require.Equal(t, int64(6), st.Depth)
	require.Zero(t, st.Dead)

	out, err = runQ(t, "retry", "--data-dir", dir)
	require.NoError(t, err)
	require.Contains(t, out, "moved 0 dead letter(s)")
}

func TestQueueRunningAgent(t *testing.T) {
	dir := queueDataDir(t)
	st, err := store.Open(t.Context(), filepath.Join(dir, "termagent.db"), store.Options{PruneInterval: -1})
	require.NoError(t, err)
	defer st.Close()
	_, err = runQ(t, "status", "--data-dir", dir)
	require.ErrorIs(t, err, store.ErrLocked)
	require.ErrorContains(t, err, "data dir in use by another agent process?")
	require.ErrorContains(t, err, "stop the agent first")
}

func TestQueueCorruptAndRecover(t *testing.T) {
	dir := queueDataDir(t)
	path := filepath.Join(dir, "termagent.db")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	clear(b[:2*4096]) // both meta pages
	require.NoError(t, os.WriteFile(path, b, 0o600))

	_, err = runQ(t, "status", "--data-dir", dir)
	require.ErrorIs(t, err, store.ErrCorrupt)
	require.ErrorContains(t, err, "--recover")

	out, err := runQ(t, "status", "--data-dir", dir, "--recover")
	require.NoError(t, err)
	require.Contains(t, out, "damaged store moved to "+path+".corrupt-")
	require.Contains(t, out, "0 records")
	matches, err := filepath.Glob(path + ".corrupt-*")
	require.NoError(t, err)
	require.Len(t, matches, 1, "the damaged file is kept")

	out, err = runQ(t, "status", "--data-dir", dir, "--recover")
	require.NoError(t, err)
	require.Contains(t, out, "nothing to recover")
}

func TestQueueRecoverKeepsReadableRecords(t *testing.T) {
	dir := queueDataDir(t)
	path := filepath.Join(dir, "termagent.db")
	// Damage one record inside an otherwise sound file.
	st, err := store.Open(t.Context(), path, store.Options{PruneInterval: -1})
	require.NoError(t, err)
	recs, err := st.List(t.Context(), 10)
	require.NoError(t, err)
	require.NoError(t, st.Close())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	// The key also appears in index buckets: damage the occurrence that is
	// the record's value (version 1, kind, key...), found by its version byte.
	damaged := 0
	for off := 0; ; {
		i := bytes.Index(b[off:], recs[2].Key[:])
		if i < 0 {
			break
		}
		i += off
		if i >= 2 && b[i-2] == 1 {
			b[i-2] = 0x09 // the record's version byte
			damaged++
		}
		off = i + 1
	}
	require.Positive(t, damaged)
	require.NoError(t, os.WriteFile(path, b, 0o600))

	_, err = runQ(t, "list", "--data-dir", dir)
	require.ErrorIs(t, err, store.ErrCorrupt)
	out, err := runQ(t, "list", "--data-dir", dir, "--recover")
	require.NoError(t, err)
	require.Contains(t, out, "copied 4, unreadable 1")
}

func TestQueueUsageErrors(t *testing.T) {
	dir := queueDataDir(t)
	for _, args := range [][]string{
		{},
		{"frobnicate", "--data-dir", dir},
		{"status", "extra", "--data-dir", dir},
		{"status", "--data-dir", filepath.Join(dir, "missing")},
	} {
		_, err := runQ(t, args...)
		require.Error(t, err, "%q", args)
	}
	_, err := runQ(t, "status", "--data-dir", filepath.Join(dir, "missing"))
	require.ErrorContains(t, err, "no store at")
	err = runQueue(context.Background(), []string{"-h"}, &bytes.Buffer{}, &bytes.Buffer{})
	require.Error(t, err)
}
