//go:build unix && !solaris && !aix

package store

import (
	"os"
	"syscall"
)

// flockExclusive takes the same advisory lock bbolt takes, without waiting,
// so Recover never moves a file a running agent has open. The lock is
// released when f is closed.
func flockExclusive(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}
