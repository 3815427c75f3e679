package press

import (
	"fmt"

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

// LayerStage is a Quantizer stage that can run on one layer alone, as
// soon as a layer-by-layer prefill has computed (and evicted) it: KIVI,
// GEAR and ThinK seal or prune each (layer, KV head) on its own, so
// running StageLayer on every layer in turn is the whole stage.
type LayerStage interface {
	Quantizer
	StageLayer(m *model.Model, seq *kvcache.Seq, obs *model.Observer, ratio float64, l int) error
}

// layerStage returns the press's stage as a LayerStage, unwrapping an
// "A+B" composition, or nil when it has none or it needs every layer.
func (p *Press) layerStage() LayerStage {
	q := p.Quantizer()
	if c, ok := q.(composed); ok {
		q = c.quant
	}
	ls, _ := q.(LayerStage)
	return ls
}

// StagePerLayer reports whether the press's quantization stage, if any,
// may run on each layer alone (FinishLayer) once that layer is evicted.
// True for a press with no stage.
func (p *Press) StagePerLayer() bool {
	return p.Quantizer() == nil || p.layerStage() != nil
}

// StagedByLayer reports whether the press is Layerwise and its stage, if
// any, may run layer by layer (FinishLayer) right after ApplyLayer, so
// that a composition such as keydiff+kivi4 keeps the bound of a Layerwise
// press: its compressed layers and one full one.
func (p *Press) StagedByLayer() bool {
	return p.Layerwise() && p.StagePerLayer()
}

// FinishLayer runs the press's quantization stage on layer l alone, after
// ApplyLayer on it; Finish is FinishLayer over every layer for a press
// that StagedByLayer. obs must hold layer l's observations.
func (p *Press) FinishLayer(m *model.Model, seq *kvcache.Seq, obs *model.Observer, l int) error {
	if p.Quantizer() == nil {
		return nil
	}
	ls := p.layerStage()
	if ls == nil {
		return fmt.Errorf("press %s: its stage needs every layer: use Finish once all are computed", p.Name)
	}
	if err := ls.StageLayer(m, seq, obs, p.Ratio, l); err != nil {
		return fmt.Errorf("press %s: %w", p.Name, err)
	}
	return nil
}
