package store

import (
	"os"

	"golang.org/x/sys/unix"
)

// nextHole is the offset of the first hole at or after off (SEEK_HOLE).
func nextHole(f *os.File, off int64) (int64, bool, error) {
	n, err := unix.Seek(int(f.Fd()), off, unix.SEEK_HOLE)
	return n, true, err
}
