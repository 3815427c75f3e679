package press

import (
	"math"

	"github.com/kvserve/kvserve/compute"
)

// GUIKV adds a hidden-state saliency to SnapKV's window attention: with
// r_j = ‖x_j‖₂ the L2 norm of token j's residual-stream hidden state (the
// layer's input), standardised over the tokens before the window,
// S = softmax(Tau·(r − mean)/(std + ε)), and token j scores
// A_j + Alpha·S_j, where A_j is SnapKV's score (attention of the last
// Window queries, averaged over the window and the GQA group, pooled with
// width Kernel); the window itself is always kept. This is the spatial
// saliency guidance of Huang et al., "GUI-KV: Efficient GUI Agents via KV
// Cache with Spatio-Temporal Awareness" (arXiv:2510.00536); its temporal
// redundancy scoring (projecting earlier screenshots' keys onto the
// current one's key subspace) has no counterpart in text and is left out.
//
// Choices: the paper scores only visual tokens of the current screenshot;
// here every token before the window is scored. Alpha = 1 and Tau = 1 are
// ours (both sums are then 1, so the two signals weigh alike).
//
// It needs every token's hidden state, and Observer records hidden states
// only from Observer.From on, so it asks for all tokens (Window −1), which
// also records every query; a HiddenFrom on Observer separate from From
// would save that memory.
type GUIKV struct {
	Window, Kernel int
	Alpha, Tau     float64
}

func init() {
	register("guikv", func() (Scorer, Budget) {
		return GUIKV{Window: 64, Kernel: 5, Alpha: 1, Tau: 1}, Uniform{}
	})
}

// Needs implements Scorer: every query and hidden state of the prompt.
func (GUIKV) Needs() Needs { return Needs{Window: -1, Hidden: true} }

// Score implements Scorer.
func (p GUIKV) Score(s *State) [][]float32 {
	att := SnapKV{Window: p.Window, Kernel: p.Kernel}.Score(s)
	win := min(p.Window, len(s.Obs.Queries[s.Layer])/(s.Heads*s.HeadDim))
	for g, sc := range att {
		n := s.Tokens(g)
		if n <= win {
			continue
		}
		sal := p.saliency(s, g, n-win)
		if sal == nil {
			continue
		}
		for j, v := range sal {
			sc[j] += float32(p.Alpha) * v
		}
		padMax(sc, n-win)
	}
	return padLayer(att)
}

// saliency returns S over head g's first pre tokens, or nil when their
// hidden states were not recorded.
func (p GUIKV) saliency(s *State, g, pre int) []float32 {
	hid := s.Obs.HiddenStates[s.Layer]
	from := s.Obs.From
	h := len(hid) / max(1, len(s.Obs.Queries[s.Layer])/(s.Heads*s.HeadDim))
	if h == 0 {
		return nil
	}
	r := make([]float64, pre)
	var mean float64
	for j := range pre {
		row := s.Positions[g][j] - from
		if row < 0 || (row+1)*h > len(hid) {
			return nil
		}
		r[j] = float64(norm(hid[row*h : (row+1)*h]))
		mean += r[j] / float64(pre)
	}
	var ss float64
	for _, v := range r {
		ss += (v - mean) * (v - mean)
	}
	std := 0.0
	if pre > 1 {
		std = math.Sqrt(ss / float64(pre-1))
	}
	out := make([]float32, pre)
	for j, v := range r {
		out[j] = float32(p.Tau * (v - mean) / (std + 1e-6))
	}
	compute.Softmax(out)
	return out
}
