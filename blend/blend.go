// Package blend prefills prompts that hold documents whose KV was computed
// before, elsewhere — retrieved passages that come back in other orders,
// after other passages, in other users' prompts — by reusing each
// document's cached keys and values at its new position and recomputing
// only what reuse gets wrong. It stands above model (it runs the model's
// layers, as press does) and kvcache/chunk (where documents' KV is kept).
//
// A prompt is a list of segments; document segments may come from the
// chunk cache, the others (chat template, separators, the question) are
// always computed. Each method is a Method in its own file:
//
//   - full: compute everything (the baseline);
//   - naive: concatenate the cached documents, keys re-rotated to their new
//     positions, and compute only the other segments;
//   - cacheblend: CacheBlend (arXiv:2405.16444) — recompute the tokens whose
//     KV deviates most, narrowed layer by layer from candidates the question
//     attends to (cacheblend-deviation: from every token's deviation at an
//     early layer, as in the paper);
//   - cachecraft: Cache-Craft (arXiv:2502.15734) — a recompute budget per
//     document from how far its context moved it, none for a document whose
//     context is the one it was cached in;
//   - ape: APE (arXiv:2502.05431) — documents encoded in parallel after a
//     shared prefix, read with an attention temperature and a scale;
//
// and Edit (pie.go) moves a whole cached prompt to an edited one by
// re-rotating the keys that an edit shifted (PIE, arXiv:2407.03157).
//
// Every method computes documents' KV the same way: each on its own after
// the prompt's leading non-document segments (the system prompt and the
// chat template's opening — APE's shared prefix), so that a document's
// first token is not an attention sink; the chunk key names that context.
package blend

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/kvcache/chunk"
	"github.com/kvserve/kvserve/model"
)

// Segment is a run of a prompt's tokens.
type Segment struct {
	Tokens []int
	// Doc marks a document: its KV may come from the chunk cache.
	Doc bool
}

// Prompt is a prompt as segments, in order.
type Prompt []Segment

// Tokens returns the prompt's tokens.
func (p Prompt) Tokens() []int {
	var out []int
	for _, s := range p {
		out = append(out, s.Tokens...)
	}
	return out
}

// head returns the tokens before the first document: the context every
// document is computed after.
func (p Prompt) head() []int {
	var out []int
	for _, s := range p {
		if s.Doc {
			break
		}
		out = append(out, s.Tokens...)
	}
	return out
}

// Blender prefills prompts, reusing documents' KV from a chunk cache.
type Blender struct {
	Net *model.Model
	// Chunks keeps documents' KV; its pool holds every cache Blender makes.
	Chunks *chunk.Cache
	// ModelName enters every chunk key, so that two models never share.
	ModelName string

	recomputed atomic.Int64
}

// RecomputedTokens returns the reused tokens recomputed by every prefill
// so far (each counted once, through the last layer).
func (b *Blender) RecomputedTokens() int64 { return b.recomputed.Load() }

// Result is a prefilled prompt.
type Result struct {
	// Cache holds the prompt's KV, ready for decoding; the caller releases
	// it.
	Cache *kvcache.Seq
	// Logits are the last token's.
	Logits []float32
	// Tokens is the prompt's length; Reused of them came from the chunk
	// cache (documents found there; a document just computed and put there
	// is not counted), and Recomputed of the documents' tokens were computed
	// again through the last layer.
	Tokens, Reused, Recomputed int
	// Hits and Misses count the documents found in and missing from the
	// chunk cache (a missing one is computed and put there).
	Hits, Misses int
}

// Method is a way to prefill a prompt.
type Method interface {
	// Name is the method's name on the command line.
	Name() string
	// Prefill computes p's KV under the tenant salt.
	Prefill(b *Blender, salt string, p Prompt) (*Result, error)
}

// span is a document's place in an assembled prompt.
type span struct {
	start, end int // token indices [start, end)
	// atHome is set when the document sits right after the head, the
	// context it was computed in: its KV is what full prefill computes.
	atHome bool
}

