//go:build unix && !solaris && !aix

package store

import (
	"errors"
	"os"
	"syscall"
)

// tryLock takes the exclusive advisory lock bbolt takes (flock), without
// waiting: errWouldBlock if another holder has it. unlock releases it; so
// does closing f.
func tryLock(f *os.File) (unlock func(), err error) {
	fd := int(f.Fd())
	err = syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
	switch {
	case errors.Is(err, syscall.EWOULDBLOCK):
		return nil, errWouldBlock
	case err != nil:
		return nil, err
	}
	return func() { _ = syscall.Flock(fd, syscall.LOCK_UN) }, nil
}

// renameNeedsClose: a file can be renamed while open here, so Recover keeps
// its lock until the damaged file has moved.
const renameNeedsClose = false
