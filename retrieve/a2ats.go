package retrieve

import (
	"github.com/kvserve/kvserve/kvcache"
)

// a2ats scores tokens with vector-quantized keys, after A²ATS (He et al.,
// "A²ATS: Retrieval-Based KV Cache Reduction via Windowed Rotary Position
// Embedding and Query-Aware Vector Quantization", arXiv:2502.12665): each
// head's keys are product-quantized — HeadDim/4 subspaces of 4 channels,
// each a pair of RoPE's rotating pairs (c, c+1, c+d/2, c+1+d/2) so a
// rotation stays inside its subspace, 16 centroids per subspace learned by
// k-means on the prompt's keys — and a token keeps a 4-bit code per
// subspace (HeadDim/8 bytes; 1/32 of a bf16 key and value). A query's
// score for a token is a sum of table look-ups; the softmax of the
// approximate scores, summed over the group, picks the tokens whose full
// keys and values are then read.
type a2ats struct {
	sh    *shape
	cent  []float32 // [subspace][centroid][4]
	codes []byte    // [token][subspace/2]: two 4-bit codes a byte
	n     int       // tokens coded
	lut   []float32 // [head][subspace][centroid]
	lut2  []float32 // [head][code byte][256]: two subspaces' sums
	s     []float32
	vote  []float32
	cands []int
	key   []float32
}

// Product quantization's shape.
const (
	a2atsSub       = 4  // channels per subspace
	a2atsCentroids = 16 // centroids per subspace (4-bit codes)
	a2atsMinTrain  = 64 // tokens needed to learn the codebook
	a2atsIters     = 8  // k-means iterations
	a2atsMaxTrain  = 1024
)

func newA2ATS(sh *shape) selector { return &a2ats{sh: sh} }

func (a *a2ats) subspaces() int { return a.sh.headDim / a2atsSub }

// dims returns the 4 channels of subspace m.
func (a *a2ats) dims(m int) [a2atsSub]int {
	half := a.sh.headDim / 2
	return [a2atsSub]int{2 * m, 2*m + 1, half + 2*m, half + 2*m + 1}
}

func (a *a2ats) resident() int64 { return int64(len(a.codes) + 4*len(a.cent)) }

func (a *a2ats) extend(kv kvcache.View, _ func(int) int, n int) {
	M := a.subspaces()
	stride := (M + 1) / 2
	if n < a.n {
		a.n = n
		a.codes = a.codes[:n*stride]
	}
	if a.cent == nil {
		if n < a2atsMinTrain || a.sh.headDim%(2*a2atsSub) != 0 {
			return
		}
		a.train(kv, n)
	}
	a.key = grow(a.key, a.sh.headDim)
	for j := a.n; j < n; j++ {
		kv.Key(j, a.key)
		a.codes = append(a.codes, make([]byte, stride)...)
		row := a.codes[j*stride : (j+1)*stride]
		for m := range M {
			c := a.nearest(m, a.key)
			row[m/2] |= byte(c) << (4 * (m % 2))
		}
	}
	a.n = n
}

// nearest returns the centroid of subspace m closest to key's channels.
func (a *a2ats) nearest(m int, key []float32) int {
	dm := a.dims(m)
	best, bd := 0, float32(0)
	for c := range a2atsCentroids {
		ct := a.cent[(m*a2atsCentroids+c)*a2atsSub:]
		var s float32
		for i, ch := range dm {
			x := key[ch] - ct[i]
			s += x * x
		}
		if c == 0 || s < bd {
			best, bd = c, s
		}
	}
	return best
}

