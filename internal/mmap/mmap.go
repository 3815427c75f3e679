// Package mmap maps read-only files into memory, so that multi-gigabyte
// weight files cost page cache rather than heap.
package mmap

import (
	"fmt"
	"os"
	"unsafe"
)

// File is a read-only mapping of a whole file.
type File struct {
	data   []byte
	mapped bool
}

// Open maps the file at path. Empty files yield an empty, valid File.
// Where mapping is unavailable the file is read into memory instead.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory, not a file", path)
	}
	size := st.Size()
	if size == 0 {
		return &File{}, nil
	}
	if int64(int(size)) != size {
		return nil, fmt.Errorf("%s: %d bytes do not fit in memory on this platform", path, size)
	}
	data, mapped, err := mapFile(f, int(size))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &File{data: data, mapped: mapped}, nil
}

// Bytes returns the file's contents. The slice is valid until Close and must
// not be written to.
func (f *File) Bytes() []byte { return f.data }

// Release tells the system that b, a sub-slice of Bytes, will not be read
// again: the whole pages inside it leave the process's resident memory
// (they would be read back from the file if touched). A loader calls it
// after copying a tensor into another layout. It does nothing where the
// file was read rather than mapped, or when b is not part of the mapping.
func (f *File) Release(b []byte) {
	if f == nil || !f.mapped || len(b) == 0 || len(f.data) == 0 {
		return
	}
	base, p := uintptr(unsafe.Pointer(&f.data[0])), uintptr(unsafe.Pointer(&b[0]))
	if p < base || p-base+uintptr(len(b)) > uintptr(len(f.data)) {
		return
	}
	page := uintptr(os.Getpagesize()) // the mapping starts on a page
	lo := (p - base + page - 1) &^ (page - 1)
	hi := (p - base + uintptr(len(b))) &^ (page - 1)
	if hi > lo {
		release(f.data[lo:hi])
	}
}

// Close unmaps the file. Slices obtained from Bytes must not be used after.
func (f *File) Close() error {
	if f == nil || f.data == nil {
		return nil
	}
	data := f.data
	f.data = nil
	if f.mapped {
		return unmap(data)
	}
	return nil
}
