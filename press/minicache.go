package press

import (
	"fmt"
	"math"
	"sort"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// MiniCache merges the KV caches of adjacent layers in the deeper half of
// the model: Liu et al., "MiniCache: KV Cache Compression in Depth
// Dimension for Large Language Models", NeurIPS 2024 (arXiv:2405.14366).
// Layers pair up from ⌊Start·L⌋ on, (l, l+1), (l+2, l+3), …; for every KV
// head and token of a pair, the two layers' keys (and, separately, values)
// are split into magnitude and direction, the directions are interpolated
// by SLERP,
//
//	e = sin((1−t)Ω)/sin Ω · u_l + sin(tΩ)/sin Ω · u_{l+1},   cos Ω = u_l·u_{l+1},
//
// and each layer reads e times its own norm. Pairs too unlike stay unmerged
// (MiniCache's token retention): both layers keep their own vectors.
//
// Ratio: the fraction of merge-eligible tokens merged — every token of
// every KV head of the deeper layer of a pair is eligible, the others
// never change. Per head, the ⌊ratio·n⌋ tokens with the smallest angular
// distance max(Ω_key, Ω_value)/π are merged and the rest retained, so the
// retention threshold is the distance quantile the ratio sets (the paper
// sets it between the head's least and largest distance with a γ; the
// ratio is the knob here). A token with a zero key or value, or a pair of
// heads that hold different tokens, is never merged. Every head keeps all
// its tokens: Len does not change.
//
// Storage (kvcache.Seq.ShareHead): layer l's blocks hold e·‖x_l‖ (plain
// rows: layer l reads as before), and layer l+1's head drops its own
// blocks, references layer l's and keeps per token ‖x_{l+1}‖/‖x_l‖ for
// keys and values (two float32) plus its own key and value for retained
// tokens. A merged token of layer l+1 thus costs 8 bytes instead of
// 2·HeadDim values and a position, counted by Pool.UsedBytes and
// Seq.StoredBytes. Keys are post-RoPE: both layers rotate a token by the
// same position, so the interpolated direction is rotated alike and
// positions are shared as they are.
//
// Choices (ours): t = 0.6 leans toward the deeper layer, as we read the
// paper's default; retention is decided jointly for key and value (one
// token is shared or not); tokens appended after the merge are not merged
// (run the press again: heads already sharing are skipped).
type MiniCache struct {
	// T is the SLERP interpolation weight of the deeper layer (0.6).
	T float64
	// Start is the fraction of layers before the first merged pair (0.5).
	Start float64
}

func init() {
	register("minicache", func() (Scorer, Budget) { mc := MiniCache{T: 0.6, Start: 0.5}; return mc, mc })
}

// Needs implements Scorer: the cache only.
func (MiniCache) Needs() Needs { return Needs{} }

// Score implements Scorer: every token equal (MiniCache evicts nothing).
func (MiniCache) Score(s *State) [][]float32 {
	out := make([][]float32, s.KVHeads)
	for g := range out {
		out[g] = make([]float32, s.Tokens(g))
	}
	return out
}

// Select implements Budget: every token kept.
func (MiniCache) Select(scores [][]float32, _, _ int, _ float64) [][]int {
	return KeepAll{}.Select(scores, 0, 0, 0)
}

// Pairs returns the (shallower, deeper) layer pairs merged in a model of
// the given depth.
func (mc MiniCache) Pairs(layers int) [][2]int {
	var out [][2]int
	for l := int(mc.Start * float64(layers)); l+1 < layers; l += 2 {
		out = append(out, [2]int{l, l + 1})
	}
	return out
}

// ApplyPress implements Applier.
func (mc MiniCache) ApplyPress(p *Press, m *model.Model, seq *kvcache.Seq, _ *model.Observer) error {
	for _, pr := range mc.Pairs(m.Config.Layers) {
		for g := range m.Config.KVHeads {
			if err := mc.mergeHead(seq, pr[0], pr[1], g, p.Ratio); err != nil {
				return fmt.Errorf("press %s: layers %d and %d head %d: %w", p.Name, pr[0], pr[1], g, err)
			}
		}
	}
	return nil
}

// mergeHead merges head g of layers a < b.
func (mc MiniCache) mergeHead(seq *kvcache.Seq, a, b, g int, ratio float64) error {
	if _, _, ok := seq.SharesFrom(a, g); ok {
		return nil
	}
	if _, _, ok := seq.SharesFrom(b, g); ok {
		return nil
	}
	va, vb := seq.View(a, g), seq.View(b, g)
	n, d := va.Len(), seq.HeadDim()
	if vb.Len() != n {
		return nil
	}
	for j := range n {
		if va.Pos(j) != vb.Pos(j) {
			return nil
		}
	}
	ka, kb, xa, xb := mcRows(va, n, d, true), mcRows(vb, n, d, true), mcRows(va, n, d, false), mcRows(vb, n, d, false)
	merge := mc.chooseMerged(ka, kb, xa, xb, n, d, ratio)
	if len(merge) == 0 {
		return nil
	}
	all := make([]int, n)
	for j := range all {
		all[j] = j
	}
	keys, vals := make([][]float32, n), make([][]float32, n)
	ks, vs := make([]float32, n), make([]float32, n)
	var kept []kvcache.Retained
	for j := range n {
		row := func(x []float32) []float32 { return x[j*d : (j+1)*d] }
		if !merge[j] {
			kept = append(kept, kvcache.Retained{Index: j, Key: row(kb), Value: row(xb)})
			continue
		}
		keys[j], ks[j] = slerpShared(row(ka), row(kb), mc.T)
		vals[j], vs[j] = slerpShared(row(xa), row(xb), mc.T)
	}
	if err := seq.KeepMergedKV(a, g, all, keys, vals); err != nil {
		return err
	}
	return seq.ShareHead(a, b, g, ks, vs, kept)
}

// mcRows widens a view's keys (or values) token-major.
func mcRows(v kvcache.View, n, d int, keys bool) []float32 {
	out := make([]float32, n*d)
	for j := range n {
		if keys {
			v.Key(j, out[j*d:(j+1)*d])
		} else {
			v.Value(j, out[j*d:(j+1)*d])
		}
	}
	return out
}

// chooseMerged marks the ⌊ratio·n⌋ eligible tokens with the smallest
// angular distance between the layers (the larger of the key's and the
// value's), the earlier token first among equals.
func (MiniCache) chooseMerged(ka, kb, xa, xb []float32, n, d int, ratio float64) []bool {
	dist := make([]float64, n)
	var order []int
	for j := range n {
		dk, okk := mcAngle(ka[j*d:(j+1)*d], kb[j*d:(j+1)*d])
		dv, okv := mcAngle(xa[j*d:(j+1)*d], xb[j*d:(j+1)*d])
		if okk && okv {
			dist[j] = max(dk, dv) / math.Pi
			order = append(order, j)
		}
	}
	sort.SliceStable(order, func(x, y int) bool { return dist[order[x]] < dist[order[y]] })
	merge := make([]bool, n)
	k := min(len(order), int(ratio*float64(n)))
	for _, j := range order[:k] {
		merge[j] = true
	}
	if k == 0 {
		return nil
	}
	return merge
}

// mcAngle returns the angle between a and b, false if either is zero.
func mcAngle(a, b []float32) (float64, bool) {
	na, nb := float64(norm(a)), float64(norm(b))
	if na < 1e-12 || nb < 1e-12 {
		return 0, false
	}
	var dot float64
	for i, x := range a {
		dot += float64(x) * float64(b[i])
	}
	return math.Acos(max(-1, min(1, dot/(na*nb)))), true
}

// slerpShared returns the shallower layer's stored row e·‖a‖ and the
// deeper layer's scale ‖b‖/‖a‖, e the SLERP of the two directions at t
// (linear interpolation, renormalised, when they are almost parallel).
func slerpShared(a, b []float32, t float64) ([]float32, float32) {
	na, nb := float64(norm(a)), float64(norm(b))
	cos := 0.0
	for i, x := range a {
		cos += float64(x) * float64(b[i]) / (na * nb)
	}
	cos = max(-1, min(1, cos))
	om := math.Acos(cos)
	wa, wb := 1-t, t
	if s := math.Sin(om); s > 1e-6 {
		wa, wb = math.Sin((1-t)*om)/s, math.Sin(t*om)/s
	}
	e := make([]float64, len(a))
	var ne float64
	for i := range e {
		e[i] = wa*float64(a[i])/na + wb*float64(b[i])/nb
		ne += e[i] * e[i]
	}
	ne = math.Sqrt(ne)
	if ne < 1e-12 { // opposite directions at t = ½: keep the shallower one
		for i := range e {
			e[i], ne = float64(a[i])/na, 1
		}
	}
	out := make([]float32, len(a))
	for i, x := range e {
		out[i] = float32(x / ne * na)
	}
	return out, float32(nb / na)
}
