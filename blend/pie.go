package blend

import (
	"fmt"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// Edit moves a whole cached prompt to an edited version of it, after PIE
// (Positional Integrity Encoding, He et al., arXiv:2407.03157): the tokens
// an edit left alone keep their cached keys and values, keys re-rotated by
// however far the edit shifted them; only the tokens the edit wrote are
// computed, against everything before them. The tokens after an edit do not
// see it — PIE's one approximation, which it accepts to avoid recomputing
// them — but whatever comes after the cached prompt (the question) does.
//
// old holds oldP's tokens, in every head, at positions 0 … len−1 (a full
// prefill, say); it is read, not changed. newP's first len(oldP) segments
// are edits of oldP's, in the same order; each is compared with its old
// version by common prefix and suffix, the middle being the edit. Further
// segments of newP are new and computed. The result's cache is newP's.
func Edit(net *model.Model, pool *kvcache.Pool, old *kvcache.Seq, oldP, newP Prompt) (*Result, error) {
	if len(newP) < len(oldP) {
		return nil, fmt.Errorf("blend: edit of a %d-segment prompt into %d segments: segments may be added at the end, not removed", len(oldP), len(newP))
	}
	oldLen := len(oldP.Tokens())
	cfg := pool.Config()
	for l := range cfg.Layers {
		for g := range cfg.KVHeads {
			if old.Len(l, g) != oldLen || old.Next() != oldLen {
				return nil, fmt.Errorf("blend: edit needs the old prompt's %d tokens in every head; layer %d head %d holds %d", oldLen, l, g, old.Len(l, g))
			}
		}
	}
	tokens := newP.Tokens()
	if len(tokens) == 0 {
		return nil, fmt.Errorf("blend: empty prompt")
	}
	from := make([]int, len(tokens)) // new index → old index, or −1
	for i := range from {
		from[i] = -1
	}
	oi, ni := 0, 0
	for si, s := range newP {
		if si < len(oldP) {
			o := oldP[si].Tokens
			pre := commonPrefix(o, s.Tokens)
			suf := 0
			for suf < len(o)-pre && suf < len(s.Tokens)-pre && o[len(o)-1-suf] == s.Tokens[len(s.Tokens)-1-suf] {
				suf++
			}
			for j := range pre {
				from[ni+j] = oi + j
			}
			for j := range suf {
				from[ni+len(s.Tokens)-suf+j] = oi + len(o) - suf + j
			}
			oi += len(o)
		}
		ni += len(s.Tokens)
	}
	from[len(from)-1] = -1 // the last token is computed, for its logits
	a := &assembly{tokens: tokens, cache: pool.NewSeq(), res: &Result{Tokens: len(tokens)}}
	zero := make([]float32, cfg.HeadDim)
	k, v := make([]float32, cfg.HeadDim), make([]float32, cfg.HeadDim)
	for l := range cfg.Layers {
		rot := rotatorFor(net.RopeInvFreq(l), net.Config.MaxPositions)
		for g := range cfg.KVHeads {
			view := old.View(l, g)
			for j, o := range from {
				if o < 0 {
					a.cache.Append(l, g, zero, zero, j)
					continue
				}
				view.Key(o, k)
				view.Value(o, v)
				rot.Move(k, o, j)
				a.cache.Append(l, g, k, v, j)
			}
		}
	}
	a.cache.Advance(len(tokens))
	for j, o := range from {
		if o < 0 {
			a.fresh = append(a.fresh, j)
		} else {
			a.res.Reused++
		}
	}
	b := &Blender{Net: net}
	return b.finish(a, a.fresh, nil)
}

func commonPrefix(a, b []int) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
