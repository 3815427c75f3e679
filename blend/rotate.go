package blend

import (
	"math"
	"sync"
)

// Rotator moves keys rotated by RoPE from one position to another: undo
// the rotation at the old position, apply the one at the new (CacheBlend's
// re-rotation; PIE's). RoPE rotates each pair of dimensions by an angle
// proportional to the position, so this is exact for RoPE models: the
// angles are the model's own (float32 products of position and frequency,
// as transformers computes them), so a moved key equals the key the model
// computes at the new position to float rounding, with no need for the
// key before rotation. Keys use Hugging Face's "rotate half" layout:
// dimension i pairs with i + d/2.
type Rotator struct {
	half     int
	cos, sin []float32 // [position][half]
}

// NewRotator returns a Rotator for positions 0 … positions−1 of a layer
// whose RoPE inverse frequencies are invFreq (model.Model.RopeInvFreq).
func NewRotator(invFreq []float32, positions int) *Rotator {
	half := len(invFreq)
	r := &Rotator{half: half, cos: make([]float32, positions*half), sin: make([]float32, positions*half)}
	for p := range positions {
		pf := float32(p)
		for i, f := range invFreq {
			a := float64(pf * f)
			r.cos[p*half+i], r.sin[p*half+i] = float32(math.Cos(a)), float32(math.Sin(a))
		}
	}
	return r
}

// Positions returns how many positions the rotator covers.
func (r *Rotator) Positions() int { return len(r.cos) / max(1, r.half) }

// Move rotates one head's key k (2·half values) from position from to
// position to, in place.
func (r *Rotator) Move(k []float32, from, to int) {
	if from == to {
		return
	}
	h := r.half
	cf, sf := r.cos[from*h:(from+1)*h], r.sin[from*h:(from+1)*h]
	ct, st := r.cos[to*h:(to+1)*h], r.sin[to*h:(to+1)*h]
	for i := range h {
		a, b := k[i], k[i+h]
		a, b = a*cf[i]+b*sf[i], b*cf[i]-a*sf[i] // undo the rotation at from
		k[i], k[i+h] = a*ct[i]-b*st[i], b*ct[i]+a*st[i]
	}
}

// rotators keeps one Rotator per RoPE table, shared by every prompt.
type rotators struct {
	mu sync.Mutex
	m  map[*float32]*Rotator
}

var shared = rotators{m: map[*float32]*Rotator{}}

// rotatorFor returns the shared Rotator of a RoPE table over positions.
func rotatorFor(invFreq []float32, positions int) *Rotator {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	key := &invFreq[0]
	if r := shared.m[key]; r != nil && r.Positions() >= positions {
		return r
	}
	r := NewRotator(invFreq, positions)
	shared.m[key] = r
	return r
}
