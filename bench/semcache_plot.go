package bench

import (
	"fmt"
	"sort"

	"github.com/kvserve/kvserve/internal/chart"
)

// PlotSemCache draws each curve's paraphrase hit rate against its false-hit
// rate on negatives as the thresholds move, one line per policy and
// embedder, the default configuration as a large point, and writes a PNG.
func PlotSemCache(reps []*SemReport, title, path string) error {
	c := &chart.Chart{Title: title, XLabel: "false-hit rate on negative rows", YLabel: "paraphrase rows served the right answer",
		XMin: 0, XMax: 0.5, YMin: 0, YMax: 1, Width: 1000, Height: 640}
	for _, rep := range reps {
		for _, cv := range rep.Curves {
			pts := make([]chart.Point, 0, len(cv.Points))
			for _, pt := range cv.Points {
				pts = append(pts, chart.Point{X: pt.FalseHit, Y: pt.ParaphraseHit})
			}
			sort.Slice(pts, func(a, b int) bool { return pts[a].X < pts[b].X || (pts[a].X == pts[b].X && pts[a].Y < pts[b].Y) })
			c.Series = append(c.Series, chart.Series{Name: fmt.Sprintf("%s (%s)", cv.Policy, cv.Embedder), Points: pts})
		}
		for _, run := range rep.Runs {
			if !run.Default {
				continue
			}
			d := point("default", run.Rows)
			c.Series = append(c.Series, chart.Series{Name: fmt.Sprintf("default config (%s)", run.Embedder),
				Points: []chart.Point{{X: d.FalseHit, Y: d.ParaphraseHit}}, NoLine: true, Big: true})
		}
	}
	return c.WriteFile(path)
}
