package tokenizer

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// goSources lists the .go files under GOROOT/src, every step-th one.
func goSources(t *testing.T, step int) []string {
	t.Helper()
	root := filepath.Join(runtime.GOROOT(), "src")
	var files []string
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") {
			if n%step == 0 {
				files = append(files, path)
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Skipf("GOROOT sources: %v", err)
	}
	if len(files) == 0 {
		t.Skip("no .go files under GOROOT/src")
	}
	return files
}

// TestRoundTripGoroot encodes Go's own sources and checks that decoding,
// in one go or token by token, gives the text back. In -short mode it
// reads every 20th file; otherwise all of them (about 160 MB).
func TestRoundTripGoroot(t *testing.T) {
	step := 1
	if testing.Short() {
		step = 20
	}
	files := goSources(t, step)
	tok := loadTinychat(t)
	work := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total, tokens int
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for path := range work {
				data, err := os.ReadFile(path)
				if err != nil {
					t.Error(err)
					continue
				}
				text := string(data)
				ids := tok.Encode(text)
				want := text
				if !utf8.ValidString(text) {
					want = lossyString(data)
				}
				if got := tok.Decode(ids); got != want {
					t.Errorf("%s: Decode(Encode(text)) differs from text at byte %d", path, firstDiff(got, want))
					continue
				}
				s := NewStream(tok)
				var b strings.Builder
				for _, id := range ids {
					b.WriteString(s.Push(id))
				}
				b.WriteString(s.Flush())
				if got := b.String(); got != want {
					t.Errorf("%s: streamed decode differs from text at byte %d", path, firstDiff(got, want))
				}
				mu.Lock()
				total += len(data)
				tokens += len(ids)
				mu.Unlock()
			}
		})
	}
	for _, f := range files {
		work <- f
	}
	close(work)
	wg.Wait()
	t.Logf("%d files, %d bytes, %d tokens (%.2f bytes/token)", len(files), total, tokens, float64(total)/float64(max(tokens, 1)))
}

func firstDiff(a, b string) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}
