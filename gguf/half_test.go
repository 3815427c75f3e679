package gguf

import (
	"math"
	"testing"
)

// refHalf decodes fp16 bits from the IEEE 754 definition, in float64.
func refHalf(h uint16) float64 {
	s := 1.0
	if h&0x8000 != 0 {
		s = -1
	}
	e := int(h >> 10 & 0x1f)
	m := float64(h & 0x3ff)
	switch e {
	case 0:
		return s * m * math.Ldexp(1, -24)
	case 31:
		if m == 0 {
			return math.Inf(int(s))
		}
		return math.NaN()
	}
	return s * (1 + m/1024) * math.Ldexp(1, e-15)
}

// toHalf rounds a float32 to the nearest fp16 (ties to even), as IEEE 754
// and numpy's astype(float16) do.
func toHalf(f float32) uint16 {
	var sign uint16
	if math.Signbit(float64(f)) {
		sign = 0x8000
	}
	a := math.Abs(float64(f))
	switch {
	case math.IsNaN(a):
		return 0x7e00
	case math.IsInf(a, 0):
		return sign | 0x7c00
	case a < math.Ldexp(1, -14): // subnormal (or rounds up to the smallest normal)
		return sign | uint16(math.RoundToEven(a*math.Ldexp(1, 24)))
	}
	frac, exp := math.Frexp(a) // a = frac·2^exp, frac in [0.5, 1)
	e := exp - 1               // a = (2·frac)·2^e, 2·frac in [1, 2)
	mant := math.RoundToEven((2*frac - 1) * 1024)
	if mant == 1024 {
		mant = 0
		e++
	}
	if e > 15 {
		return sign | 0x7c00
	}
	return sign | uint16(e+15)<<10 | uint16(mant)
}

// toHalfUp returns the smallest fp16 ≥ f (f ≥ 0 and finite in fp16).
func toHalfUp(f float32) uint16 {
	h := toHalf(f)
	if FP16ToFloat32(h) < f {
		h++
	}
	return h
}

func TestFP16ToFloat32Exhaustive(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		got := FP16ToFloat32(h)
		want := refHalf(h)
		if math.IsNaN(want) {
			if !math.IsNaN(float64(got)) || math.Float32bits(got)&0x7fffff != uint32(h&0x3ff)<<13 {
				t.Fatalf("%#04x: got %v (%#08x), want NaN with its payload", h, got, math.Float32bits(got))
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want) {
			t.Fatalf("%#04x: got %v, want %v", h, got, want)
		}
		// The test encoder inverts the decoder on every non-NaN value.
		if back := toHalf(got); back != h {
			t.Fatalf("toHalf(%v) = %#04x, want %#04x", got, back, h)
		}
	}
	for _, tc := range []struct {
		f    float32
		want uint16
	}{
		{1, 0x3c00}, {-2, 0xc000}, {0.5, 0x3800}, {65504, 0x7bff}, {65519, 0x7bff}, {65520, 0x7c00},
		{1 + 1.0/2048, 0x3c00},                // tie: to even
		{1 + 3.0/2048, 0x3c02},                // tie: to even (up)
		{1 + 1.5/2048, 0x3c01},                // above the tie
		{float32(math.Ldexp(1, -25)), 0x0000}, // tie between 0 and the smallest subnormal
		{float32(math.Ldexp(3, -26)), 0x0001},
		{float32(math.Ldexp(1023.5, -24)), 0x0400}, // rounds up into the normals
	} {
		if got := toHalf(tc.f); got != tc.want {
			t.Errorf("toHalf(%v) = %#04x, want %#04x", tc.f, got, tc.want)
		}
	}
}

func TestBF16ToFloat32(t *testing.T) {
	for _, tc := range []struct {
		b    uint16
		want float32
	}{
		{0x3f80, 1}, {0xbf80, -1}, {0x4049, 3.140625}, {0x0000, 0}, {0x7f80, float32(math.Inf(1))}, {0x0001, float32(math.Ldexp(1, -133))},
	} {
		if got := BF16ToFloat32(tc.b); got != tc.want {
			t.Errorf("BF16ToFloat32(%#04x) = %v, want %v", tc.b, got, tc.want)
		}
	}
	if !math.IsNaN(float64(BF16ToFloat32(0x7fc0))) {
		t.Error("0x7fc0 is not NaN")
	}
}
