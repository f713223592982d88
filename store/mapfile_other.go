//go:build !unix && !windows

package store

import (
	"fmt"
	"io"
	"os"
)

// mapFile reads size bytes of f (no mmap here); unmap is a no-op.
func mapFile(f *os.File, size int64) (data []byte, unmap func(), err error) {
	data = make([]byte, size)
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, size), data); err != nil {
		return nil, nil, fmt.Errorf("read: %w", err)
	}
	return data, func() {}, nil
}
