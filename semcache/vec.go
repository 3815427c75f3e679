package semcache

import "math"

// Normalize scales v to unit length in place (a zero vector stays zero) and
// returns it.
func Normalize(v []float32) []float32 {
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	if ss == 0 {
		return v
	}
	inv := 1 / math.Sqrt(ss)
	for i, x := range v {
		v[i] = float32(float64(x) * inv)
	}
	return v
}

func sqrt(x float64) float64 { return math.Sqrt(x) }
