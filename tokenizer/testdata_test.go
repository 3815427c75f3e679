package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestTestdata runs the cases of every testdata/*/cases.json through the
// tokenizer.json beside it. The expected ids and decoded texts come from HF
// tokenizers 0.22. gpt2-tiny is byte-level BPE with GPT-2's regex and
// merges as "a b" strings; qwen2-tiny has Qwen2's regex, NFC, merges as
// pairs, ignore_merges and added tokens with lstrip, rstrip, single_word
// and normalized set.
func TestTestdata(t *testing.T) {
	dirs, err := filepath.Glob("testdata/*/cases.json")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no testdata cases: %v", err)
	}
	for _, path := range dirs {
		dir := filepath.Dir(path)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			tok, err := Load(filepath.Join(dir, TokenizerFile))
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var cases []struct {
				Text    string  `json:"text"`
				IDs     []int   `json:"ids"`
				Decoded *string `json:"decoded"`
			}
			if err := json.Unmarshal(data, &cases); err != nil {
				t.Fatal(err)
			}
			for _, c := range cases {
				if got := tok.Encode(c.Text); !slices.Equal(got, c.IDs) && len(got)+len(c.IDs) > 0 {
					t.Errorf("Encode(%q) = %v, want %v", c.Text, got, c.IDs)
				}
				want := c.Text
				if c.Decoded != nil {
					want = *c.Decoded
				}
				if got := tok.Decode(c.IDs); got != want {
					t.Errorf("Decode(%v) = %q, want %q", c.IDs, got, want)
				}
			}
		})
	}
}

func TestBOS(t *testing.T) {
	for _, c := range []struct {
		dir  string
		bos  int
		has  bool
		eos  int
		heos bool
	}{
		{tinychatDir, 0, false, 2, true},
		{"testdata/gpt2-tiny", 0, false, 0, false},
		{"testdata/qwen2-tiny", 285, true, 0, false},
	} {
		tok, err := LoadDir(c.dir)
		if err != nil {
			t.Fatal(err)
		}
		if bos, ok := tok.BOS(); ok != c.has || ok && bos != c.bos {
			t.Errorf("%s: BOS() = %d, %v; want %d, %v", c.dir, bos, ok, c.bos, c.has)
		}
		if eos, ok := tok.EOS(); ok != c.heos || ok && eos != c.eos {
			t.Errorf("%s: EOS() = %d, %v; want %d, %v", c.dir, eos, ok, c.eos, c.heos)
		}
	}
}

func TestConfigBOS(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata/gpt2-tiny", TokenizerFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		config string
		bos    int // -1: none
		err    bool
	}{
		{`{"bos_token": "<|endoftext|>", "add_bos_token": true}`, 284, false},
		{`{"bos_token": {"content": "<|endoftext|>", "special": true}, "add_bos_token": true}`, 284, false},
		{`{"bos_token": "<|endoftext|>"}`, -1, false},
		{`{"bos_token": null, "add_bos_token": true}`, -1, false},
		{`{"bos_token": "<nope>", "add_bos_token": true}`, -1, true},
		{`{"eos_token": 7}`, -1, true},
		{`[`, -1, true},
	} {
		tok, err := ParseWithConfig(data, []byte(c.config))
		if c.err {
			if err == nil {
				t.Errorf("%s: no error", c.config)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.config, err)
			continue
		}
		if bos, ok := tok.BOS(); ok != (c.bos >= 0) || ok && bos != c.bos {
			t.Errorf("%s: BOS() = %d, %v; want %d", c.config, bos, ok, c.bos)
		}
	}
}
