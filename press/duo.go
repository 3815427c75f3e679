package press

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
)

// DuoAttention gives a KV head StreamingLLM's scores (Sink initial
// tokens, then the most recent ones) and, with Window > 0, marks the top
// half of each layer's KV heads by NonLocalMass as retrieval heads by
// scoring all their tokens +Inf (read by the Duo budget). It is the head
// split RazorAttention (razor.go) and CompressKV build on; the registered
// "duo_attention" is DuoHeads below, which follows the paper and kvpress.
type DuoAttention struct {
	// Sink is the number of initial tokens (attention sinks) a streaming
	// head keeps; 4 by default, as in StreamingLLM and for tiny models.
	Sink int
	// Window is how many of the last queries classify heads on the fly;
	// 0 turns classification off (the head file decides).
	Window int
}

// DuoSink is the default number of sink tokens of a streaming head in
// RazorAttention's and CompressKV's head splits.
const DuoSink = 4

// DuoWindow is the default on-the-fly classification window.
const DuoWindow = 64

// Needs implements Scorer: the window's queries when classifying on the fly.
func (p DuoAttention) Needs() Needs { return Needs{Window: p.Window} }

// Score implements Scorer.
func (p DuoAttention) Score(s *State) [][]float32 {
	out := make([][]float32, s.KVHeads)
	for g := range out {
		out[g] = make([]float32, s.Tokens(g))
		for j, pos := range s.Positions[g] {
			if j < p.Sink {
				out[g][j] = float32(1 << 30)
			} else {
				out[g][j] = float32(pos)
			}
		}
	}
	if p.Window <= 0 || s.Obs == nil || s.Layer >= len(s.Obs.Queries) || len(s.Obs.Queries[s.Layer]) == 0 || s.KVHeads < 2 {
		return out
	}
	mass := p.NonLocalMass(s)
	order := make([]int, len(mass))
	for g := range order {
		order[g] = g
	}
	sort.SliceStable(order, func(a, b int) bool { return mass[order[a]] > mass[order[b]] })
	inf := float32(math.Inf(1))
	for _, g := range order[:s.KVHeads/2] {
		for j := range out[g] {
			out[g][j] = inf
		}
	}
	return out
}

// NonLocalMass returns, per KV head of the state's layer, the mean share
// of the window queries' attention (over the group's query heads and the
// window) that lands outside the Sink first tokens and the last Window
// positions: near 0 for a streaming head, larger for a retrieval head.
func (p DuoAttention) NonLocalMass(s *State) []float64 {
	return outsideMass(s, p.Sink, p.Window, p.Window)
}

// outsideMass returns, per KV head of the state's layer, the mean share of
// the last window recorded queries' attention (over the group's query
// heads and those queries) that falls outside the first sink tokens and
// the last recent positions: what the head would lose if it kept only
// those. 0 for every head when nothing was recorded.
func outsideMass(s *State, sink, recent, window int) []float64 {
	out := make([]float64, s.KVHeads)
	if s.Obs == nil || s.Layer >= len(s.Obs.Queries) || len(s.Obs.Queries[s.Layer]) == 0 {
		return out
	}
	group := s.Heads / s.KVHeads
	for g := range s.KVHeads {
		lastPos := 0
		for _, pos := range s.Positions[g] {
			lastPos = max(lastPos, pos)
		}
		rows := 0
		for hh := g * group; hh < (g+1)*group; hh++ {
			for _, row := range windowAttention(s, hh, window) {
				rows++
				for j, pr := range row {
					if j >= sink && s.Positions[g][j] <= lastPos-recent {
						out[g] += float64(pr)
					}
				}
			}
		}
		if rows > 0 {
			out[g] /= float64(rows)
		}
	}
	return out
}

// Duo is DuoAttention's budget. Retrieval heads keep all their tokens;
// streaming heads share what is left of the layer's budget of
// Σ⌊n·(1 − ratio)⌋ tokens, each keeping at least Sink + MinRecent (or all
// it holds), chosen by the scores (for DuoAttention's: sinks, then the most
// recent). When the retrieval heads alone exceed the budget, the layer
// keeps more than it: the split is respected, not the ratio.
type Duo struct {
	// Retrieval[layer][kvHead] marks retrieval heads. Nil: a head is a
	// retrieval head when the scorer scored all its tokens +Inf
	// (DuoAttention's on-the-fly mark). Heads outside it are streaming.
	Retrieval [][]bool
	Sink      int
	MinRecent int
}

