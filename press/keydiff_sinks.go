package press

// Protect wraps a scorer so that the first Sink tokens (attention sinks)
// and the last Recent tokens of every head rank above all the others,
// sinks first, then the most recent; the inner scorer orders the rest.
// It composes StreamingLLM's sinks and window (Xiao et al., "Efficient
// Streaming Language Models with Attention Sinks", ICLR 2024,
// arXiv:2309.17453) with any scorer.
//
// keydiff_sinks is KeyDiff (Park et al., arXiv:2504.15364) under this
// wrapper with 4 sinks and a 64-token recent window, our own hybrid (no
// paper defines it): KeyDiff alone can drop the sinks, whose keys often
// point along the mean key direction, and the last tokens before the
// question, which hold the context's end. The window size is our choice.
//
// The protected scores stay finite (the inner range shifted up), so the
// wrapper composes with budgets that add scores, such as ChunkKV's, and
// with AdaKV's cross-head top-k.
type Protect struct {
	Scorer
	Sink, Recent int
}

func init() {
	register("keydiff_sinks", func() (Scorer, Budget) {
		return Protect{Scorer: KeyDiff{}, Sink: 4, Recent: 64}, Uniform{}
	})
}

// Score implements Scorer.
func (p Protect) Score(s *State) [][]float32 {
	out := p.Scorer.Score(s)
	lo, hi := lowHigh(out)
	for _, sc := range out {
		protect(sc, p.Sink, p.Recent, lo, hi)
	}
	return out
}

// protect raises, in place, sc's first sink scores above everything and
// its last recent scores above every unprotected one, later tokens higher,
// given the lowest and highest score of the whole layer (so that a split
// of the budget across heads keeps them too).
func protect(sc []float32, sink, recent int, lo, hi float32) {
	n := len(sc)
	if n == 0 {
		return
	}
	span := hi - lo + 1
	sink = min(sink, n)
	recent = min(recent, n-sink)
	for j := n - recent; j < n; j++ {
		sc[j] = hi + span*(1+float32(j-(n-recent)+1)/float32(recent))
	}
	for j := range sink {
		sc[j] = hi + 3*span
	}
}
