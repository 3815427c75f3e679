package model

import (
	"math"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/kvcache"
)

// Retriever chooses, at each decode step, which cached tokens of each
// layer × KV head the step's attention reads (retrieval: Quest,
// TokenSelect, SentenceKV …). Passes of more than one token (prefill)
// attend to every cached token; a decode step attends to the selection
// only. One Retriever serves one sequence.
type Retriever interface {
	// Prepare is called once at the start of every pass over the
	// sequence, before any layer, with the tokens about to be appended at
	// cache.Next(): a retriever indexes the tokens cached since its last
	// call and may move their keys and values to a slower tier.
	Prepare(cache *kvcache.Seq, tokens []int) error
	// Select returns the ascending indices into kv (layer's KV head) of
	// the tokens that the decode step's query heads of that group, q
	// (group rows of HeadDim floats, rotated), read at position pos; nil
	// reads them all. It is called concurrently for different heads; the
	// slice is read before the next call for the same head.
	Select(layer, head int, kv kvcache.View, q []float32, pos int) []int
}

// ForwardRetrieve is Forward whose decode steps (one token) attend only to
// the tokens r selects; r sees every pass (see Retriever). A nil r is
// Forward.
func (m *Model) ForwardRetrieve(cache *kvcache.Seq, tokens []int, out Output, r Retriever) ([]float32, error) {
	if r != nil {
		if err := r.Prepare(cache, tokens); err != nil {
			return nil, err
		}
	}
	return m.forwardWith(cache, tokens, out, nil, r)
}

// prepareSteps calls the retrievers of a batch's steps.
func prepareSteps(steps []Step) error {
	for _, s := range steps {
		if s.Retrieve != nil {
			if err := s.Retrieve.Prepare(s.Cache, s.Tokens); err != nil {
				return err
			}
		}
	}
	return nil
}

// retrieverOf returns the retriever a step's attention goes through: only
// decode steps retrieve.
func retrieverOf(s *Step) Retriever {
	if len(s.Tokens) != 1 {
		return nil
	}
	return s.Retrieve
}

// retrievedScratch is one worker's buffers for attention over gathered
// tokens.
type retrievedScratch struct {
	k, v, s []float32
}

// attendRetrieved computes the decode token t's attention for the query
// heads of KV head g over the tokens r selects; it reports false when r
// selects them all (the caller then attends as usual).
func (j *attnJob) attendRetrieved(worker int, r Retriever, kv kvcache.View, g, t int) bool {
	m := j.m
	c := m.Config
	ws := &m.ws
	hd, qd := c.HeadDim, c.Heads*c.HeadDim
	group := c.Heads / c.KVHeads
	q := ws.q[t*qd+g*group*hd : t*qd+(g+1)*group*hd]
	idx := r.Select(j.li, g, kv, q, ws.pos[t])
	if idx == nil {
		return false
	}
	n := len(idx)
	sc := &j.gathered[worker]
	sc.k = grow(sc.k, n*hd)
	sc.v = grow(sc.v, n*hd)
	sc.s = grow(sc.s, n)
	for i, ti := range idx {
		kv.Key(ti, sc.k[i*hd:(i+1)*hd])
		kv.Value(ti, sc.v[i*hd:(i+1)*hd])
	}
	for gh := range group {
		hh := g*group + gh
		s := sc.s[:n]
		compute.Scores(s, q[gh*hd:(gh+1)*hd], sc.k, n, c.AttnScale)
		for i, ti := range idx {
			s[i] += kv.Bias(ti)
		}
		if sc := c.AttnSoftcap; sc > 0 {
			for i, v := range s {
				s[i] = sc * float32(math.Tanh(float64(v/sc)))
			}
		}
		compute.Softmax(s)
		dst := ws.att[t*qd+hh*hd : t*qd+(hh+1)*hd]
		clear(dst)
		compute.MixRows(dst, s, sc.v, n)
	}
	return true
}
