package mmap

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// touched keeps mappedPages's reads from being optimized away.
var touched int

// mappedPages maps a file of n pages of known bytes, touches every page and
// returns the mapping and its expected content.
func mappedPages(t *testing.T, n int) (*File, []byte) {
	t.Helper()
	want := make([]byte, n*os.Getpagesize())
	for i := range want {
		want[i] = byte(i * 7)
	}
	path := filepath.Join(t.TempDir(), "w")
	if err := os.WriteFile(path, want, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	for _, b := range f.Bytes() {
		touched += int(b)
	}
	return f, want
}

func TestReleaseKeepsContent(t *testing.T) {
	page := os.Getpagesize()
	f, want := mappedPages(t, 8)
	data := f.Bytes()
	f.Release(data[page+page/2 : 6*page+page/2])
	f.Release(want) // not part of the mapping: ignored
	f.Release(nil)
	if !bytes.Equal(data, want) {
		t.Fatal("released pages read back different bytes")
	}
}
