package press

import (
	"fmt"
	"math"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// Applier is a Budget that runs a whole press itself, for methods whose
// outcome is not one list of kept tokens per head: merges that rewrite
// keys as well as values (Chelsea, EMS) and merges across layers
// (MiniCache). Apply checks the ratio and hands such a press to
// ApplyPress; Select is what a caller without Apply gets.
type Applier interface {
	Budget
	ApplyPress(p *Press, m *model.Model, seq *kvcache.Seq, obs *model.Observer) error
}

// kvMerge is one head's outcome of a key-and-value merge: the ascending
// indices it keeps and, per kept token, its new key and value (nil:
// unchanged; nil slices: nothing changes).
type kvMerge struct {
	keep         []int
	keys, values [][]float32
}

// applyKVMerges runs merge on every head of every layer and stores the
// outcome with Seq.KeepMergedKV, which frees the dropped tokens' blocks.
// Heads that keep every token unchanged are left alone.
func applyKVMerges(p *Press, m *model.Model, seq *kvcache.Seq, obs *model.Observer, merge func(st *State, g int) kvMerge) error {
	for l := range m.Config.Layers {
		if err := applyKVMergesLayer(p, m, seq, obs, l, merge); err != nil {
			return err
		}
	}
	return nil
}

// applyKVMergesLayer is applyKVMerges for layer l alone.
func applyKVMergesLayer(p *Press, m *model.Model, seq *kvcache.Seq, obs *model.Observer, l int, merge func(st *State, g int) kvMerge) error {
	st := newState(m, seq, l, obs)
	for g := range m.Config.KVHeads {
		r := merge(st, g)
		if len(r.keep) == st.Tokens(g) && r.keys == nil && r.values == nil {
			continue
		}
		if err := seq.KeepMergedKV(l, g, r.keep, r.keys, r.values); err != nil {
			return fmt.Errorf("press %s: layer %d head %d: %w", p.Name, l, g, err)
		}
	}
	return nil
}

// LayerApplier is an Applier that can also compress one layer on its own,
// so that a layer-by-layer prefill compresses each layer before the next
// is computed (Press.ApplyLayer).
type LayerApplier interface {
	Applier
	// PerLayer reports whether ApplyLayer may be used (a press that ranks
	// heads or sizes budgets over all layers may not).
	PerLayer() bool
	ApplyLayer(p *Press, m *model.Model, seq *kvcache.Seq, obs *model.Observer, l int) error
}

// kvUnit returns x/‖x‖ and ‖x‖ (a zero vector for a zero x).
func kvUnit(x []float32) ([]float32, float32) {
	n := norm(x)
	u := make([]float32, len(x))
	if n > 1e-12 {
		for i, v := range x {
			u[i] = v / n
		}
	}
	return u, n
}

// kvCos returns the cosine similarity of a and b (0 if either is zero).
func kvCos(a, b []float32) float32 {
	var dot, na, nb float64
	for i, x := range a {
		y := float64(b[i])
		dot += float64(x) * y
		na += float64(x) * float64(x)
		nb += y * y
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return float32(dot / math.Sqrt(na*nb))
}
