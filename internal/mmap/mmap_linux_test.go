package mmap

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// rssKB returns the resident kilobytes of the mapping that starts at p, from
// /proc/self/smaps.
func rssKB(t *testing.T, p unsafe.Pointer) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	start := fmt.Sprintf("%x-", uintptr(p))
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if first, _, _ := strings.Cut(line, " "); strings.Contains(first, "-") && !strings.HasSuffix(first, ":") {
			in = strings.HasPrefix(line, start) // a mapping's header line
		}
		var kb int
		if in && strings.HasPrefix(line, "Rss:") {
			if _, err := fmt.Sscanf(line, "Rss: %d kB", &kb); err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Fatalf("no mapping at %s in /proc/self/smaps", start)
	return 0
}

func TestReleaseDropsWholePagesOnly(t *testing.T) {
	page := os.Getpagesize()
	f, _ := mappedPages(t, 8)
	data := f.Bytes()
	p := unsafe.Pointer(&data[0])
	if got := rssKB(t, p); got != 8*page/1024 {
		t.Fatalf("resident before release: %d kB, want %d", got, 8*page/1024)
	}
	// Half a page on each side is kept: only pages 2–5 go.
	f.Release(data[page+page/2 : 6*page+page/2])
	if got := rssKB(t, p); got != 4*page/1024 {
		t.Errorf("resident after releasing 4 of 8 pages: %d kB, want %d", got, 4*page/1024)
	}
}
