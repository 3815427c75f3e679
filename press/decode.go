package press

import (
	"fmt"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// Decoding compresses a sequence while it generates: every Interval new
// tokens, once the fullest head holds more than Target tokens, it runs the
// press again at the ratio that brings every head back to Target (a press
// with a Threshold budget cuts at its own τ instead). This is
// kvpress's decoding-time wrapper; methods that need observed queries get
// whatever obs holds (nil for key-only scorers such as keydiff, knorm,
// streaming_llm).
type Decoding struct {
	Press    *Press
	Interval int
	Target   int

	since int // tokens appended since the last check
}

// Step records n new tokens and compresses when due. It reports whether
// the cache was compressed.
func (d *Decoding) Step(m *model.Model, seq *kvcache.Seq, n int, obs *model.Observer) (bool, error) {
	if d.Interval <= 0 || d.Target <= 0 {
		return false, fmt.Errorf("press: decoding compression needs a positive interval and target, got %d and %d", d.Interval, d.Target)
	}
	d.since += n
	if d.since < d.Interval {
		return false, nil
	}
	d.since = 0
	held := seq.Tokens()
	if held <= d.Target {
		return false, nil
	}
	p := *d.Press
	if _, byThreshold := p.Budget.(Threshold); !byThreshold { // a threshold has no count to aim at: it keeps its τ
		p.Ratio = 1 - (float64(d.Target)+0.5)/float64(held) // floor(held·(1−ratio)) = Target
	}
	if err := p.Compress(m, seq, obs); err != nil {
		return false, err
	}
	return true, nil
}
