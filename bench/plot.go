package bench

import (
	"fmt"
	"image/color"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// PlotAccuracy draws accuracy (correct / total) against KV bytes held
// relative to a full bf16 cache, one line per press across its ratios, the
// full cache as a point, and writes a PNG.
func PlotAccuracy(rep *Report, title, path string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "KV bytes at end of prefill / full bf16 cache"
	p.Y.Label.Text = "accuracy (exact match)"
	p.Legend.Top = false
	p.Legend.Left = false
	byPress := map[string][]*Run{}
	var names []string
	for _, r := range rep.Runs {
		if r.Total == 0 || r.FullKVBytes == 0 {
			continue
		}
		if _, ok := byPress[r.Press]; !ok {
			names = append(names, r.Press)
		}
		byPress[r.Press] = append(byPress[r.Press], r)
	}
	if len(names) == 0 {
		return fmt.Errorf("plot: no runs with measured bytes")
	}
	sort.Strings(names)
	for i, name := range names {
		runs := byPress[name]
		sort.Slice(runs, func(a, b int) bool { return runs[a].KVBytes < runs[b].KVBytes })
		pts := make(plotter.XYs, len(runs))
		for j, r := range runs {
			pts[j].X = float64(r.KVBytes) / float64(r.FullKVBytes)
			pts[j].Y = float64(r.Correct) / float64(r.Total)
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		c := palette(i)
		line.Color, points.Color = c, c
		points.Shape = shapes[i%len(shapes)]
		if name == "none" {
			points.Radius = vg.Points(5)
		}
		p.Add(line, points)
		p.Legend.Add(name, line, points)
	}
	p.X.Min, p.X.Max = 0, max(1.1, p.X.Max*1.05)
	p.Y.Min, p.Y.Max = 0, max(p.Y.Max*1.1, 0.1)
	p.Add(plotter.NewGrid())
	// The legend lists every press: a sweep's fifty need a taller canvas.
	height := max(6*vg.Inch, vg.Length(len(names)+3)*p.Legend.TextStyle.Height("M")*1.25)
	return p.Save(9*vg.Inch, height, path)
}

var shapes = []draw.GlyphDrawer{draw.CircleGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{}, draw.CrossGlyph{}, draw.PlusGlyph{}, draw.RingGlyph{}, draw.BoxGlyph{}, draw.PyramidGlyph{}}

// palette returns a distinguishable colour for series i.
func palette(i int) color.Color {
	cs := []color.RGBA{{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255}, {148, 103, 189, 255},
		{140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255}, {188, 189, 34, 255}, {23, 190, 207, 255}, {0, 0, 0, 255}}
	return cs[i%len(cs)]
}
