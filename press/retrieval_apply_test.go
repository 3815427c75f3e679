package press

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// retrievalTokens is the prompt length of TestRetrievalPressesOnAModel.
const retrievalTokens = 300

// TestRetrievalPressesOnAModel prefills a tiny llama fixture (bf16 cache),
// compresses forks with razor_attention, windowkv and compresskv, and
// checks what each head keeps, that the pool's bytes fell by what was
// evicted, and that decoding still gives finite logits near the full
// cache's.
func TestRetrievalPressesOnAModel(t *testing.T) {
	for _, tc := range []struct {
		dir string
		// maxDist bounds the logits' distance (relative L2) from the full
		// cache's at ratios up to maxRatio. The fixture's random weights
		// spread attention widely and differ from layer to layer, so only
		// light compression stays near the full cache there; the trained
		// tinychat stays near it at every ratio tried.
		maxDist, maxRatio float64
	}{
		{"../model/testdata/archs/llama3-ropescaled", 0.5, 0.05},
		{"../models/tinychat", 0.15, 0.75},
	} {
		t.Run(filepath.Base(tc.dir), func(t *testing.T) { testRetrievalPresses(t, tc.dir, tc.maxDist, tc.maxRatio) })
	}
}

func testRetrievalPresses(t *testing.T, dir string, maxDist, maxRatio float64) {
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		t.Skipf("no model at %s", dir)
	}
	const n = retrievalTokens
	m, tokens := loadFixture(t, dir, n)
	c := m.Config
	heads := &HeadFile{Model: "fixture", Layers: c.Layers, KVHeads: c.KVHeads, Retrieval: make([][]bool, c.Layers), Scores: make([][]float64, c.Layers)}
	for l := range c.Layers {
		heads.Retrieval[l] = make([]bool, c.KVHeads)
		heads.Retrieval[l][c.KVHeads-1] = true
		heads.Scores[l] = make([]float64, c.KVHeads)
		heads.Scores[l][c.KVHeads-1] = 1
	}
	path := filepath.Join(t.TempDir(), "heads.json")
	if err := heads.Write(path); err != nil {
		t.Fatal(err)
	}
	var presses []*Press
	for _, name := range []string{"razor_attention", "windowkv", "windowkv_average", "compresskv", "snapkv", "streaming_llm", "random"} {
		for _, r := range []float64{0.05, 0.25, 0.5, 0.75} {
			p, err := New(name, r)
			if err != nil {
				t.Fatal(err)
			}
			presses = append(presses, p)
		}
	}
	for _, r := range []float64{0.25, 0.5} {
		rz, err := NewRazor(path, r)
		if err != nil {
			t.Fatal(err)
		}
		ck, err := NewCompressKV(path, r)
		if err != nil {
			t.Fatal(err)
		}
		rz.Name, ck.Name = "razor_attention(file)", "compresskv(file)"
		presses = append(presses, rz, ck)
	}

	kv := m.NewPool(0, kvcache.BF16)
	base := kv.NewSeq()
	defer base.Release()
	obs := Observer(presses, 0, n)
	if _, err := m.ForwardObserved(base, tokens, model.NoLogits, obs); err != nil {
		t.Fatal(err)
	}
	full := base.Bytes()
	ref := decodeLogits(t, m, base, n)
	for _, p := range presses {
		before := kv.UsedBytes()
		seq, err := base.Fork(n) // copies the shared partial last blocks
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Apply(m, seq, obs); err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		k := int(float64(n) * (1 - p.Ratio))
		entries := 0
		for l := range c.Layers {
			for g := range c.KVHeads {
				entries += seq.Len(l, g)
				v := seq.View(l, g)
				for j := 1; j < v.Len(); j++ {
					if v.Pos(j) <= v.Pos(j-1) {
						t.Fatalf("%s: layer %d head %d positions out of order", p.Name, l, g)
					}
				}
			}
		}
		if entries > k*c.KVHeads*c.Layers {
			t.Errorf("%s %.2f: %d entries, over the uniform %d", p.Name, p.Ratio, entries, k*c.KVHeads*c.Layers)
		}
		switch p.Scorer.(type) {
		case SnapKV, StreamingLLM, Random:
			t.Logf("%s %.2f: logits %.6f", p.Name, p.Ratio, relDist(decodeLogits(t, m, seq, n), ref))
			seq.Release()
			continue
		case RazorAttention:
			checkRazor(t, p, base, seq, k)
		case WindowKV:
			checkWindows(t, p, seq, k)
		case CompressKV:
			checkSharedHeads(t, p, seq)
		}
		// The pool gained at most what the fork holds (heads kept whole
		// still share the base's blocks), and the fork holds at most the
		// kept share of the full cache plus one partial block per head.
		if got := kv.UsedBytes() - before; got > seq.Bytes() || got <= 0 {
			t.Errorf("%s %.2f: pool grew by %d bytes, the sequence holds %d", p.Name, p.Ratio, got, seq.Bytes())
		}
		slack := int64(c.Layers*c.KVHeads) * kv.BlockBytes()
		if got := seq.Bytes(); float64(got) > (1-p.Ratio)*float64(full)+float64(slack) {
			t.Errorf("%s %.2f: %d bytes of %d full", p.Name, p.Ratio, got, full)
		}
		logits := decodeLogits(t, m, seq, n)
		d := relDist(logits, ref)
		t.Logf("%s %.2f: %d entries of %d, %d bytes of %d, logits %.6f from the full cache's", p.Name, p.Ratio, entries, n*c.Layers*c.KVHeads, seq.Bytes(), full, d)
		if p.Ratio <= maxRatio && d > maxDist {
			t.Errorf("%s %.2f: logits %.3f (relative L2) from the full cache's", p.Name, p.Ratio, d)
		}
		seq.Release()
		if got := kv.UsedBytes(); got != before {
			t.Errorf("%s: %d bytes in use after release, want %d", p.Name, got, before)
		}
	}
}

