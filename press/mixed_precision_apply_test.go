package press

import (
	"math"
	"testing"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// TestMixedPrecisionOnAModel prefills a tiny llama fixture into a bf16
// pool with attention statistics, compresses a fork with mikv and zipcache
// (through Parse and Compress) and checks that every token is kept at its
// position, that ⌊n·ratio⌋ tokens per head went to the low format and the
// rest to the high one, that the sequence and the pool hold exactly the
// bytes the mixed blocks take, and that the next token's logits stay
// finite and closer to the full cache's than kivi2's (every full block in
// 2 bits), the more so the fewer tokens are demoted. The fixture's random
// weights amplify quantization error (kivi8 0.009, kivi4 0.15, kivi2 0.85
// relative error of the logits), so the bounds are relative.
func TestMixedPrecisionOnAModel(t *testing.T) {
	const n = 300
	m, tokens := loadFixture(t, llamaFixture, n)
	c := m.Config
	kv := m.NewPool(0, kvcache.BF16)
	base := kv.NewSeq()
	defer base.Release()
	mikv, _ := Parse("mikv", 0.5)
	obs := Observer([]*Press{mikv}, 0, n)
	if _, err := m.ForwardObserved(base, tokens, model.NoLogits, obs); err != nil {
		t.Fatal(err)
	}
	logits := func(p *Press) (out []float32, stored, used, private int64) {
		seq, err := base.Fork(n)
		if err != nil {
			t.Fatal(err)
		}
		defer seq.Release()
		if p != nil {
			if err := p.Compress(m, seq, obs); err != nil {
				t.Fatalf("%s: %v", p.Name, err)
			}
		}
		if p != nil && p.Name != "kivi2" {
			private = checkMixed(t, p, seq, base)
		}
		stored, used = seq.Bytes(), kv.UsedBytes()
		out, err = m.Forward(seq, []int{5}, model.LastLogits)
		if err != nil {
			t.Fatalf("decoding after compression: %v", err)
		}
		return append([]float32(nil), out...), stored, used, private // out is the model's buffer
	}
	full, fullBytes, _, _ := logits(nil)
	kivi, _ := Parse("kivi2", 0)
	kivi.Scorer = KIVI{Format: kvcache.Int2} // no residual, as the mixed presses
	kiviLogits, _, _, _ := logits(kivi)
	kiviErr := relErr(kiviLogits, full)
	for _, name := range []string{"mikv", "zipcache"} {
		prev := 0.0
		for _, ratio := range []float64{0.25, 0.5, 0.75} {
			p, err := Parse(name, ratio)
			if err != nil {
				t.Fatal(err)
			}
			out, stored, used, private := logits(p)
			e := relErr(out, full)
			t.Logf("%s %.2f: %d bytes of %d (%.3f), pool %d; logits rel. error %.3g (kivi2 %.3g)", name, ratio, stored, fullBytes, float64(stored)/float64(fullBytes), used, e, kiviErr)
			if math.IsNaN(e) || e <= prev || (ratio <= 0.5 && e >= kiviErr) {
				t.Errorf("%s %.2f: logits rel. error %.4f (at the lower ratio %.4f; kivi2: %.4f)", name, ratio, e, prev, kiviErr)
			}
			prev = e
			// The fork holds its own copy of each head's partial last block.
			if own := kv.BlockBytes() * int64(c.Layers*c.KVHeads); used != base.Bytes()+private+own {
				t.Errorf("%s %.2f: pool holds %d, want the base's %d + the fork's sealed %d + %d", name, ratio, used, base.Bytes(), private, own)
			}
		}
	}
}

// checkMixed checks one compressed fork head by head: every token and
// position kept, ⌊n·ratio⌋ tokens in the low format, the others in the
// high one (the pool's format after the last full block), and the exact
// bytes. It returns the bytes of the blocks the fork sealed (the others
// it still shares with base).
func checkMixed(t *testing.T, p *Press, seq, base *kvcache.Seq) (private int64) {
	t.Helper()
	b := p.Budget.(MixedPrecision)
	cfg := seq.Pool().Config()
	hi := b.High
	if !hi.Quantized() {
		hi = cfg.Format
	}
	bt := cfg.BlockTokens
	var want int64
	for l := range seq.Layers() {
		for g := range seq.KVHeads() {
			v, bv := seq.View(l, g), base.View(l, g)
			n := v.Len()
			if n != bv.Len() {
				t.Fatalf("%s: layer %d head %d holds %d tokens of %d", p.Name, l, g, n, bv.Len())
			}
			sealable := seq.Sealable(l, g, b.Residual)
			low := 0
			for j := range n {
				if v.Pos(j) != bv.Pos(j) {
					t.Fatalf("%s: token %d at position %d, was %d", p.Name, j, v.Pos(j), bv.Pos(j))
				}
				f := v.Format(j)
				switch {
				case f == b.Low && j < sealable:
					low++
				case f == hi && j < sealable, f == cfg.Format && j >= sealable:
				default:
					t.Fatalf("%s: layer %d head %d token %d stored in %s", p.Name, l, g, j, f)
				}
			}
			if wantLow := int(float64(n) * p.Ratio); low != wantLow {
				t.Errorf("%s %.2f: layer %d head %d has %d low-precision tokens, want %d", p.Name, p.Ratio, l, g, low, wantLow)
			}
			for bi := range (n + bt - 1) / bt {
				if (bi+1)*bt > sealable {
					want += seq.Pool().BlockBytes()
					continue
				}
				nh := 0
				for j := bi * bt; j < (bi+1)*bt; j++ {
					if v.Format(j) == hi {
						nh++
					}
				}
				bytes := kvcache.MixedBlockBytes(cfg, hi, b.Low, nh)
				want += bytes
				if nh < bt || hi.Quantized() {
					private += bytes
				}
			}
		}
	}
	if got := seq.Bytes(); got != want || got >= base.Bytes() {
		t.Errorf("%s %.2f: %d bytes stored, want %d (full cache %d)", p.Name, p.Ratio, got, want, base.Bytes())
	}
	return private
}

// relErr returns ‖a − b‖ / ‖b‖.
func relErr(a, b []float32) float64 {
	var num, den float64
	for i := range b {
		d := float64(a[i] - b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(num / den)
}
