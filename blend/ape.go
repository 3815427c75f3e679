package blend

import "math"

// APE reads documents encoded in parallel, after Adaptive Parallel Encoding
// (Yang et al., ICLR 2025, arXiv:2502.05431): each document is computed on
// its own after the shared prefix (the prompt's head, as every method here
// does), all documents take the same range of positions, and the tokens
// after them read the documents with an attention temperature T and a
// scale S: a document token's weight is S·exp(q·k/(T·√d)), against
// exp(q·k/√d) for every other token. Nothing is recomputed.
//
// Positions: the cache keeps tokens in prompt order (its causal mask needs
// ascending positions), so the documents' keys are rotated instead to where
// APE puts them relative to what follows: each document starts max-length
// positions before the first token after the documents, as APE's query
// sits right after the longest document. The temperature is kept in the
// keys (scaled by 1/T) and the scale in a per-token score bias of ln S, so
// the ordinary attention kernels apply both, in prefill and decoding.
// Zero fields take the defaults T = 0.9, S = 0.9 (our choice, not tuned:
// the paper picks both per task).
type APE struct {
	Temperature, Scale float64
}

// Name returns "ape".
func (APE) Name() string { return "ape" }

// Prefill reuses the documents in parallel.
func (c APE) Prefill(b *Blender, salt string, p Prompt) (*Result, error) {
	if c.Temperature <= 0 {
		c.Temperature = 0.9
	}
	if c.Scale <= 0 {
		c.Scale = 0.9
	}
	pos, docsEnd, longest := 0, 0, 0
	for _, s := range p {
		pos += len(s.Tokens)
		if s.Doc {
			docsEnd = pos
			longest = max(longest, len(s.Tokens))
		}
	}
	a, err := b.assemble(salt, p, func(int, int) int { return docsEnd - longest })
	if err != nil {
		return nil, err
	}
	cache := a.cache
	hd := cache.HeadDim()
	k, v := make([]float32, hd), make([]float32, hd)
	inv := float32(1 / c.Temperature)
	bias := float32(math.Log(c.Scale))
	for l := range cache.Layers() {
		for g := range cache.KVHeads() {
			view := cache.View(l, g)
			for _, d := range a.docs {
				for j := d.start; j < d.end; j++ {
					view.Key(j, k)
					view.Value(j, v)
					for i := range k {
						k[i] *= inv
					}
					if err := cache.Set(l, g, j, k, v); err != nil {
						a.release()
						return nil, err
					}
					if err := cache.SetBias(l, g, j, bias); err != nil {
						a.release()
						return nil, err
					}
				}
			}
		}
	}
	return b.finish(a, a.fresh, nil)
}
