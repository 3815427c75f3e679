package embed

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

type bertGolden struct {
	Sentences []struct {
		Text           string    `json:"text"`
		InputIDs       []int     `json:"input_ids"`
		Tokens         []string  `json:"tokens"`
		MeanNormalized []float64 `json:"mean_normalized"`
		CLS            []float64 `json:"cls"`
	} `json:"sentences"`
	SentenceTransformers [][]float64 `json:"sentence_transformers"`
}

const fixture = "testdata/bert-tiny"

func readGolden(t *testing.T) *bertGolden {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixture, "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g bertGolden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	return &g
}

// TestBERTMatchesTransformers compares the native encoder with
// transformers 5.17 and sentence-transformers on a random-weight BERT
// (scripts/make_bert_fixture.py): the token ids, and the pooled,
// normalized embeddings within 1e-4.
func TestBERTMatchesTransformers(t *testing.T) {
	g := readGolden(t)
	e, err := LoadBERT(fixture)
	if err != nil {
		t.Fatal(err)
	}
	texts := make([]string, len(g.Sentences))
	for i, s := range g.Sentences {
		texts[i] = s.Text
	}
	vecs, err := e.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range g.Sentences {
		ids := e.tok.Encode(s.Text, e.maxLen)
		if len(ids) != len(s.InputIDs) {
			t.Errorf("%q: %d ids %v, want %d %v", s.Text, len(ids), ids, len(s.InputIDs), s.InputIDs)
			continue
		}
		for j := range ids {
			if ids[j] != s.InputIDs[j] {
				t.Errorf("%q: ids %v, want %v", s.Text, ids, s.InputIDs)
				break
			}
		}
		want := s.MeanNormalized
		if i < len(g.SentenceTransformers) {
			want = g.SentenceTransformers[i]
		}
		worst := 0.0
		for j := range want {
			worst = math.Max(worst, math.Abs(float64(vecs[i][j])-want[j]))
		}
		t.Logf("%q: %d tokens, max |Δ| %.2g", s.Text, len(ids), worst)
		if len(vecs[i]) != len(want) || worst >= 1e-4 {
			t.Errorf("%q: max |Δ| = %.2g over %d floats (want < 1e-4)", s.Text, worst, len(want))
		}
	}
	// CLS pooling without normalization: the raw last hidden state of [CLS].
	e.poolCLS, e.poolMean, e.normalize = true, false, false
	for _, s := range g.Sentences[:3] {
		v := e.EncodeIDs(s.InputIDs)
		for j := range s.CLS {
			if d := math.Abs(float64(v[j]) - s.CLS[j]); d >= 1e-4 {
				t.Fatalf("%q: CLS state differs by %.2g at %d", s.Text, d, j)
			}
		}
	}
}

func TestLoadBERTErrors(t *testing.T) {
	if _, err := LoadBERT(t.TempDir()); err == nil {
		t.Fatal("an empty folder loaded")
	}
	if _, err := Open("bert:/nonexistent", nil); err == nil {
		t.Fatal("a missing folder opened")
	}
	if _, err := Open("word2vec", nil); err == nil {
		t.Fatal("an unknown embedder opened")
	}
	if _, err := Open("model", nil); err == nil {
		t.Fatal("the model embedder opened without a model")
	}
}

func FuzzWordPiece(f *testing.F) {
	data, err := os.ReadFile(filepath.Join(fixture, "tokenizer.json"))
	if err != nil {
		f.Fatal(err)
	}
	w, err := ParseWordPiece(data)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"Hello, world!", "中文 test\tcontrol\x00char", "HÉLLO", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids := w.Encode(s, 16)
		if len(ids) < 2 || len(ids) > 16 || ids[0] != w.cls || ids[len(ids)-1] != w.sep {
			t.Fatalf("Encode(%q) = %v", s, ids)
		}
	})
}
