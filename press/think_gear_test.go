package press

import (
	"reflect"
	"testing"

	"github.com/kvserve/kvserve/kvcache"
)

func TestThinKChannelScores(t *testing.T) {
	// One KV head of 4 channels shared by 2 query heads. Channel 0 has the
	// largest keys but no query ever reads it; channel 3 has small keys
	// and large queries.
	keys := [][]float32{
		{10, 1, 2, 1},
		{-10, 1, -2, 1},
		{10, -1, 2, 1},
	}
	seq := kvcache.New(1, 1, 4)
	for j, k := range keys {
		seq.Append(0, 0, k, make([]float32, 4), j)
	}
	// two window tokens × two query heads
	q := []float32{
		0, 1, 1, 3 /* head 0 */, 0, 1, 0, 3, // token 0
		0, 0, 1, -3 /* head 0 */, 0, -1, 1, 3, // token 1
	}
	got := channelScores(q, 2, 1, 4, 0, seq.View(0, 0))
	// ‖Q[:,c]‖²: 0, 3, 3, 36; ‖K[:,c]‖²: 300, 3, 12, 3.
	want := []float64{0, 9, 36, 108}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("scores %v, want %v", got, want)
	}
	cases := []struct {
		drop int
		keep []int
	}{
		{0, []int{0, 1, 2, 3}},
		{1, []int{1, 2, 3}}, // the big keys nobody queries go first
		{2, []int{2, 3}},
		{3, []int{3}},
	}
	for _, tc := range cases {
		if got := keepChannels(want, tc.drop); !reflect.DeepEqual(got, tc.keep) {
			t.Errorf("drop %d: keep %v, want %v", tc.drop, got, tc.keep)
		}
	}
	// Among equal scores the later channel goes first.
	if got := keepChannels([]float64{1, 1, 1, 1}, 2); !reflect.DeepEqual(got, []int{0, 1}) {
		t.Errorf("ties: keep %v, want [0 1]", got)
	}
}

func TestParseThinKAndGEAR(t *testing.T) {
	cases := []struct {
		name   string
		ratio  float64
		report float64 // the press's Ratio
		window int     // what the prefill must record
		stage  bool    // a Quantizer stage runs after eviction
	}{
		{"think", 0.25, 0.25, 32, true},
		{"snapkv+think", 0.5, 0.5, 64, true},
		{"keydiff+think", 0.5, 0.5, 32, true}, // keydiff needs nothing, ThinK its window
		{"gear4", 0.5, 0, 0, true},
		{"gear2", 0, 0, 0, true},
		{"keydiff+gear4", 0.5, 0.5, 0, true},
		{"snapkv+gear2", 0.75, 0.75, 64, true},
	}
	for _, tc := range cases {
		p, err := Parse(tc.name, tc.ratio)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if p.Ratio != tc.report {
			t.Errorf("%s at %v: ratio %v, want %v", tc.name, tc.ratio, p.Ratio, tc.report)
		}
		if w := p.Scorer.Needs().Window; w != tc.window {
			t.Errorf("%s: needs a window of %d, want %d", tc.name, w, tc.window)
		}
		if (p.Quantizer() != nil) != tc.stage {
			t.Errorf("%s: stage %v, want %v", tc.name, p.Quantizer() != nil, tc.stage)
		}
	}
	for _, bad := range []string{"think+kivi4", "gear4+keydiff", "gear5", "gear4r16"} {
		if _, err := Parse(bad, 0.5); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	if err := (ThinK{}).Quantize(kvcache.New(1, 1, 4)); err == nil {
		t.Error("think's Quantize without the model: no error")
	}
}

// TestGEARStage runs the gear presses' stage on a hand-made cache: blocks
// older than the 64-token buffer are sealed, the rest stay exact.
func TestGEARStage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		format kvcache.Format
		tokens int
		sealed int
	}{
		{"gear4", kvcache.Int4, 200, 128}, // (200 − 64) / 32 = 4 blocks
		{"gear2", kvcache.Int2, 200, 128},
		{"gear2", kvcache.Int2, 90, 0}, // nothing older than the buffer
	} {
		seq := kvcache.New(1, 2, 8)
		for j := range tc.tokens {
			for g := range 2 {
				k, v := make([]float32, 8), make([]float32, 8)
				for c := range k {
					k[c] = float32((j*7+c*3+g)%11) - 5
					v[c] = float32((j*5+c+g)%13) / 4
				}
				seq.Append(0, g, k, v, j)
			}
		}
		seq.Advance(tc.tokens)
		full := seq.StoredBytes()
		q := quantizers[tc.name]
		if err := q.Quantize(seq); err != nil {
			t.Fatal(err)
		}
		for g := range 2 {
			v := seq.View(0, g)
			if v.Len() != tc.tokens {
				t.Fatalf("%s: head %d holds %d tokens, want %d", tc.name, g, v.Len(), tc.tokens)
			}
			for j := range tc.tokens {
				want := kvcache.F32
				if j < tc.sealed {
					want = tc.format
				}
				if v.Format(j) != want {
					t.Fatalf("%s: head %d token %d stored as %s, want %s", tc.name, g, j, v.Format(j), want)
				}
			}
		}
		if got := seq.StoredBytes(); (tc.sealed > 0) != (got < full) {
			t.Errorf("%s: %d bytes of %d", tc.name, got, full)
		}
	}
}
