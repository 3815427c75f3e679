package gguf

import (
	"math/rand/v2"
	"reflect"
	"testing"
)

func TestPermuteQK(t *testing.T) {
	// 2 heads of headDim 4, one column: HF rows per head are
	// [x0 x1 | y0 y1] (rotate-half pairs x_i with y_i); GGUF interleaves
	// them as x0 y0 x1 y1.
	hf := []int{0, 1, 2, 3, 10, 11, 12, 13}
	gg := []int{0, 2, 1, 3, 10, 12, 11, 13}
	got, err := PermuteQK(hf, 8, 1, 2)
	if err != nil || !reflect.DeepEqual(got, gg) {
		t.Fatalf("PermuteQK = %v, %v; want %v", got, err, gg)
	}
	back, err := UnpermuteQK(gg, 8, 1, 2)
	if err != nil || !reflect.DeepEqual(back, hf) {
		t.Fatalf("UnpermuteQK = %v, %v; want %v", back, err, hf)
	}

	// Whole rows move: 1 head of headDim 6, 2 columns.
	hf2 := []float32{0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5}
	want2 := []float32{0, 0.5, 3, 3.5, 1, 1.5, 4, 4.5, 2, 2.5, 5, 5.5} // rows 0 3 1 4 2 5
	if got, _ := PermuteQK(hf2, 6, 2, 1); !reflect.DeepEqual(got, want2) {
		t.Fatalf("PermuteQK rows = %v, want %v", got, want2)
	}

	// Random round trips, including byte rows.
	r := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct{ rows, cols, heads int }{{384, 3, 6}, {128, 5, 2}, {64, 1, 1}, {12, 34, 3}} {
		x := make([]byte, tc.rows*tc.cols)
		for i := range x {
			x[i] = byte(r.Uint32())
		}
		p, err := PermuteQK(x, tc.rows, tc.cols, tc.heads)
		if err != nil {
			t.Fatal(err)
		}
		u, err := UnpermuteQK(p, tc.rows, tc.cols, tc.heads)
		if err != nil || !reflect.DeepEqual(u, x) {
			t.Fatalf("%+v: round trip failed (%v)", tc, err)
		}
	}

	for _, tc := range []struct{ n, rows, cols, heads int }{
		{12, 6, 2, 4}, // 6 rows into 4 heads
		{12, 6, 2, 2}, // headDim 3 is odd
		{10, 6, 2, 1}, // wrong length
		{0, 0, 0, 1},
		{8, 8, 1, 0},
	} {
		if _, err := UnpermuteQK(make([]float32, tc.n), tc.rows, tc.cols, tc.heads); err == nil {
			t.Errorf("%+v: no error", tc)
		}
	}
}
