package bench

import (
	"fmt"
	"sort"
	"strings"

	"github.com/kvserve/kvserve/internal/chart"
)

// maxPlotFamilies is how many method families a plot shows; more lines
// than this cannot be told apart, and the summary table lists them all.
const maxPlotFamilies = 12

// PlotAccuracy draws accuracy (correct / total) against KV bytes held
// relative to a full bf16 cache and writes a PNG. Presses are grouped
// into families (Family) and each family is drawn as its Pareto frontier
// — the runs that no other run of the family beats with fewer bytes — so
// a sweep of fifty presses at four ratios reads as a few lines. When
// there are more than maxPlotFamilies families, the ones with the largest
// area under their frontier are drawn and the title says how many.
func PlotAccuracy(rep *Report, title, path string) error {
	byFamily := map[string][]chart.Point{}
	for _, r := range rep.Runs {
		if r.Total == 0 || r.FullKVBytes == 0 {
			continue
		}
		f := Family(r.Press)
		byFamily[f] = append(byFamily[f], chart.Point{X: float64(r.KVBytes) / float64(r.FullKVBytes), Y: float64(r.Correct) / float64(r.Total)})
	}
	if len(byFamily) == 0 {
		return fmt.Errorf("plot: no runs with measured bytes")
	}
	type fam struct {
		name  string
		front []chart.Point
		area  float64
	}
	var fams []fam
	var full []chart.Point
	for name, pts := range byFamily {
		if name == "none" {
			full = pts
			continue
		}
		front := ParetoFront(pts)
		fams = append(fams, fam{name, front, frontArea(front)})
	}
	sort.Slice(fams, func(i, j int) bool {
		if fams[i].area != fams[j].area {
			return fams[i].area > fams[j].area
		}
		return fams[i].name < fams[j].name
	})
	shown := fams
	if len(shown) > maxPlotFamilies {
		title = fmt.Sprintf("%s (best %d of %d families by area under the frontier)", title, maxPlotFamilies, len(fams))
		shown = shown[:maxPlotFamilies]
	}
	c := &chart.Chart{Title: title, XLabel: "KV bytes at end of prefill / full bf16 cache (Pareto frontier per family)",
		YLabel: "accuracy (exact match)", Width: 1100, Height: 700}
	if full != nil {
		c.Series = append(c.Series, chart.Series{Name: "none (full cache)", Points: full, NoLine: true, Big: true})
	}
	for _, f := range shown {
		c.Series = append(c.Series, chart.Series{Name: f.name, Points: f.front})
	}
	return c.WriteFile(path)
}

// Family names the group a press belongs to in plots and summaries: the
// eviction method, with "+quant" when a storage stage follows it, or
// "quant only" for a storage stage alone (kivi4, gear3r32, …).
func Family(press string) string {
	evict, stage, composed := strings.Cut(press, "+")
	if !composed && isStorageStage(evict) {
		return "quant only"
	}
	if composed && stage != "" {
		return evict + "+quant"
	}
	return evict
}

// isStorageStage reports whether name is a storage stage alone.
func isStorageStage(name string) bool {
	for _, p := range []string{"kivi", "gear", "mikv", "zipcache", "think"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// ParetoFront returns the points that no other point dominates (as few
// or fewer bytes with at least the accuracy, one of them strictly better),
// by increasing bytes.
func ParetoFront(pts []chart.Point) []chart.Point {
	s := append([]chart.Point(nil), pts...)
	sort.Slice(s, func(i, j int) bool {
		if s[i].X != s[j].X {
			return s[i].X < s[j].X
		}
		return s[i].Y > s[j].Y
	})
	var front []chart.Point
	best := -1.0
	for _, p := range s {
		if p.Y > best {
			front = append(front, p)
			best = p.Y
		}
	}
	return front
}

// frontArea is the area under a frontier's step function over [0, 1] of
// bytes: accuracy reached at each byte budget, integrated.
func frontArea(front []chart.Point) float64 {
	area := 0.0
	for i, p := range front {
		if p.X >= 1 {
			break
		}
		next := 1.0
		if i+1 < len(front) {
			next = min(front[i+1].X, 1)
		}
		area += p.Y * (next - p.X)
	}
	return area
}
