package world_test

import (
	"os"

	"golang.org/x/sys/unix"
)

// fdatasync is what bbolt calls on Linux after writing pages.
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