// IsRetrieval reports whether head g of layer is a retrieval head, given
// its scores.
func (b Duo) IsRetrieval(layer, g int, scores []float32) bool {
	if b.Retrieval != nil {
		return layer < len(b.Retrieval) && g < len(b.Retrieval[layer]) && b.Retrieval[layer][g]
	}
	if len(scores) == 0 {
		return false
	}
	for _, v := range scores {
		if !math.IsInf(float64(v), 1) {
			return false
		}
	}
	return true
}

// Counts returns how many tokens each head of a layer keeps.
func (b Duo) Counts(scores [][]float32, layer int, ratio float64) []int {
	k := make([]int, len(scores))
	budget := 0
	var streaming []int
	for g, s := range scores {
		n := len(s)
		budget += int(float64(n) * (1 - ratio))
		if b.IsRetrieval(layer, g, s) {
			k[g] = n
			budget -= n
			continue
		}
		k[g] = min(n, b.Sink+b.MinRecent)
		budget -= k[g]
		streaming = append(streaming, g)
	}
	// Share the rest evenly among streaming heads that can take more.
	for budget > 0 {
		var open []int
		for _, g := range streaming {
			if k[g] < len(scores[g]) {
				open = append(open, g)
			}
		}
		if len(open) == 0 {
			break
		}
		each, extra := budget/len(open), budget%len(open)
		given := 0
		for i, g := range open {
			add := each
			if i < extra {
				add++
			}
			add = min(add, len(scores[g])-k[g])
			k[g] += add
			given += add
		}
		if given == 0 {
			break
		}
		budget -= given
	}
	return k
}

// Select implements Budget.
func (b Duo) Select(scores [][]float32, layer, _ int, ratio float64) [][]int {
	k := b.Counts(scores, layer, ratio)
	out := make([][]int, len(scores))
	for g, s := range scores {
		out[g] = topK(s, k[g])
	}
	return out
}

// HeadFile is the JSON head file of DuoAttention: which KV head of which
// layer is a retrieval head, and the score that decided it.
type HeadFile struct {
	Model     string      `json:"model"`
	Layers    int         `json:"layers"`
	KVHeads   int         `json:"kv_heads"`
	Retrieval [][]bool    `json:"retrieval"`
	Scores    [][]float64 `json:"scores"`
}

// Check reports whether the file is shaped layers × kv_heads.
func (h *HeadFile) Check() error {
	if h.Layers <= 0 || h.KVHeads <= 0 {
		return fmt.Errorf("head file: %d layers × %d KV heads", h.Layers, h.KVHeads)
	}
	if len(h.Retrieval) != h.Layers {
		return fmt.Errorf("head file: %d retrieval rows for %d layers", len(h.Retrieval), h.Layers)
	}
	for l, row := range h.Retrieval {
		if len(row) != h.KVHeads {
			return fmt.Errorf("head file: layer %d has %d heads, want %d", l, len(row), h.KVHeads)
		}
	}
	if h.Scores != nil {
		if len(h.Scores) != h.Layers {
			return fmt.Errorf("head file: %d score rows for %d layers", len(h.Scores), h.Layers)
		}
		for l, row := range h.Scores {
			if len(row) != h.KVHeads {
				return fmt.Errorf("head file: layer %d has %d scores, want %d", l, len(row), h.KVHeads)
			}
		}
	}
	return nil
}

// ReadHeadFile reads and checks a head file.
func ReadHeadFile(path string) (*HeadFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var h HeadFile
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, fmt.Errorf("head file %s: %w", path, err)
	}
	if err := h.Check(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &h, nil
}

// Write writes the head file as indented JSON.
func (h *HeadFile) Write(path string) error {
	if err := h.Check(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(h, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// LoadHeads reads a head file into a Duo budget with the default sinks.
func LoadHeads(path string) (Duo, error) {
	h, err := ReadHeadFile(path)
	if err != nil {
		return Duo{}, err
	}
	return Duo{Retrieval: h.Retrieval, Sink: DuoSink, MinRecent: DuoSink}, nil
}