// checkRazor checks that every head holds all n tokens (a retrieval head)
// or sinks, recent tokens and one compensation token at position 4 whose
// key is the mean of the base's keys it replaced, and that each layer
// holds Σ⌊n·(1 − ratio)⌋ entries when its budget can hold a retrieval
// head.
func checkRazor(t *testing.T, p *Press, base, seq *kvcache.Seq, k int) {
	t.Helper()
	const n = retrievalTokens
	d := seq.HeadDim()
	got, want := make([]float32, d), make([]float32, d)
	for l := range seq.Layers() {
		total, retrieval := 0, 0
		for g := range seq.KVHeads() {
			v := seq.View(l, g)
			total += v.Len()
			if v.Len() == n {
				retrieval++
				continue
			}
			if v.Pos(3) != 3 || v.Pos(4) != 4 || v.Pos(5) <= 5 || v.Pos(v.Len()-1) != n-1 {
				t.Fatalf("%s: layer %d head %d positions %d %d %d … %d", p.Name, l, g, v.Pos(3), v.Pos(4), v.Pos(5), v.Pos(v.Len()-1))
			}
			// Dropped: positions 4 .. Pos(5)−1 of the base.
			bv := base.View(l, g)
			clear(want)
			for j := 4; j < v.Pos(5); j++ {
				bv.Key(j, got)
				for c := range d {
					want[c] += got[c] / float32(v.Pos(5)-4)
				}
			}
			v.Key(4, got)
			for c := range d {
				if math.Abs(float64(got[c]-want[c])) > 0.02*(1+math.Abs(float64(want[c]))) {
					t.Fatalf("%s: layer %d head %d compensation key[%d] %v, mean of the dropped %v", p.Name, l, g, c, got[c], want[c])
				}
			}
		}
		if retrieval > 0 && total != k*seq.KVHeads() {
			t.Errorf("%s %.2f: layer %d holds %d entries, want %d", p.Name, p.Ratio, l, total, k*seq.KVHeads())
		}
		if p.Ratio <= 0.25 && retrieval == 0 {
			t.Errorf("%s %.2f: layer %d has no retrieval head", p.Name, p.Ratio, l)
		}
		if p.Ratio >= 0.5 && retrieval > 0 {
			t.Errorf("%s %.2f: layer %d keeps a retrieval head its budget cannot hold", p.Name, p.Ratio, l)
		}
	}
}

// checkWindows checks that the layers of a group keep the same tokens as
// the group's first layer, that the tokens before the observation window
// come in whole 8-token windows, and that the layers keep at most the
// uniform total.
func checkWindows(t *testing.T, p *Press, seq *kvcache.Seq, k int) {
	t.Helper()
	const n = retrievalTokens
	obs := p.Scorer.(WindowKV).Obs
	review := n - obs
	b := p.Budget.(WindowGroups)
	gs := b.group(seq.Layers())
	total := 0
	for l := range seq.Layers() {
		ref := positions(seq.View(l-l%gs, 0))
		for g := range seq.KVHeads() {
			if !equalInts(positions(seq.View(l, g)), ref) {
				t.Fatalf("%s: layer %d head %d keeps other tokens than layer %d head 0", p.Name, l, g, l-l%gs)
			}
		}
		total += len(ref)
		held := map[int]bool{}
		for _, q := range ref {
			held[q] = true
		}
		for _, q := range ref {
			for w := q / 8 * 8; q < review && w < min(review, q/8*8+8); w++ {
				if !held[w] {
					t.Fatalf("%s: layer %d keeps position %d without %d of its window", p.Name, l, q, w)
				}
			}
		}
		for q := review; q < n; q++ {
			if !held[q] {
				t.Fatalf("%s: layer %d evicted observation window token %d", p.Name, l, q)
			}
		}
	}
	if total > k*seq.Layers() {
		t.Errorf("%s %.2f: layers keep %d, over the uniform %d", p.Name, p.Ratio, total, k*seq.Layers())
	}
}

// checkSharedHeads checks that the heads of a layer keep the same tokens.
func checkSharedHeads(t *testing.T, p *Press, seq *kvcache.Seq) {
	t.Helper()
	for l := range seq.Layers() {
		ref := positions(seq.View(l, 0))
		for g := 1; g < seq.KVHeads(); g++ {
			if !equalInts(positions(seq.View(l, g)), ref) {
				t.Errorf("%s: layer %d heads keep different tokens", p.Name, l)
			}
		}
	}
}

func positions(v kvcache.View) []int {
	out := make([]int, v.Len())
	for j := range out {
		out[j] = v.Pos(j)
	}
	return out
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

// decodeLogits decodes one token on a fork of seq and returns its logits.
func decodeLogits(t *testing.T, m *model.Model, seq *kvcache.Seq, n int) []float32 {
	t.Helper()
	f, err := seq.Fork(n)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Release()
	logits, err := m.Forward(f, []int{5}, model.LastLogits)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range logits {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			t.Fatal("logits not finite")
		}
	}
	return append([]float32(nil), logits...)
}

// relDist returns ‖a − b‖ / ‖b‖.
func relDist(a, b []float32) float64 {
	var num, den float64
	for i := range b {
		d := float64(a[i] - b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(num / den)
}
