package bench

import (
	"fmt"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// PlotSemCache draws each curve's paraphrase hit rate against its false-hit
// rate on negatives as the thresholds move, one line per policy and
// embedder, the default configuration as a large point, and writes a PNG.
func PlotSemCache(reps []*SemReport, title, path string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "false-hit rate on negative rows"
	p.Y.Label.Text = "paraphrase rows served the right answer"
	p.Legend.Top = true // the curves keep to the left and bottom
	p.Legend.Left = false
	i := 0
	for _, rep := range reps {
		for _, cv := range rep.Curves {
			pts := make(plotter.XYs, 0, len(cv.Points))
			for _, pt := range cv.Points {
				pts = append(pts, plotter.XY{X: pt.FalseHit, Y: pt.ParaphraseHit})
			}
			sort.Slice(pts, func(a, b int) bool { return pts[a].X < pts[b].X || (pts[a].X == pts[b].X && pts[a].Y < pts[b].Y) })
			line, points, err := plotter.NewLinePoints(pts)
			if err != nil {
				return err
			}
			c := palette(i)
			line.Color, points.Color = c, c
			points.Shape = shapes[i%len(shapes)]
			p.Add(line, points)
			p.Legend.Add(fmt.Sprintf("%s (%s)", cv.Policy, cv.Embedder), line, points)
			i++
		}
		for _, run := range rep.Runs {
			if !run.Default {
				continue
			}
			d := point("default", run.Rows)
			sc, err := plotter.NewScatter(plotter.XYs{{X: d.FalseHit, Y: d.ParaphraseHit}})
			if err != nil {
				return err
			}
			sc.Color, sc.Radius = palette(i), vg.Points(6)
			p.Add(sc)
			p.Legend.Add(fmt.Sprintf("default config (%s)", run.Embedder), sc)
			i++
		}
	}
	p.X.Min, p.X.Max = 0, 0.5
	p.Y.Min, p.Y.Max = 0, 1
	p.Add(plotter.NewGrid())
	return p.Save(9*vg.Inch, 6*vg.Inch, path)
}