// assembly is a prompt's cache built from the chunk cache: documents'
// keys moved to their positions, placeholders elsewhere.
type assembly struct {
	cache  *kvcache.Seq
	tokens []int
	fresh  []int // indices of the tokens not from the chunk cache
	docs   []span
	placed int // document tokens placed from the chunk cache (hits and misses)
	res    *Result
}

// release frees the assembly's cache after a failure.
func (a *assembly) release() {
	if a.cache != nil {
		a.cache.Release()
	}
}

// Warm puts every document of p missing from the chunk cache there,
// computing it after p's head, and returns how many it computed.
func (b *Blender) Warm(salt string, p Prompt) (int, error) {
	head := p.head()
	n := 0
	for _, s := range p {
		if !s.Doc {
			continue
		}
		key := b.key(head, s.Tokens)
		if b.Chunks.Contains(salt, key) {
			continue
		}
		e, err := b.encode(salt, key, head, s.Tokens)
		if err != nil {
			return n, err
		}
		e.Seq.Release()
		n++
	}
	return n, nil
}

func (b *Blender) key(head, doc []int) chunk.Key {
	return chunk.NewKey(b.ModelName, b.Chunks.Pool().Config().Format, head, doc)
}

// encode computes doc after head, puts its KV — the document's tokens
// only — in the chunk cache, and returns the entry with a sequence of its
// own (the caller releases it).
func (b *Blender) encode(salt string, key chunk.Key, head, doc []int) (chunk.Entry, error) {
	pool := b.Chunks.Pool()
	seq := pool.NewSeq()
	all := append(slices.Clone(head), doc...)
	_, err := b.Net.Forward(seq, all, model.NoLogits)
	if errors.Is(err, kvcache.ErrBudget) { // make room in the shared pool, once
		b.Chunks.Reclaim(int64(len(all)) * int64(seq.Layers()*seq.KVHeads()) * pool.BlockBytes() / int64(pool.Config().BlockTokens))
		seq.Release()
		seq = pool.NewSeq()
		_, err = b.Net.Forward(seq, all, model.NoLogits)
	}
	if err != nil {
		seq.Release()
		return chunk.Entry{}, fmt.Errorf("blend: computing a document of %d tokens: %w", len(doc), err)
	}
	idx := make([]int, len(doc))
	for i := range idx {
		idx[i] = len(head) + i
	}
	for l := range seq.Layers() {
		for g := range seq.KVHeads() {
			if err := seq.Keep(l, g, idx); err != nil {
				seq.Release()
				return chunk.Entry{}, err
			}
		}
	}
	own, err := seq.Fork(seq.Next())
	if err != nil {
		seq.Release()
		return chunk.Entry{}, err
	}
	e := chunk.Entry{Seq: seq, Start: len(head), Tokens: slices.Clone(doc)}
	if err := b.Chunks.Put(salt, key, e); err != nil {
		own.Release()
		return chunk.Entry{}, err
	}
	e.Seq = own
	return e, nil
}

