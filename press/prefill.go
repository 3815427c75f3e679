package press

import (
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// Prefill computes tokens into seq, recording what p needs in obs (made
// with Observer for these tokens), and compresses them with p; it returns
// the last logits when out is model.LastLogits (a slice the next forward
// pass overwrites: copy it to keep it) and the bytes the tokens' KV held
// before compression.
//
// A Layerwise press computes the prompt layer by layer
// (model.ForwardLayered) and compresses each layer as soon as every token
// has passed it, before the next layer exists: seq never holds more than
// its compressed layers and one full one — the bound kvpress's forward
// hooks give. The quantization stage of a composition (keydiff+kivi4) and
// quantization presses (kivi4, gear4, think) run on each layer right after
// its eviction (FinishLayer), within the same bound.
//
// A press that plans over every layer (CAKE, CompressKV, WindowKV:
// Planned) computes the prompt twice layer by layer, into an empty seq: the
// first pass scores each layer and lets it go, the second selects in each
// layer as it is computed — the same bound, for twice the prefill's
// compute. Only a press that merges across layers (MiniCache), or a
// planner asked to extend a seq that already holds tokens, falls back to
// computing the whole prompt and compressing it after (Compress): its peak
// is the full cache.
//
// The caches and logits are those of a whole-prompt pass followed by
// Compress: a layer's compression reads only that layer and what the pass
// recorded of it, and no later layer reads an earlier layer's cache.
func (p *Press) Prefill(m *model.Model, seq *kvcache.Seq, tokens []int, out model.Output, obs *model.Observer) ([]float32, int64, error) {
	if p.Planned() && seq.Next() == 0 {
		return p.prefillPlanned(m, seq, tokens, out, obs)
	}
	if !p.Layerwise() {
		before := seq.Bytes()
		logits, err := m.ForwardObserved(seq, tokens, out, obs)
		if err != nil {
			return nil, 0, err
		}
		full := seq.Bytes() - before
		return logits, full, p.Compress(m, seq, obs)
	}
	staged := p.StagedByLayer()
	dropObs := obs != nil && staged
	before := make([]int64, m.Config.Layers) // what seq held before tokens
	for l := range before {
		before[l] = seq.LayerBytes(l)
	}
	var full int64
	logits, err := m.ForwardLayered(seq, tokens, out, obs, func(l int) error {
		full += seq.LayerBytes(l) - before[l]
		if err := p.ApplyLayer(m, seq, obs, l); err != nil {
			return err
		}
		if staged {
			if err := p.FinishLayer(m, seq, obs, l); err != nil {
				return err
			}
		}
		if dropObs {
			obs.DropLayer(l)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	if staged {
		return logits, full, nil
	}
	return logits, full, p.Finish(m, seq, obs)
}

// prefillPlanned is Prefill for a Planned press and an empty seq: a
// scoring pass layer by layer in a scratch sequence of seq's pool, each
// layer released once scored, then a second pass into seq that selects in
// each layer as soon as it is computed.
func (p *Press) prefillPlanned(m *model.Model, seq *kvcache.Seq, tokens []int, out model.Output, obs *model.Observer) ([]float32, int64, error) {
	plan := p.NewPlan(m)
	scratch := seq.Pool().NewSeq()
	defer scratch.Release()
	var full int64
	_, err := m.ForwardLayered(scratch, tokens, model.NoLogits, obs, func(l int) error {
		full += scratch.LayerBytes(l)
		p.PlanLayer(m, scratch, obs, l, plan)
		scratch.ReleaseLayer(l)
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	scratch.Release()
	staged := p.StagePerLayer()
	logits, err := m.ForwardLayered(seq, tokens, out, nil, func(l int) error {
		if err := p.ApplyPlanned(seq, l, plan); err != nil {
			return err
		}
		if staged {
			return p.FinishLayer(m, seq, obs, l)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	if staged {
		return logits, full, nil
	}
	return logits, full, p.Finish(m, seq, obs)
}
