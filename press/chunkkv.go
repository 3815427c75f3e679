package press

import "sort"

// Chunks keeps whole chunks of Size consecutive tokens instead of single
// tokens, so that a kept token keeps its neighbours: a chunk's score is the
// scorer's score summed over the layer's KV heads and averaged over the
// chunk's tokens, and every head keeps the same chunks. Liu et al.,
// "ChunkKV: Semantic-Preserving KV Cache Compression for Efficient
// Long-Context LLM Inference" (arXiv:2502.00299), as kvpress's ChunkKVPress
// scores chunks (chunk 20, a short last chunk averaged over its own
// tokens).
//
// Choices where the paper and kvpress leave room: the budget is counted in
// tokens, ⌊n·(1 − ratio)⌋ as for Uniform, not in chunks: chunks are taken
// best first while they fit, and a chunk that would overflow is skipped for
// the next ones (only the short last chunk can then still fit), so a head
// keeps at most the uniform count and at most Size − 1 fewer. Heads that
// hold different counts (after a head-wise budget) choose their chunks
// each from its own scores. ChunkKV's layer-wise index reuse is not done:
// every layer chooses its own chunks.
type Chunks struct{ Size int }

func init() {
	register("chunkkv", func() (Scorer, Budget) { return KeyDiff{}, Chunks{Size: 20} })
	register("chunkkv_snapkv", func() (Scorer, Budget) { return SnapKV{Window: 64, Kernel: 5}, Chunks{Size: 20} })
}

// Select implements Budget.
func (c Chunks) Select(scores [][]float32, _, _ int, ratio float64) [][]int {
	out := make([][]int, len(scores))
	if len(scores) == 0 {
		return out
	}
	same := true
	for _, s := range scores {
		same = same && len(s) == len(scores[0])
	}
	if !same {
		for g, s := range scores {
			out[g] = c.chunks(s, ratio)
		}
		return out
	}
	sum := make([]float32, len(scores[0]))
	for _, s := range scores {
		for j, v := range s {
			sum[j] += v
		}
	}
	idx := c.chunks(sum, ratio)
	for g := range out {
		out[g] = append([]int(nil), idx...)
	}
	return out
}

// chunks returns the ascending token indices of the best whole chunks of s
// that fit in ⌊len(s)·(1 − ratio)⌋ tokens.
func (c Chunks) chunks(s []float32, ratio float64) []int {
	size := max(1, c.Size)
	n := len(s)
	budget := int(float64(n) * (1 - ratio))
	nc := (n + size - 1) / size
	mean := make([]float64, nc)
	for i := range nc {
		lo, hi := i*size, min(n, (i+1)*size)
		for _, v := range s[lo:hi] {
			mean[i] += float64(v)
		}
		mean[i] /= float64(hi - lo)
	}
	order := make([]int, nc)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return mean[order[a]] > mean[order[b]] })
	chosen := make([]bool, nc)
	used := 0
	for _, i := range order {
		if k := min(n, (i+1)*size) - i*size; used+k <= budget {
			chosen[i] = true
			used += k
		}
	}
	idx := make([]int, 0, used)
	for i, ok := range chosen {
		if ok {
			for j := i * size; j < min(n, (i+1)*size); j++ {
				idx = append(idx, j)
			}
		}
	}
	return idx
}
