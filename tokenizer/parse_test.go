package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tiny returns a small tokenizer.json with the given sections replaced.
func tiny(model, pre, extra string) string {
	if model == "" {
		model = `{"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}`
	}
	if pre == "" {
		pre = "null"
	}
	return `{"added_tokens": [], "pre_tokenizer": ` + pre + `, "model": ` + model + extra + `}`
}

func TestParse(t *testing.T) {
	cases := []struct {
		name string
		json string
		in   string
		want []int
	}{
		{"string merges", tiny("", "", ""), "abab", []int{2, 2}},
		{"pair merges", tiny(`{"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]}`, "", ""), "aab", []int{0, 2}},
		{"no type", tiny(`{"vocab": {"a": 0, "b": 1, "ab": 2}, "merges": []}`, "", ""), "ab", []int{0, 1}},
		{"no merges", tiny(`{"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": null}`, "", ""), "ab", []int{0, 1}},
		{"unknown chars dropped", tiny("", "", ""), "axb", []int{2}},
		{"ignore_merges", tiny(`{"type": "BPE", "ignore_merges": true, "vocab": {"a": 0, "b": 1, "ab": 2, "aab": 3}, "merges": ["a b"]}`, "", ""), "aab", []int{3}},
		{"regex split", tiny("", `{"type": "Split", "pattern": {"Regex": "b"}, "behavior": "Isolated", "invert": false}`, ""), "abab", []int{0, 1, 0, 1}},
		{"post-processor without BOS", tiny("", "", `, "post_processor": {"type": "Sequence", "processors": [{"type": "ByteLevel"}, {"type": "Whatever"}]}`), "ab", []int{2}},
		{"NFC sequence", tiny("", "", `, "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "NFC"}]}`), "ab", []int{2}},
		{"added token object", `{"added_tokens": [{"id": 5, "content": "<x>", "special": true}], "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}`, "a<x>a", []int{0, 1, 0}},
	}
	for _, c := range cases {
		tok, err := Parse([]byte(c.json))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got := tok.Encode(c.in); !equalInts(got, c.want) {
			t.Errorf("%s: Encode(%q) = %v, want %v", c.name, c.in, got, c.want)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name string
		json string
		err  string
	}{
		{"not JSON", `{`, "unexpected end"},
		{"not an object", `[]`, "cannot unmarshal"},
		{"no model", `{}`, "no model"},
		{"WordPiece", tiny(`{"type": "WordPiece", "vocab": {}}`, "", ""), `unsupported type "WordPiece"`},
		{"merge of unknown token", tiny(`{"type": "BPE", "vocab": {"a": 0}, "merges": ["a c"]}`, "", ""), `"c" is not in the vocabulary`},
		{"merged token missing", tiny(`{"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}`, "", ""), `merged token "ab"`},
		{"merge without space", tiny(`{"type": "BPE", "vocab": {"a": 0}, "merges": ["ab"]}`, "", ""), "not two tokens"},
		{"merge of three", tiny(`{"type": "BPE", "vocab": {"a": 0}, "merges": [["a", "a", "a"]]}`, "", ""), "want 2 tokens"},
		{"merges not a list", tiny(`{"type": "BPE", "vocab": {"a": 0}, "merges": {"a": 1}}`, "", ""), "merges"},
		{"negative id", tiny(`{"type": "BPE", "vocab": {"a": -1}, "merges": []}`, "", ""), "out of range"},
		{"huge id", tiny(`{"type": "BPE", "vocab": {"a": 100000000}, "merges": []}`, "", ""), "out of range"},
		{"sparse ids", tiny(`{"type": "BPE", "vocab": {"a": 1000000}, "merges": []}`, "", ""), "too sparse"},
		{"fractional id", tiny(`{"type": "BPE", "vocab": {"a": 1.5}, "merges": []}`, "", ""), "cannot unmarshal"},
		{"unk not in vocab", tiny(`{"type": "BPE", "unk_token": "<unk>", "vocab": {"a": 0}, "merges": []}`, "", ""), "unk_token"},
		{"normalizer", tiny("", "", `, "normalizer": {"type": "Lowercase"}`), `unsupported normalizer type "Lowercase"`},
		{"pre-tokenizer", tiny("", `{"type": "Metaspace"}`, ""), `unsupported pre_tokenizer type "Metaspace"`},
		{"pre-tokenizer in sequence", tiny("", `{"type": "Sequence", "pretokenizers": [{"type": "ByteLevel"}, {"type": "Whitespace"}]}`, ""), "pre_tokenizer 1 of Sequence"},
		{"untyped pre-tokenizer", tiny("", `{}`, ""), "no type"},
		{"behavior", tiny("", `{"type": "Split", "pattern": {"String": " "}, "behavior": "Sideways"}`, ""), "unknown behavior"},
		{"look-ahead", tiny("", `{"type": "Split", "pattern": {"Regex": "\\s+(?!\\S)"}, "behavior": "Isolated"}`, ""), "look-around"},
		{"bad regex", tiny("", `{"type": "Split", "pattern": {"Regex": "(a"}, "behavior": "Isolated"}`, ""), "missing closing"},
		{"no pattern", tiny("", `{"type": "Split", "behavior": "Isolated"}`, ""), "no pattern"},
		{"decoder", tiny("", "", `, "decoder": {"type": "WordPiece"}`), `unsupported decoder type "WordPiece"`},
		{"template without ids", tiny("", "", `, "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}], "special_tokens": {}}`), `"<s>" has no ids`},
		{"deep nesting", tiny("", strings.Repeat(`{"type": "Sequence", "pretokenizers": [`, 20)+`{"type": "ByteLevel"}`+strings.Repeat(`]}`, 20), ""), "nested too deeply"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.json))
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.err)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, TokenizerFile), []byte(tiny("", "", "")), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDir(dir); err != nil {
		t.Errorf("LoadDir without tokenizer_config.json: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"eos_token": "<nope>"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "eos_token") {
		t.Errorf("LoadDir with a bad eos_token: %v", err)
	}
}

func TestParseTwoByteLevels(t *testing.T) {
	_, err := Parse([]byte(tiny("", `{"type": "Sequence", "pretokenizers": [{"type": "ByteLevel"}, {"type": "ByteLevel"}]}`, "")))
	if err == nil || !strings.Contains(err.Error(), "ByteLevel") {
		t.Errorf("two ByteLevel pre-tokenizers: error %v", err)
	}
}
