package blend

import (
	"fmt"
	"math"
	"slices"
)

// Selectors of CacheBlend: how the tokens that may be recomputed are
// found before the KV deviation narrows them.
const (
	// SelectQuestion takes as candidates the reused tokens the prompt's
	// question attends to most over the reused cache (a first pass that
	// computes only the tokens outside documents), with their neighbours.
	// Only the candidates are computed from layer 0 on.
	SelectQuestion = "question"
	// SelectDeviation is the paper's: every token runs the layers below
	// CheckLayer, and the deviation there picks the candidates.
	SelectDeviation = "deviation"
)

// CacheBlend reuses every document's cached KV and recomputes the tokens
// whose KV deviates most from what full prefill would give (CacheBlend,
// Yao et al., EuroSys 2025, arXiv:2405.16444; LMCache ships it for vLLM).
//
// Recomputed tokens are chosen by gradual filtering: from CheckLayer on,
// over Narrow layers, each layer's KV deviation Σ‖k−k̃‖²+‖v−ṽ‖² of the
// tokens still computed narrows them from Widen·Ratio of the reused tokens
// to Ratio, which then run the remaining layers; tokens outside documents
// are always computed. Select says which tokens start:
//
//   - SelectQuestion (the default): a first pass computes the tokens
//     outside documents over the reused cache, and the Widen·Ratio reused
//     tokens the question (the tokens after the last document) attends to
//     most, each with Window neighbours either side, become the
//     candidates; they alone run layers 0 … CheckLayer−1. Every tail token
//     gives its attention over the first QuestionLayers layers, the last
//     token over all. Defaults: Ratio 0.15 (the paper's), Widen 1.8,
//     CheckLayer 2, Narrow 1, Window 1, QuestionLayers 1 (ours, from
//     rag.jsonl: narrowing at layer 2 lost needle answers; 27 % and a
//     one-layer question pass keep full prefill's answers at 3× its
//     speed) — 27 % of the reused tokens through layers 0–2, 15 % from
//     layer 3 on.
//   - SelectDeviation (the paper's check): every token runs the layers
//     below CheckLayer (a document's layer-0 KV depends only on its
//     tokens), and the deviation at CheckLayer picks the first Widen·Ratio.
//     Defaults: Ratio 0.15, CheckLayer 1, Widen 5, Narrow 2 — 75 % past
//     layer 1, 45 % past layer 2, 15 % from layer 3 on.
//
// Why the question: on tinychat's 8 layers the first layer over every
// token alone costs 1/8 of full prefill, and the deviation that marks
// rag_chain's cross-document "VAR A = VAR B" lines shows only from layer
// 2–3 on, so the deviation selector needs its wide early layers (2.3×
// faster than full prefill, not 3×). The question's attention finds those
// lines (and rag_needle's "magic number" lines) before any layer is
// recomputed, so only 27 % of the tokens need the early layers and the
// deviation at layer 3, where it shows, keeps the 15 %. The selector sees
// the prompt only — a server runs it as it is (docs/reuse.md).
type CacheBlend struct {
	Ratio          float64
	Select         string
	CheckLayer     int
	Widen          float64
	Narrow         int
	Window         int
	QuestionLayers int
}

// Name returns "cacheblend", or "cacheblend-deviation" with the paper's
// selector.
func (c CacheBlend) Name() string {
	if c.Select == SelectDeviation {
		return "cacheblend-deviation"
	}
	return "cacheblend"
}

func (c CacheBlend) withDefaults() (CacheBlend, error) {
	if c.Ratio <= 0 {
		c.Ratio = 0.15
	}
	switch c.Select {
	case "", SelectQuestion:
		c.Select = SelectQuestion
		if c.CheckLayer <= 0 {
			c.CheckLayer = 2
		}
		if c.Widen < 1 {
			c.Widen = 1.8
		}
		if c.Narrow <= 0 {
			c.Narrow = 1
		}
		if c.Window < 0 {
			c.Window = 0
		} else if c.Window == 0 {
			c.Window = 1
		}
		if c.QuestionLayers <= 0 {
			c.QuestionLayers = 1
		}
	case SelectDeviation:
		if c.CheckLayer <= 0 {
			c.CheckLayer = 1
		}
		if c.Widen < 1 {
			c.Widen = 5
		}
		if c.Narrow <= 0 {
			c.Narrow = 2
		}
	default:
		return c, fmt.Errorf("blend: cacheblend selector %q: want %q or %q", c.Select, SelectQuestion, SelectDeviation)
	}
	return c, nil
}

// share returns the share of reused tokens kept at layer l (l ≥ CheckLayer).
func (c CacheBlend) share(l int) float64 {
	step := float64(l-c.CheckLayer) / float64(c.Narrow)
	return math.Min(1, c.Ratio*(1+(c.Widen-1)*math.Max(0, 1-step)))
}

// Prefill reuses the documents and recomputes the deviating tokens.
func (c CacheBlend) Prefill(b *Blender, salt string, p Prompt) (*Result, error) {
	c, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	a, err := b.assemble(salt, p, nil)
	if err != nil {
		return nil, err
	}
	isFresh := freshMask(len(a.tokens), a.fresh)
	active := all(len(a.tokens))
	if c.Select == SelectQuestion {
		if active, err = c.candidates(b, a); err != nil {
			a.release()
			return nil, err
		}
	}
	a.res.Recomputed = len(active) - len(a.fresh)
	last := c.CheckLayer + c.Narrow
	sel := func(layer int, pos []int, keys, values []float32) []int {
		if layer < c.CheckLayer || layer > last {
			return all(len(pos))
		}
		var keep, reused []int
		for t, q := range pos {
			if isFresh[q] {
				keep = append(keep, t)
			} else {
				reused = append(reused, t)
			}
		}
		k := int(math.Ceil(c.share(layer) * float64(a.placed)))
		if k >= len(reused) { // nothing to narrow at this layer
			a.res.Recomputed = len(reused)
			return all(len(pos))
		}
		dev := deviation(a.cache, layer, pos, keys, values, isFresh)
		chosen := topK(reused, dev, k)
		a.res.Recomputed = len(chosen)
		keep = append(keep, chosen...)
		slices.Sort(keep)
		return keep
	}
	return b.finish(a, active, sel)
}
