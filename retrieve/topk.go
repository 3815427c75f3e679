package retrieve

import (
	"math"
	"slices"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/kvcache"
)

// topK reorders idx so that its first k entries are those of the highest
// score[idx[i]] (ties in any order), in expected linear time, and returns
// them. k ≥ len(idx) returns idx.
func topK(idx []int, score []float32, k int) []int {
	if k >= len(idx) {
		return idx
	}
	if k <= 0 {
		return idx[:0]
	}
	lo, hi := 0, len(idx)-1
	seed := uint32(len(idx))
	for lo < hi {
		seed = seed*1664525 + 1013904223
		p := lo + int(seed%uint32(hi-lo+1))
		idx[p], idx[hi] = idx[hi], idx[p]
		pv := score[idx[hi]]
		s := lo
		for i := lo; i < hi; i++ {
			if score[idx[i]] > pv {
				idx[i], idx[s] = idx[s], idx[i]
				s++
			}
		}
		idx[s], idx[hi] = idx[hi], idx[s]
		switch {
		case s == k-1 || s == k:
			return idx[:k]
		case s < k:
			lo = s + 1
		default:
			hi = s - 1
		}
	}
	return idx[:k]
}

// keyScores sets s[h·m + j] = scale · q_h·key(lo+j) for the group's query
// heads h and the m = hi−lo tokens [lo, hi) of kv, reading each key once
// (as stored: a cold block's keys are fetched). It returns the bytes of
// keys read.
func keyScores(s []float32, kv kvcache.View, q []float32, group, d, lo, hi int, scale float32) int64 {
	m := hi - lo
	for h := range group {
		kv.Scores(s[h*m:(h+1)*m], q[h*d:(h+1)*d], lo, hi, scale)
	}
	var b int64
	for j := lo; j < hi; j++ {
		b += TokenBytes(kv.Format(j), d) / 2
	}
	return b
}

// softVote turns each head's row of m scores into softmax weights and
// sums them over heads into vote (m floats): TokenSelect's head soft vote,
// so that a token one head needs much is not outvoted by heads that need
// it a little.
func softVote(vote, s []float32, group, m int) {
	clear(vote[:m])
	for h := range group {
		row := s[h*m : (h+1)*m]
		compute.Softmax(row)
		for j, p := range row {
			vote[j] += p
		}
	}
}

// grow returns b with length n, reallocating only when it is too short.
func grow[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b[:n]
}

// resize returns b with length n, keeping its first min(n, len(b))
// elements.
func resize[T any](b []T, n int) []T {
	if n <= cap(b) {
		return b[:n]
	}
	old := len(b)
	b = slices.Grow(b, n-old)[:n]
	clear(b[old:])
	return b
}

// bf16Down and bf16Up round x to a bfloat16 at or below (above) it, so
// bounds stored in bfloat16 stay bounds.
func bf16Down(x float32) uint16 {
	b := math.Float32bits(x)
	h := uint16(b >> 16)
	if b&0xffff != 0 && x < 0 {
		h++ // magnitude up = value down
	}
	return h
}

func bf16Up(x float32) uint16 {
	b := math.Float32bits(x)
	h := uint16(b >> 16)
	if b&0xffff != 0 && x > 0 {
		h++
	}
	return h
}

func bf16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }
