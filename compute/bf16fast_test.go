package compute

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestMatBF16Fast checks every kernel set's matBF16Fast against a float64
// sum of the same bf16 products, on shapes that leave remainders of every
// blocking: rows not a multiple of 4, token counts around the 4-token
// tiles and past a token block, row lengths around multiples of 32, and a
// stride ldy wider than rows whose gaps must stay untouched. Sets without
// a bf16 dot-product instruction have no such kernel.
func TestMatBF16Fast(t *testing.T) {
	rng := rand.New(rand.NewPCG(131, 132))
	cases := []struct {
		rowsList, colsList, ntokList []int
	}{
		{[]int{1, 3, 4, 5, 9, 10}, []int{1, 2, 7, 8, 31, 32, 33, 63, 64, 65, 95, 200}, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 17}},
		{[]int{4, 7, 64}, []int{2048, 2047, 2080}, []int{1, 8, 9, 70}},
		{[]int{6}, []int{8192, 8191}, []int{1, 4, 35}}, // 35 tokens of 8192: two token blocks
	}
	for _, ks := range allSets() {
		if ks.matBF16Fast == nil {
			continue // no bf16 dot product: Fast MatMul runs Exact (see kernelSet.fast)
		}
		for _, c := range cases {
			for _, rows := range c.rowsList {
				for _, cols := range c.colsList {
					for _, ntok := range c.ntokList {
						name := fmt.Sprintf("%s %d×%d n=%d", ks.name, rows, cols, ntok)
						checkMatBF16Fast(t, rng, &ks, name, rows, cols, ntok)
					}
				}
			}
		}
	}
}

func checkMatBF16Fast(t *testing.T, rng *rand.Rand, ks *kernelSet, name string, rows, cols, ntok int) {
	t.Helper()
	w := randBF16(rng, rows*cols)
	xb := randBF16(rng, ntok*cols)
	ldy := rows + 3
	y := make([]float32, ntok*ldy)
	for i := range y {
		y[i] = 7
	}
	ks.matBF16Fast(y, ldy, w, rows, cols, xb, ntok)
	for tt := range ntok {
		for r := range rows {
			want, mag := dotRef(cols, func(i int) float64 { return float64(bf16(w[r*cols+i])) }, func(i int) float64 { return float64(bf16(xb[tt*cols+i])) })
			if got := y[tt*ldy+r]; math.Abs(float64(got)-want) > 2e-5*mag+1e-30 {
				t.Fatalf("%s: y[%d][%d] = %v, want %v (scale %v)", name, tt, r, got, want, mag)
			}
		}
		for r := rows; r < ldy; r++ {
			if y[tt*ldy+r] != 7 {
				t.Fatalf("%s: wrote y[%d][%d] past the rows", name, tt, r)
			}
		}
	}
}

// TestF32ToBF16Sets checks every set's f32ToBF16 bit for bit against
// F32ToBF16 on the awkward values (ties, subnormals, values that round up
// to the next binade or to infinity, infinities, NaNs whose payload lies
// only in the low half) and random bits, at every length up to 40.
func TestF32ToBF16Sets(t *testing.T) {
	special := []uint32{
		0, 0x80000000, 1, 0x80000001, 0x00008000, 0x00018000, 0x007fffff, 0x807fffff, 0x007f8000, 0x007f7fff,
		0x3f808000, 0x3f818000, 0x3f807fff, 0x3f808001, 0x7f7fffff, 0xff7fffff, 0x7f7f8000, 0x7f7f7fff,
		0x7f800000, 0xff800000, 0x7f800001, 0xff800001, 0x7fc00000, 0x7fffffff, 0xffffffff, 0x7f80ffff, 0x7fbf0000,
	}
	rng := rand.New(rand.NewPCG(133, 134))
	src := make([]float32, 0, 40*40)
	for len(src) < cap(src) {
		if rng.IntN(3) == 0 {
			src = append(src, math.Float32frombits(special[rng.IntN(len(special))]))
		} else {
			src = append(src, math.Float32frombits(rng.Uint32()))
		}
	}
	for i, b := range special {
		src[i] = math.Float32frombits(b)
	}
	for _, ks := range allSets() {
		for n := 0; n <= 40; n++ {
			for off := 0; off+n <= len(src); off += 37 {
				s := src[off : off+n]
				want := make([]uint16, n)
				F32ToBF16(want, s)
				got := make([]uint16, n+1)
				got[n] = 0x1234
				ks.f32ToBF16(got[:n], s)
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("%s n=%d: %#08x → %#04x, want %#04x", ks.name, n, math.Float32bits(s[i]), got[i], want[i])
					}
				}
				if got[n] != 0x1234 {
					t.Fatalf("%s n=%d: wrote past dst", ks.name, n)
				}
			}
		}
	}
}
