//go:build unix

package mmap

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

func mapFile(f *os.File, size int) ([]byte, bool, error) {
	data, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, false, err
	}
	return data, true, nil
}

func unmap(data []byte) error { return syscall.Munmap(data) }

// release drops the pages of b from memory; errors only mean they stay.
func release(b []byte) { _ = unix.Madvise(b, unix.MADV_DONTNEED) }