// train learns each subspace's centroids by k-means over up to
// a2atsMaxTrain keys spread across the first n tokens.
func (a *a2ats) train(kv kvcache.View, n int) {
	d, M := a.sh.headDim, a.subspaces()
	t := min(n, a2atsMaxTrain)
	keys := make([]float32, t*d)
	for i := range t {
		kv.Key(i*n/t, keys[i*d:(i+1)*d])
	}
	a.cent = make([]float32, M*a2atsCentroids*a2atsSub)
	assign := make([]int, t)
	sum := make([]float32, a2atsCentroids*a2atsSub)
	cnt := make([]int, a2atsCentroids)
	for m := range M {
		dm := a.dims(m)
		cent := a.cent[m*a2atsCentroids*a2atsSub : (m+1)*a2atsCentroids*a2atsSub]
		for c := range a2atsCentroids { // spread over the tokens
			for i, ch := range dm {
				cent[c*a2atsSub+i] = keys[(c*t/a2atsCentroids)*d+ch]
			}
		}
		for range a2atsIters {
			clear(sum)
			clear(cnt)
			for i := range t {
				k := keys[i*d : (i+1)*d]
				c := a.nearest(m, k)
				assign[i] = c
				cnt[c]++
				for x, ch := range dm {
					sum[c*a2atsSub+x] += k[ch]
				}
			}
			for c := range a2atsCentroids {
				if cnt[c] == 0 {
					continue // keep an empty centroid where it was
				}
				for x := range a2atsSub {
					cent[c*a2atsSub+x] = sum[c*a2atsSub+x] / float32(cnt[c])
				}
			}
		}
	}
}

func (a *a2ats) pick(dst []int, kv kvcache.View, q []float32, lo, hi, budget int) ([]int, int64) {
	g, d, M := a.sh.group, a.sh.headDim, a.subspaces()
	coded := min(hi, a.n)
	// Tokens not yet coded (none once Prepare has run) are read first.
	for j := hi - 1; j >= max(lo, coded) && budget > 0; j-- {
		dst = append(dst, j)
		budget--
	}
	if coded <= lo || budget <= 0 || a.cent == nil {
		return dst, 0
	}
	a.lut = grow(a.lut, g*M*a2atsCentroids)
	for h := range g {
		qh := q[h*d : (h+1)*d]
		for m := range M {
			dm := a.dims(m)
			for c := range a2atsCentroids {
				ct := a.cent[(m*a2atsCentroids+c)*a2atsSub:]
				var s float32
				for i, ch := range dm {
					s += qh[ch] * ct[i]
				}
				a.lut[(h*M+m)*a2atsCentroids+c] = s * a.sh.scale
			}
		}
	}
	m := coded - lo
	stride := (M + 1) / 2
	// Two subspaces share a byte of codes: one table of 256 sums per byte
	// turns a token's score into stride look-ups.
	a.lut2 = grow(a.lut2, g*stride*256)
	for h := range g {
		lut := a.lut[h*M*a2atsCentroids : (h+1)*M*a2atsCentroids]
		for b := range stride {
			t := a.lut2[(h*stride+b)*256 : (h*stride+b+1)*256]
			lo := lut[2*b*a2atsCentroids : (2*b+1)*a2atsCentroids]
			var hi []float32
			if 2*b+1 < M {
				hi = lut[(2*b+1)*a2atsCentroids : (2*b+2)*a2atsCentroids]
			}
			for c := range 256 {
				v := lo[c&15]
				if hi != nil {
					v += hi[c>>4]
				}
				t[c] = v
			}
		}
	}
	a.s = grow(a.s, g*m)
	for h := range g {
		t := a.lut2[h*stride*256 : (h+1)*stride*256]
		row := a.s[h*m : (h+1)*m]
		codes := a.codes[lo*stride : coded*stride]
		for j := range row {
			var s float32
			for b, c := range codes[j*stride : (j+1)*stride] {
				s += t[b*256+int(c)]
			}
			row[j] = s
		}
	}
	a.vote = grow(a.vote, m)
	softVote(a.vote, a.s, g, m)
	a.cands = a.cands[:0]
	for j := range m {
		a.cands = append(a.cands, j)
	}
	for _, j := range topK(a.cands, a.vote, budget) {
		dst = append(dst, lo+j)
	}
	return dst, int64(m*stride + 4*len(a.cent))
}
