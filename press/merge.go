package press

// Merger is a Budget that merges the tokens it evicts into the ones it
// keeps instead of dropping them. Apply selects with Select, as for any
// budget, then asks Merge for the kept tokens' new values and stores them
// with Seq.KeepMerged (Press.applyLayer).
type Merger interface {
	Budget
	// Merge returns, for head g of the layer in s and the ascending
	// indices keep that head retains, the new value of each kept token
	// (nil where it is unchanged); nil when nothing changes.
	Merge(s *State, g int, keep []int) [][]float32
}

// Merging wraps a budget: the wrapped Budget chooses the tokens to keep,
// and each evicted token's value is merged into the kept token of the same
// head whose key is most cosine-similar to its own (post-RoPE keys, as
// cached; the earlier kept token among equals). Kept token k with merged
// tokens j becomes
//
//	v_k ← (v_k + Σ w_j·v_j) / (1 + Σ w_j),   w_j = max(cos(k_j, k_k), 0),
//
// and an evicted token merges only when w_j > 0 and w_j ≥ Threshold;
// the others are dropped. Keys and positions stay those of the kept token.
//
// This is merge_values: kvpress's MergingPress rule without its value-norm
// factor, under KeyDiff's eviction — not a paper's method. The papers'
// merges are their own presses: kvmerger (runs of similar consecutive keys,
// Gaussian weights, keys and values), d2o (layer budgets, EMA threshold)
// and cam (values into the following kept tokens).
//
// Cost: (evicted × kept × HeadDim) per head, on unit keys.
type Merging struct {
	Budget
	// Threshold is the least cosine similarity at which an evicted token
	// merges (0: every positively similar token merges).
	Threshold float32
}

func init() {
	// merge_values: KeyDiff eviction, evicted values merged by the
	// weighted-average rule with no threshold.
	register("merge_values", func() (Scorer, Budget) { return KeyDiff{}, Merging{Budget: Uniform{}} })
}

// targets returns, for every token j of head g, the index into keep of the
// kept token it merges into and its weight, or −1 for kept tokens and for
// evicted tokens that are dropped.
func (m Merging) targets(s *State, g int, keep []int) (into []int, w []float32) {
	n, d := s.Tokens(g), s.HeadDim
	into, w = make([]int, n), make([]float32, n)
	for j := range into {
		into[j] = -1
	}
	if len(keep) == 0 {
		return into, w
	}
	kept := make([]bool, n)
	unit := make([]float32, len(keep)*d) // the kept keys, L2-normalised
	for i, j := range keep {
		kept[j] = true
		k := s.Key(g, j)
		inv := float32(0)
		if nk := norm(k); nk > 1e-12 {
			inv = 1 / nk
		}
		for c, x := range k {
			unit[i*d+c] = x * inv
		}
	}
	for j := range n {
		if kept[j] {
			continue
		}
		k := s.Key(g, j)
		nk := norm(k)
		if nk <= 1e-12 {
			continue
		}
		best, bi := float32(0), -1
		for i := range keep {
			u := unit[i*d : (i+1)*d]
			var dot float32
			for c, x := range k {
				dot += x * u[c]
			}
			if cos := dot / nk; cos > best {
				best, bi = cos, i
			}
		}
		if bi >= 0 && best >= m.Threshold {
			into[j], w[j] = bi, min(best, 1)
		}
	}
	return into, w
}

// Merge implements Merger.
func (m Merging) Merge(s *State, g int, keep []int) [][]float32 {
	into, w := m.targets(s, g, keep)
	d := s.HeadDim
	var sums [][]float64
	var wsum []float64
	for j, i := range into {
		if i < 0 {
			continue
		}
		if sums == nil {
			sums, wsum = make([][]float64, len(keep)), make([]float64, len(keep))
		}
		if sums[i] == nil {
			sums[i] = make([]float64, d)
			for c, x := range s.Value(g, keep[i]) {
				sums[i][c] = float64(x)
			}
		}
		for c, x := range s.Value(g, j) {
			sums[i][c] += float64(w[j]) * float64(x)
		}
		wsum[i] += float64(w[j])
	}
	if sums == nil {
		return nil
	}
	out := make([][]float32, len(keep))
	for i, sum := range sums {
		if sum == nil {
			continue
		}
		out[i] = make([]float32, d)
		for c, x := range sum {
			out[i][c] = float32(x / (1 + wsum[i]))
		}
	}
	return out
}
