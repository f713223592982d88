//go:build windows

package store

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/windows"
)

// mapFile maps size bytes of f read-only, as bbolt maps its file
// (CreateFileMapping, MapViewOfFile); unmap releases the view. Windows
// refuses to shrink a file while a view of it is mapped, so reads within
// size never fault.
//
// Compiled for windows/amd64 and vetted, not run: the tests run on Linux.
func mapFile(f *os.File, size int64) (data []byte, unmap func(), err error) {
	if int64(int(size)) != size {
		return nil, nil, fmt.Errorf("file of %d bytes too large to map", size)
	}
	h, err := windows.CreateFileMapping(windows.Handle(f.Fd()), nil, windows.PAGE_READONLY, 0, 0, nil)
	if err != nil {
		return nil, nil, os.NewSyscallError("CreateFileMapping", err)
	}
	addr, err := windows.MapViewOfFile(h, windows.FILE_MAP_READ, 0, 0, uintptr(size))
	// The view keeps the mapping object alive; its handle is not needed.
	_ = windows.CloseHandle(h)
	if err != nil {
		return nil, nil, os.NewSyscallError("MapViewOfFile", err)
	}
	// The view lies outside the Go heap, so the GC never moves or frees it;
	// reading addr's bits as a pointer says so without vet's uintptr check.
	data = unsafe.Slice((*byte)(*(*unsafe.Pointer)(unsafe.Pointer(&addr))), int(size))
	return data, func() { _ = windows.UnmapViewOfFile(addr) }, nil
}
