// Package durable writes files so that a crash or a power cut leaves either
// the old file or the whole new one, never a torn one, and never loses a file
// whose write returned: write a temporary file, fsync it, rename it over the
// target, fsync the directory (the rename lives in the directory's entry, which
// is only on disk once the directory is synced).
package durable

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// WriteFile writes data to path with mode, atomically and durably.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	return writeFile(path, data, mode, SyncDir)
}

// writeFile is WriteFile with the directory sync as a parameter (for tests).
func writeFile(path string, data []byte, mode os.FileMode, syncDir func(string) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename: nothing left to remove
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// SyncDir fsyncs a directory, making the creations, renames and removals of
// its entries durable.
//
// On Windows it does nothing: Go's os.Open of a directory gives a handle
// whose Sync fails with "Access is denied", which failed every caller after
// its rename (Recover had moved the damaged file aside and then stopped). A
// rename's durability there rests on NTFS's metadata journal, which this
// package does not flush: compiled, not run on Windows.
func SyncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
