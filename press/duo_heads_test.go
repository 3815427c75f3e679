package press

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/kvserve/kvserve/model"
)

func TestDuoHeadsPattern(t *testing.T) {
	b := DuoHeads{Sink: DuoHeadsSink, Recent: DuoHeadsRecent}
	for _, tc := range []struct{ n, sink, recent int }{
		{100, 4, 8},      // 128·100/3072 = 4.2, 256·100/3072 = 8.3
		{1000, 42, 83},   // an eighth of the context
		{3072, 128, 256}, // kvpress's windows from 8·384 tokens on
		{4000, 128, 256},
		{10, 4, 1},
	} {
		if s, r := b.Pattern(tc.n); s != tc.sink || r != tc.recent {
			t.Errorf("n = %d: pattern %d + %d, want %d + %d", tc.n, s, r, tc.sink, tc.recent)
		}
	}
	if got, want := b.keepStreaming(100), append(span(0, 4), span(92, 100)...); !slices.Equal(got, want) {
		t.Errorf("streaming head keeps %v, want %v", got, want)
	}
	if b.keepStreaming(5) != nil { // 4 sinks + 1 recent
		t.Error("a head no longer than its windows was cut")
	}
}

func TestStreamingShare(t *testing.T) {
	scores := [][]float64{{0.9, 0.1, 0.5}, {0.3, 0.8, 0.2}}
	for _, tc := range []struct {
		ratio float64
		want  [][]bool
	}{
		{0, [][]bool{{false, false, false}, {false, false, false}}},
		{1.0 / 3, [][]bool{{false, true, false}, {false, false, true}}},
		{0.5, [][]bool{{false, true, false}, {true, false, true}}},
		{5.0 / 6, [][]bool{{false, true, true}, {true, true, true}}},
	} {
		if got := Streaming(scores, tc.ratio); !slices.EqualFunc(got, tc.want, slices.Equal) {
			t.Errorf("ratio %v: %v, want %v", tc.ratio, got, tc.want)
		}
	}
}

// TestDuoAttentionRatios compresses a tiny llama's cache (2 layers × 2 KV
// heads) with duo_attention at 0.25, 0.5 and 0.75, on the fly and from a
// head file: 1, 2 and 3 of the 4 heads stream, each keeping its 8 sinks
// and 17 recent tokens of 200, the others all 200.
func TestDuoAttentionRatios(t *testing.T) {
	const n = 200
	m, tokens := loadFixture(t, llamaFixture, n)
	c := m.Config
	path := filepath.Join(t.TempDir(), "heads.json")
	h := &HeadFile{Model: "fixture", Layers: c.Layers, KVHeads: c.KVHeads,
		Retrieval: [][]bool{{true, false}, {true, false}}, Scores: [][]float64{{0.4, 0.3}, {0.2, 0.1}}}
	if err := h.Write(path); err != nil {
		t.Fatal(err)
	}
	caches := map[string]bool{}
	for _, fromFile := range []bool{false, true} {
		for i, ratio := range []float64{0.25, 0.5, 0.75} {
			p, err := New("duo_attention", ratio)
			if fromFile {
				p, err = NewDuo(path, ratio)
			}
			if err != nil {
				t.Fatal(err)
			}
			seq := m.NewCache()
			obs := Observer([]*Press{p}, 0, n)
			if _, err := m.ForwardObserved(seq, tokens, model.NoLogits, obs); err != nil {
				t.Fatal(err)
			}
			if err := p.Apply(m, seq, obs); err != nil {
				t.Fatal(err)
			}
			streaming, shape := 0, ""
			for l := range c.Layers {
				for g := range c.KVHeads {
					switch seq.Len(l, g) {
					case 8 + 17:
						streaming++
						shape += "S"
					case n:
						shape += "R"
					default:
						t.Errorf("ratio %v: layer %d head %d holds %d tokens", ratio, l, g, seq.Len(l, g))
					}
				}
			}
			if streaming != i+1 {
				t.Errorf("ratio %v (file %v): %d streaming heads of 4, want %d", ratio, fromFile, streaming, i+1)
			}
			if fromFile && shape != []string{"RRRS", "RRSS", "RSSS"}[i] {
				t.Errorf("ratio %v: heads %s, want the lowest scores streaming", ratio, shape)
			}
			caches[shape] = true
			if _, err := m.Forward(seq, tokens[:1], model.LastLogits); err != nil {
				t.Errorf("decode after duo: %v", err)
			}
			seq.Release()
		}
	}
	if len(caches) < 3 {
		t.Errorf("only %d different caches over three ratios", len(caches))
	}
}
