package press

// StreamingLLM keeps the first Sink tokens (attention sinks) and the most
// recent ones. Xiao et al., "Efficient Streaming Language Models with
// Attention Sinks", ICLR 2024 (arXiv:2309.17453). As in kvpress, the
// tokens dropped are those right after the sinks.
type StreamingLLM struct{ Sink int }

func init() {
	register("streaming_llm", func() (Scorer, Budget) { return StreamingLLM{Sink: 4}, Uniform{} })
}

// Needs implements Scorer: nothing beyond the cache.
func (StreamingLLM) Needs() Needs { return Needs{} }

// Score gives sinks and recent tokens 2 + position, so the budget keeps
// the sinks first, then the most recent tokens.
func (p StreamingLLM) Score(s *State) [][]float32 {
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
	return out
}
