//go:build windows

package store

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// tryLock takes the lock bbolt v1.5.0 takes on Windows (bolt_windows.go
// flock): LockFileEx, exclusive, failing immediately, on the one byte at
// offset 2^64-1, so a running agent's open store makes it return
// errWouldBlock. unlock releases it; closing f does too, but Windows may
// release a closed handle's locks late, so callers unlock first.
//
// Compiled for windows/amd64 and vetted, not run: the tests run on Linux.
func tryLock(f *os.File) (unlock func(), err error) {
	h := windows.Handle(f.Fd())
	const all = ^uint32(0) // bbolt's byte range -1..0
	err = windows.LockFileEx(h, windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0,
		&windows.Overlapped{Offset: all, OffsetHigh: all})
	switch {
	case errors.Is(err, windows.ERROR_LOCK_VIOLATION):
		return nil, errWouldBlock
	case err != nil:
		return nil, err
	}
	return func() { _ = windows.UnlockFileEx(h, 0, 1, 0, &windows.Overlapped{Offset: all, OffsetHigh: all}) }, nil
}

// renameNeedsClose: Windows refuses to rename a file while a handle opened
// without FILE_SHARE_DELETE (as os.Open opens it, and bbolt) is open, so
// Recover releases its lock and closes the file before moving it. A running
// agent that opened the file in between makes the rename fail: the file is
// never moved from under it.
const renameNeedsClose = true
