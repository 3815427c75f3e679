package tokenizer

import (
	"encoding/json"
	"os"
	"slices"
	"testing"
)

const (
	tinychatDir = "../models/tinychat"
	goldenPath  = "../model/testdata/tinychat/golden.json"
)

func loadTinychat(t testing.TB) *Tokenizer {
	t.Helper()
	tok, err := LoadDir(tinychatDir)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestGolden(t *testing.T) {
	data, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Name     string `json:"name"`
		Text     string `json:"text"`
		InputIDs []int  `json:"input_ids"`
	}
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) != 4 {
		t.Fatalf("golden.json has %d cases, want 4", len(cases))
	}
	tok := loadTinychat(t)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			got := tok.Encode(c.Text)
			if !slices.Equal(got, c.InputIDs) {
				i := 0
				for i < len(got) && i < len(c.InputIDs) && got[i] == c.InputIDs[i] {
					i++
				}
				t.Fatalf("Encode: %d ids, want %d; first difference at %d: got %v, want %v",
					len(got), len(c.InputIDs), i, got[i:min(i+5, len(got))], c.InputIDs[i:min(i+5, len(c.InputIDs))])
			}
			if dec := tok.Decode(got); dec != c.Text {
				t.Errorf("Decode(Encode(text)) = %q, want %q", dec, c.Text)
			}
		})
	}
}
