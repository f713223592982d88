package durable

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "client.key")
	require.NoError(t, os.WriteFile(path, []byte("old"), 0o600))
	require.NoError(t, WriteFile(path, []byte("new key"), 0o600))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "new key", string(b))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file left behind")
}

// TestWriteFileSyncsTheDirectoryAfterTheRename: the directory is synced once
// the new file is in place under its name, and a failed sync is an error
// (the write is not known durable).
func TestWriteFileSyncsTheDirectoryAfterTheRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ca.key")
	var synced []string
	err := writeFile(path, []byte("key"), 0o600, func(d string) error {
		b, err := os.ReadFile(path)
		require.NoError(t, err, "the file is renamed into place before the directory sync")
		require.Equal(t, "key", string(b))
		synced = append(synced, d)
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, []string{dir}, synced)

	err = writeFile(path, []byte("key2"), 0o600, func(string) error { return errors.New("EIO") })
	require.ErrorContains(t, err, "write "+path+": EIO")
}

func TestSyncDir(t *testing.T) {
	require.NoError(t, SyncDir(t.TempDir()))
	require.ErrorContains(t, SyncDir(filepath.Join(t.TempDir(), "missing")), "sync dir")
}

func TestWriteFileIntoAMissingDirectory(t *testing.T) {
	err := WriteFile(filepath.Join(t.TempDir(), "missing", "client.key"), []byte("k"), 0o600)
	require.ErrorContains(t, err, "client.key")
}