// assemble builds p's cache: each document's KV from the chunk cache
// (computed and put there on a miss), its keys re-rotated to the
// document's place — or to place(i, start) when place is set — and zero
// placeholders for every other token, which the caller computes.
func (b *Blender) assemble(salt string, p Prompt, place func(doc, start int) int) (*assembly, error) {
	a := &assembly{tokens: p.Tokens(), res: &Result{}}
	a.res.Tokens = len(a.tokens)
	if len(a.tokens) == 0 {
		return nil, fmt.Errorf("blend: empty prompt")
	}
	if len(a.tokens) >= b.Net.Config.MaxPositions {
		return nil, fmt.Errorf("blend: prompt of %d tokens leaves no room in the model's context of %d", len(a.tokens), b.Net.Config.MaxPositions)
	}
	head := p.head()
	pool := b.Chunks.Pool()
	a.cache = pool.NewSeq()
	cfg := pool.Config()
	// First find (or compute) every document's entry, in order; then fill
	// the cache, one layer and KV head per worker.
	type piece struct {
		pos, n int
		e      *chunk.Entry // nil: placeholders
		target int
	}
	var pieces []piece
	release := func() {
		for _, pc := range pieces {
			if pc.e != nil {
				pc.e.Seq.Release()
			}
		}
	}
	pos, docIndex := 0, 0
	for si, s := range p {
		if !s.Doc || len(s.Tokens) == 0 {
			pieces = append(pieces, piece{pos: pos, n: len(s.Tokens)})
			for i := range s.Tokens {
				a.fresh = append(a.fresh, pos+i)
			}
			pos += len(s.Tokens)
			continue
		}
		key := b.key(head, s.Tokens)
		e, ok := b.Chunks.Get(salt, key)
		if !ok {
			a.res.Misses++
			var err error
			if e, err = b.encode(salt, key, head, s.Tokens); err != nil {
				release()
				a.release()
				return nil, err
			}
		} else {
			a.res.Hits++
			a.res.Reused += len(s.Tokens)
		}
		target := pos
		if place != nil {
			target = place(docIndex, pos)
		}
		pieces = append(pieces, piece{pos: pos, n: len(s.Tokens), e: &e, target: target})
		a.docs = append(a.docs, span{start: pos, end: pos + len(s.Tokens), atHome: pos == len(head) && si > 0 && !p[si-1].Doc})
		a.placed += len(s.Tokens)
		pos += len(s.Tokens)
		docIndex++
	}
	b.Net.Pool().For(cfg.Layers*cfg.KVHeads, 1, func(_, lo, hi int) {
		zero := make([]float32, cfg.HeadDim)
		k, v := make([]float32, cfg.HeadDim), make([]float32, cfg.HeadDim)
		for job := lo; job < hi; job++ {
			l, g := job/cfg.KVHeads, job%cfg.KVHeads
			rot := rotatorFor(b.Net.RopeInvFreq(l), b.Net.Config.MaxPositions)
			for _, pc := range pieces {
				if pc.e == nil {
					for i := range pc.n {
						a.cache.Append(l, g, zero, zero, pc.pos+i)
					}
					continue
				}
				view := pc.e.Seq.View(l, g)
				for i := range pc.n {
					view.Key(i, k)
					view.Value(i, v)
					rot.Move(k, pc.e.Start+i, pc.target+i)
					a.cache.Append(l, g, k, v, pc.pos+i)
				}
			}
		}
	})
	release()
	a.cache.Advance(pos)
	if len(a.fresh) == 0 || a.fresh[len(a.fresh)-1] != len(a.tokens)-1 {
		// The last token is computed for its logits even inside a document.
		a.fresh = append(a.fresh, len(a.tokens)-1)
	}
	return a, nil
}

// finish runs the recompute pass over an assembly and fills its Result.
func (b *Blender) finish(a *assembly, active []int, sel model.Recompute) (*Result, error) {
	logits, err := b.Net.ForwardRecompute(a.cache, a.tokens, active, sel)
	if err != nil {
		a.release()
		return nil, err
	}
	a.res.Cache = a.cache
	a.res.Logits = slices.Clone(logits)
	b.recomputed.Add(int64(a.res.Recomputed))
	return a.res, nil
}

// Methods returns the methods by name.
func Methods() map[string]Method {
	return map[string]Method{
		"full":                 Full{},
		"naive":                Naive{},
		"cacheblend":           CacheBlend{},
		"cacheblend-deviation": CacheBlend{Select: SelectDeviation},
		"cachecraft":           CacheCraft{},
		"ape":                  APE{},
	}
}

// Parse returns the method named name with ratio as its recompute ratio
// (for cacheblend, cacheblend-deviation and cachecraft; 0 keeps the
// method's default).
func Parse(name string, ratio float64) (Method, error) {
	switch name {
	case "full":
		return Full{}, nil
	case "naive":
		return Naive{}, nil
	case "cacheblend":
		return CacheBlend{Ratio: ratio}, nil
	case "cacheblend-deviation":
		return CacheBlend{Ratio: ratio, Select: SelectDeviation}, nil
	case "cachecraft":
		return CacheCraft{Ratio: ratio}, nil
	case "ape":
		return APE{}, nil
	}
	return nil, fmt.Errorf("blend: unknown method %q (full, naive, cacheblend, cacheblend-deviation, cachecraft, ape)", name)
}
