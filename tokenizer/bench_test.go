package tokenizer

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// benchText is about 1 MB of Go source from GOROOT.
func benchText(b *testing.B) string {
	b.Helper()
	dir := filepath.Join(runtime.GOROOT(), "src", "net", "http")
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.Skip(err)
	}
	var text []byte
	for _, e := range entries {
		if filepath.Ext(e.Name()) == ".go" && len(text) < 1<<20 {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				b.Fatal(err)
			}
			text = append(text, data...)
		}
	}
	return string(text)
}

func BenchmarkEncode(b *testing.B) {
	tok := loadTinychat(b)
	text := benchText(b)
	tok.Encode(text) // warm the word cache
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for b.Loop() {
		tok.Encode(text)
	}
}

func BenchmarkEncodeCold(b *testing.B) {
	tok := loadTinychat(b)
	text := benchText(b)
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for b.Loop() {
		tok.model.mu.Lock()
		clear(tok.model.cache)
		tok.model.mu.Unlock()
		tok.Encode(text)
	}
}

func BenchmarkDecode(b *testing.B) {
	tok := loadTinychat(b)
	ids := tok.Encode(benchText(b))
	b.ResetTimer()
	for b.Loop() {
		tok.Decode(ids)
	}
}

func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(tinychatDir, TokenizerFile))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
