package press

import (
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// StorageStage is a Quantizer stage that needs more than the sequence:
// the model, what the forward pass observed, and the press's ratio.
// ThinK (arXiv:2407.21018) is one: it scores key channels with the
// window's queries and prunes the fraction the ratio names.
// Press.Compress calls CompressStorage instead of Quantize for such a
// stage, alone or after "+" in a composition.
type StorageStage interface {
	Quantizer
	CompressStorage(m *model.Model, seq *kvcache.Seq, obs *model.Observer, ratio float64) error
}

// runStage runs a press's Quantizer stage: CompressStorage for a
// StorageStage (unwrapping an "A+B" composition to reach it), Quantize
// otherwise.
func runStage(q Quantizer, m *model.Model, seq *kvcache.Seq, obs *model.Observer, ratio float64) error {
	if c, ok := q.(composed); ok {
		q = c.quant
	}
	if st, ok := q.(StorageStage); ok {
		return st.CompressStorage(m, seq, obs, ratio)
	}
	return q.Quantize(seq)
}

// stageRatio is the ratio Parse gives a quantization press used alone: a
// StorageStage keeps it (ThinK's fraction of key channels); the others
// keep every token and report 0.
func stageRatio(q quantStage, ratio float64) float64 {
	if _, ok := q.(StorageStage); ok {
		return ratio
	}
	return 0
}

// needsOf merges what an eviction scorer and its composed stage need the
// forward pass to record.
func needsOf(s Scorer, q Quantizer) Needs {
	n := s.Needs()
	if qs, ok := q.(Scorer); ok {
		m := qs.Needs()
		switch {
		case n.Window < 0 || m.Window < 0:
			n.Window = -1
		default:
			n.Window = max(n.Window, m.Window)
		}
		n.PreRope = n.PreRope || m.PreRope
		n.Hidden = n.Hidden || m.Hidden
		n.Attention = n.Attention || m.Attention
		if m.QueryStats {
			n.StatsFrom = m.StatsFrom
			if n.QueryStats {
				n.StatsFrom = min(n.StatsFrom, m.StatsFrom)
			}
			n.QueryStats = true
		}
	}
	return n
}
