package press

import (
	"fmt"
	"strings"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// Quantizer is a press stage that changes how the cache stores its tokens
// rather than which it keeps — KIVI (arXiv:2402.02750) and the other
// quantization methods. It runs on the whole sequence after any eviction.
type Quantizer interface {
	Quantize(seq *kvcache.Seq) error
}

// composed is the Scorer of an "evict+quantize" press: it scores as the
// eviction method does and carries the quantization stage.
type composed struct {
	Scorer
	quant Quantizer
}

func (c composed) Quantize(seq *kvcache.Seq) error { return c.quant.Quantize(seq) }

// Needs asks for what the eviction method and the stage both need (ThinK's
// window queries after keydiff, say).
func (c composed) Needs() Needs { return needsOf(c.Scorer, c.quant) }

// Quantizer returns the press's quantization stage, or nil when it only
// evicts.
func (p *Press) Quantizer() Quantizer {
	if q, ok := p.Scorer.(Quantizer); ok {
		return q
	}
	return nil
}

// Compress runs the whole press on seq: eviction at p.Ratio (Apply), then
// quantization when the press has a Quantizer stage (kivi presses and
// compositions such as keydiff+kivi4; KIVI, arXiv:2402.02750). Callers
// that used Apply call Compress instead.
func (p *Press) Compress(m *model.Model, seq *kvcache.Seq, obs *model.Observer) error {
	if err := p.Apply(m, seq, obs); err != nil {
		return err
	}
	if q := p.Quantizer(); q != nil {
		if err := runStage(q, m, seq, obs, p.Ratio); err != nil { // stage.go
			return fmt.Errorf("press %s: %w", p.Name, err)
		}
	}
	return nil
}

// Finish runs what Compress runs after eviction — the quantization stage,
// if any — for a press whose layers ApplyLayer already compressed.
func (p *Press) Finish(m *model.Model, seq *kvcache.Seq, obs *model.Observer) error {
	if q := p.Quantizer(); q != nil {
		if err := runStage(q, m, seq, obs, p.Ratio); err != nil {
			return fmt.Errorf("press %s: %w", p.Name, err)
		}
	}
	return nil
}

// Parse returns the press a name describes at a ratio (the fraction of
// tokens evicted):
//
//   - a registered method, e.g. "keydiff", as New builds it;
//   - a quantization press, e.g. "kivi4": the ratio is ignored and the
//     press reports 0, for it keeps every token (KIVI, arXiv:2402.02750);
//     except a StorageStage such as "think", whose ratio is the fraction
//     of key channels it removes (ThinK, arXiv:2407.21018);
//   - a composition "A+B" of an eviction method A, run at the ratio, then
//     a quantization press B, e.g. "keydiff+kivi4" (evict half with KeyDiff,
//     store the rest in 4 bits with a 128-token full-precision window).
//
// The ratio must lie in [0, 1); 0 with an eviction method keeps every
// token (and "keydiff+kivi4" at 0 only quantizes).
func Parse(name string, ratio float64) (*Press, error) {
	if ratio < 0 || ratio >= 1 {
		return nil, fmt.Errorf("press %s: ratio %v outside [0, 1)", name, ratio)
	}
	parts := strings.Split(name, "+")
	if len(parts) > 2 {
		return nil, fmt.Errorf("press %q: compose at most an eviction method and a quantization, as in keydiff+kivi4", name)
	}
	if q, ok := quantizers[parts[0]]; ok {
		if len(parts) > 1 {
			return nil, fmt.Errorf("press %q: %s quantizes; put the eviction method first, as in keydiff+kivi4", name, parts[0])
		}
		return &Press{Name: name, Scorer: q, Budget: KeepAll{}, Ratio: stageRatio(q, ratio)}, nil
	}
	evict, err := New(parts[0], ratio)
	if err != nil {
		return nil, fmt.Errorf("%w; quantization: %s", err, strings.Join(QuantNames(), ", "))
	}
	if len(parts) == 1 {
		return evict, nil
	}
	q, ok := quantizers[parts[1]]
	if !ok {
		return nil, fmt.Errorf("press %q: the second method of A+B must quantize (%s), not %q", name, strings.Join(QuantNames(), ", "), parts[1])
	}
	return &Press{Name: name, Scorer: composed{Scorer: evict.Scorer, quant: q}, Budget: evict.Budget, Ratio: ratio}, nil
}
