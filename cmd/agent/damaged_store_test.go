package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/termagent/termagent/store"
)

// The agent binary, started on a store file with a garbage branch page,
// refuses to start with a message naming the file and the command that
// recovers it, not a Go stack from a goroutine bbolt started; the command
// works as printed.
func TestAgentBinaryRefusesDamagedStore(t *testing.T) {
	dir, files := devConf(t)
	data := filepath.Join(dir, "data")
	path := filepath.Join(data, "termagent.db")
	st, err := store.Open(t.Context(), path, store.Options{PruneInterval: -1, NoSync: true})
	require.NoError(t, err)
	for i := range 200 {
		_, err := st.Append(t.Context(), store.Event{Kind: store.KindReceipt, Payload: bytes.Repeat([]byte{byte(i)}, 100)})
		require.NoError(t, err)
	}
	require.NoError(t, st.Close())

	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	ps := db.Info().PageSize
	var branch int
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		branch = int(tx.Bucket([]byte("outbox")).Root())
		return nil
	}))
	require.NoError(t, db.Close())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, byte(0x01), b[branch*ps+8], "the outbox root must be a branch page")
	r := rand.New(rand.NewPCG(1, 2))
	for i := branch*ps + 16; i < (branch+1)*ps; i++ {
		b[i] = byte(r.Uint32())
	}
	require.NoError(t, os.WriteFile(path, b, 0o600))

	bin := failpointAgent(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	args := append([]string{"-data-dir", data, "-nexo-listen", "127.0.0.1:0", "-admin-listen", "", "-mqtt-url", ""}, files...)
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "%s", out)
	require.Equal(t, 1, exit.ExitCode(), "%s", out)
	for _, want := range []string{path, "store file is corrupted", "refusing to start", "queue status -recover -data-dir " + data} {
		require.Contains(t, string(out), want)
	}
	for _, crash := range []string{"panic", "goroutine ", "fatal error"} {
		require.NotContains(t, string(out), crash)
	}
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, bytes.Equal(b, after), "the agent wrote to the damaged file")

	out, err = exec.CommandContext(ctx, bin, "queue", "status", "-recover", "-data-dir", data).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "damaged store moved to "+path+".corrupt-")
	require.True(t, strings.Contains(string(out), "copied"), "%s", out)
}
