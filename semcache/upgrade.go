package semcache

import (
	"context"
	"fmt"
)

// Procrustes is a linear map from one embedder's space to another's with
// orthonormal rows (an orthogonal Procrustes solution): W minimizes
// ‖X·W − Y‖ over paired rows X (old) and Y (new) subject to W·Wᵀ = I when
// the old space is the smaller, Wᵀ·W = I otherwise.
type Procrustes struct {
	w        []float64 // from × to, row-major
	from, to int
}

// FitProcrustes fits the map from paired vectors: old[i] and new[i] embed
// the same text. W = U·Vᵀ for the thin SVD U·Σ·Vᵀ of Xᵀ·Y.
func FitProcrustes(old, new [][]float32) (*Procrustes, error) {
	if len(old) == 0 || len(old) != len(new) {
		return nil, fmt.Errorf("semcache: Procrustes needs as many old as new vectors, at least one (got %d and %d)", len(old), len(new))
	}
	from, to := len(old[0]), len(new[0])
	for i := range old {
		if len(old[i]) != from || len(new[i]) != to {
			return nil, fmt.Errorf("semcache: Procrustes: vector %d has another length", i)
		}
	}
	m := make([]float64, from*to) // Xᵀ·Y
	for i := range old {
		for a, x := range old[i] {
			if x == 0 {
				continue
			}
			row := m[a*to : (a+1)*to]
			for b, y := range new[i] {
				row[b] += float64(x) * float64(y)
			}
		}
	}
	w := polar(m, from, to)
	return &Procrustes{w: w, from: from, to: to}, nil
}

// Apply maps an old vector into the new space, at unit length.
func (p *Procrustes) Apply(old []float32) []float32 {
	out := make([]float32, p.to)
	for j := range p.to {
		var s float64
		for i, v := range old {
			s += float64(v) * p.w[i*p.to+j]
		}
		out[j] = float32(s)
	}
	return Normalize(out)
}

// Upgrade moves the semantic tier to another embedder (spec names it, as
// Config.Embedder) without re-embedding every entry: the stored texts of
// up to sample entries (spread over all) are embedded by the new embedder,
// a Procrustes map is fitted from their old and new vectors, and every
// other entry's old vector is mapped. Entries stay answerable throughout;
// lookups wait while the indexes are rebuilt. It returns the number of
// entries re-embedded.
func (c *Cache) Upgrade(ctx context.Context, emb Embedder, spec string, sample int) (int, error) {
	c.mu.Lock()
	var all []*entry
	for _, b := range c.buckets {
		for el := b.lru.Front(); el != nil; el = el.Next() {
			if e := el.Value.(*entry); e.vec != nil {
				all = append(all, e)
			}
		}
	}
	c.mu.Unlock()
	if len(all) == 0 {
		c.mu.Lock()
		c.emb, c.cfg.Embedder = emb, spec
		c.cfg.Semantic = c.Calibrated()
		c.mu.Unlock()
		return 0, nil
	}
	sample = max(1, min(sample, len(all)))
	step := float64(len(all)) / float64(sample)
	var picked []*entry
	texts := make([]string, 0, sample)
	for i := range sample {
		e := all[int(float64(i)*step)]
		picked = append(picked, e)
		texts = append(texts, e.text)
	}
	newVecs, err := emb.Embed(ctx, texts)
	if err != nil {
		return 0, fmt.Errorf("semcache: upgrade to %s: %w", emb.Name(), err)
	}
	oldVecs := make([][]float32, len(picked))
	for i, e := range picked {
		oldVecs[i] = e.vec
		newVecs[i] = Normalize(newVecs[i])
	}
	p, err := FitProcrustes(oldVecs, newVecs)
	if err != nil {
		return 0, err
	}
	fresh := map[*entry][]float32{}
	for i, e := range picked {
		fresh[e] = newVecs[i]
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range all {
		if e.elem == nil || len(e.vec) != p.from { // removed meanwhile
			continue
		}
		if v, ok := fresh[e]; ok {
			e.vec = v
		} else {
			e.vec = p.Apply(e.vec)
		}
	}
	for key, pt := range c.parts {
		np := &part{key: key, idx: NewIndex(p.to, 16, 100)}
		for _, e := range pt.nodes {
			if e.part == pt && e.elem != nil {
				e.part, e.node = np, np.idx.Add(e.vec)
				np.nodes = append(np.nodes, e)
			}
		}
		c.parts[key] = np
	}
	for name, ct := range c.centroids {
		v := make([]float32, len(ct.sum))
		for i, x := range ct.sum {
			v[i] = float32(x)
		}
		c.centroids[name] = &centroid{sum: toF64(p.Apply(v)), n: ct.n}
	}
	c.emb, c.cfg.Embedder = emb, spec
	c.cfg.Semantic = c.Calibrated()
	return len(picked), nil
}

func toF64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}
