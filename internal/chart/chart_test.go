package chart

import (
	"bytes"
	"image/png"
	"math"
	"reflect"
	"testing"
)

func TestTicks(t *testing.T) {
	tests := []struct {
		lo, hi float64
		want   []float64
	}{
		{0, 1, []float64{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1}},
		{0, 1.1, []float64{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1}},
		{0, 95, []float64{0, 20, 40, 60, 80}},
		{-3, 3, []float64{-3, -2, -1, 0, 1, 2, 3}},
		{0, 0.07, []float64{0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07}},
	}
	for _, tt := range tests {
		got := ticks(tt.lo, tt.hi)
		if len(got) != len(tt.want) {
			t.Errorf("ticks(%v, %v) = %v, want %v", tt.lo, tt.hi, got, tt.want)
			continue
		}
		for i := range got {
			if math.Abs(got[i]-tt.want[i]) > 1e-9 {
				t.Errorf("ticks(%v, %v) = %v, want %v", tt.lo, tt.hi, got, tt.want)
				break
			}
		}
	}
}

// TestRenderPlacesPoints: each series' marker centre has the series'
// colour where the axes put it, and the legend stays right of the axes.
func TestRenderPlacesPoints(t *testing.T) {
	c := &Chart{Title: "t", XLabel: "x", YLabel: "y", XMin: 0, XMax: 1, YMin: 0, YMax: 1, Width: 600, Height: 400,
		Series: []Series{
			{Name: "a", Points: []Point{{0.25, 0.5}}, NoLine: true},
			{Name: "b", Points: []Point{{0.75, 0.25}, {math.NaN(), 1}}, NoLine: true},
		}}
	img, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(&buf); err != nil {
		t.Fatal(err)
	}
	// Find the axes from the drawn frame: the plot area's left edge is the
	// first dark column on the x-axis row.
	for i, s := range c.Series {
		col, _ := Style(i)
		found := false
		for y := 0; y < 400 && !found; y++ {
			for x := 0; x < 600-150; x++ { // the legend is right of x = 450
				if reflect.DeepEqual(img.RGBAAt(x, y), col) {
					found = true
					break
				}
			}
		}
		if !found {
			t.Errorf("series %s: no pixel of its colour left of the legend", s.Name)
		}
	}
}

func TestRenderErrors(t *testing.T) {
	tests := []struct {
		name string
		c    Chart
	}{
		{"no points", Chart{Series: []Series{{Name: "a"}}}},
		{"only NaN", Chart{Series: []Series{{Name: "a", Points: []Point{{math.NaN(), 1}}}}}},
		{"too small", Chart{Width: 40, Height: 40, Series: []Series{{Name: "a", Points: []Point{{1, 1}}}}}},
	}
	for _, tt := range tests {
		if _, err := tt.c.Render(); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

func TestStylesDistinct(t *testing.T) {
	seen := map[[2]any]bool{}
	for i := range 70 {
		c, m := Style(i)
		k := [2]any{c, m}
		if seen[k] {
			t.Fatalf("series %d repeats an earlier style", i)
		}
		seen[k] = true
	}
}
