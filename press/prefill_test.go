package press_test

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
	"github.com/kvserve/kvserve/press"
)

// TestPrefillLayered compresses a tinychat prompt with Press.Prefill and
// with a whole-prompt pass then Compress, and checks that both give the
// same logits, bytes and cache (every key, value and position), and that
// Prefill's pool peaks at no more than the compressed cache and one full
// layer (+10 %) — compositions with a quantization stage and planners
// such as CAKE (two passes) included — while MiniCache, which merges
// across layers, peaks at the full prompt.
func TestPrefillLayered(t *testing.T) {
	pool := compute.NewPool(0)
	defer pool.Close()
	b, err := engine.Open("", pool)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	net := b.Net
	prompt := b.Tokenizer.Encode(strings.Repeat("Go has goroutines, channels and a garbage collector. ", 30) + "What does Go have?")
	layers := int64(net.Config.Layers)
	for _, tc := range []struct {
		press   string
		ratio   float64
		bounded bool
	}{
		{"snapkv", 0.5, true},
		{"keydiff+kivi4", 0.5, true},
		{"snapkv+kivi2r32", 0.25, true},
		{"keydiff+gear4", 0.5, true},
		{"snapkv+think", 0.5, true},
		{"kivi4", 0, true},
		{"think", 0.5, true},
		{"cake", 0.5, true},
		{"cake+kivi4", 0.5, true},
		{"windowkv", 0.5, true},
		{"minicache", 0.5, false},
	} {
		t.Run(tc.press, func(t *testing.T) {
			p, err := press.Parse(tc.press, tc.ratio)
			if err != nil {
				t.Fatal(err)
			}
			whole := net.NewCache()
			defer whole.Release()
			obs := press.Observer([]*press.Press{p}, 0, len(prompt))
			wantLogits, err := net.ForwardObserved(whole, prompt, model.LastLogits, obs)
			if err != nil {
				t.Fatal(err)
			}
			wantLogits = slices.Clone(wantLogits)
			full := whole.Bytes()
			if err := p.Compress(net, whole, obs); err != nil {
				t.Fatal(err)
			}

			layered := net.NewCache()
			defer layered.Release()
			layered.Pool().ResetPeak()
			logits, gotFull, err := p.Prefill(net, layered, prompt, model.LastLogits, press.Observer([]*press.Press{p}, 0, len(prompt)))
			if err != nil {
				t.Fatal(err)
			}
			if gotFull != full {
				t.Errorf("Prefill reports %d bytes before compression, the whole pass held %d", gotFull, full)
			}
			if !slices.Equal(logits, wantLogits) {
				t.Error("Prefill's last logits differ from the whole pass's")
			}
			final, peak := layered.Bytes(), layered.Pool().PeakBytes()
			if final != whole.Bytes() {
				t.Errorf("Prefill's cache holds %d bytes, Compress's %d", final, whole.Bytes())
			}
			sameCache(t, whole, layered)
			if final >= full {
				t.Errorf("compressed cache %d bytes, not under the full %d", final, full)
			}
			bound := 1.1 * float64(final+full/layers)
			t.Logf("%s %.2f: full %d, final %d, peak %d, bound %.0f", tc.press, tc.ratio, full, final, peak, bound)
			if tc.bounded && float64(peak) > bound {
				t.Errorf("peak %d bytes over the final %d + one layer %d + 10 %%", peak, final, full/layers)
			}
			if !tc.bounded && peak < full {
				t.Errorf("peak %d bytes under the full prompt's %d: MiniCache computes it whole", peak, full)
			}
		})
	}
}

// sameCache checks that a and b hold the same tokens, keys and values in
// every layer and KV head.
func sameCache(t *testing.T, a, b *kvcache.Seq) {
	t.Helper()
	d := a.Pool().Config().HeadDim
	ka, kb, va, vb := make([]float32, d), make([]float32, d), make([]float32, d), make([]float32, d)
	for l := range a.Layers() {
		for g := range a.KVHeads() {
			x, y := a.View(l, g), b.View(l, g)
			if x.Len() != y.Len() {
				t.Fatalf("layer %d head %d: %d tokens, want %d", l, g, y.Len(), x.Len())
			}
			for j := range x.Len() {
				x.Key(j, ka)
				y.Key(j, kb)
				x.Value(j, va)
				y.Value(j, vb)
				if x.Pos(j) != y.Pos(j) || !bitsEqual(ka, kb) || !bitsEqual(va, vb) {
					t.Fatalf("layer %d head %d token %d differs", l, g, j)
				}
			}
		}
	}
}

func bitsEqual(a, b []float32) bool {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}
