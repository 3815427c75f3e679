package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// summaryBudgets are the byte budgets (KV bytes / full bf16 cache) of the
// summary's columns.
var summaryBudgets = []float64{1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0 / 2, 1}

// budgetSlack lets a run count within a budget it exceeds by up to 5 %:
// positions, partly filled blocks and the question's tokens put a run at
// ratio 0.5 at about 0.52 of the bytes.
const budgetSlack = 1.05

// Summary writes one line per method family (Family): the best accuracy,
// as a share of the full cache's, that any of its runs reaches within each
// byte budget, and the time its runs took. Families are ordered by their
// best accuracy within a quarter of the bytes. It is what a sweep prints;
// the per-run tables go to a file.
func Summary(w io.Writer, runs []*Run) {
	var full *Run
	type fam struct {
		name    string
		best    []float64 // per budget; -1: no run within it
		seconds float64
		runs    int
	}
	fams := map[string]*fam{}
	for _, r := range runs {
		if r.Press == "none" {
			full = r
			continue
		}
		if r.Total == 0 || r.FullKVBytes == 0 {
			continue
		}
		name := Family(r.Press)
		f := fams[name]
		if f == nil {
			f = &fam{name: name, best: make([]float64, len(summaryBudgets))}
			for i := range f.best {
				f.best[i] = -1
			}
			fams[name] = f
		}
		f.seconds += r.Seconds
		f.runs++
		bytes := float64(r.KVBytes) / float64(r.FullKVBytes)
		acc := float64(r.Correct) / float64(r.Total)
		for i, b := range summaryBudgets {
			if bytes <= b*budgetSlack {
				f.best[i] = max(f.best[i], acc)
			}
		}
	}
	var list []*fam
	for _, f := range fams {
		list = append(list, f)
	}
	quarter := 2 // index of 1/4 in summaryBudgets
	sort.Slice(list, func(i, j int) bool {
		if list[i].best[quarter] != list[j].best[quarter] {
			return list[i].best[quarter] > list[j].best[quarter]
		}
		return list[i].name < list[j].name
	})
	ref := 0.0
	if full != nil && full.Total > 0 {
		ref = float64(full.Correct) / float64(full.Total)
		fmt.Fprintf(w, "full cache: %d/%d correct (%.1f %%), %.1f s; below, each family's best share of that within a byte budget (+5 %%)\n",
			full.Correct, full.Total, 100*ref, full.Seconds)
	} else {
		fmt.Fprintln(w, "no full-cache run: accuracies are absolute")
	}
	head := []string{"≤1/16", "≤1/8", "≤1/4", "≤1/2", "≤1"}
	fmt.Fprintf(w, "%-32s %s %5s %8s\n", "family (KV bytes / full bf16)", pad(head), "runs", "seconds")
	for _, f := range list {
		cells := make([]string, len(f.best))
		for i, a := range f.best {
			switch {
			case a < 0:
				cells[i] = "-"
			case ref > 0:
				cells[i] = fmt.Sprintf("%.0f%%", 100*a/ref)
			default:
				cells[i] = fmt.Sprintf("%.2f", a)
			}
		}
		fmt.Fprintf(w, "%-32s %s %5d %8.1f\n", f.name, pad(cells), f.runs, f.seconds)
	}
}

// pad right-aligns cells in columns of seven.
func pad(cells []string) string {
	var b strings.Builder
	for i, c := range cells {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strings.Repeat(" ", max(0, 6-len([]rune(c)))) + c)
	}
	return b.String()
}

// RunLines writes one line per run — its press and retrieval, correct
// answers per turn and in all, as a share of the full cache's (the run
// with neither press nor retrieval, or retrieval none) and, for
// retrieval, the bytes read per decode step and held resident relative to
// a bf16 cache. It is what bench accuracy prints for retrieval runs.
func RunLines(w io.Writer, runs []*Run) {
	var full *Run
	for _, r := range runs {
		if r.Press == "none" && (r.RetrievalResult == nil || r.RetrievalResult.Retrieval == "none") {
			full = r
			break
		}
	}
	turns := 0
	for _, r := range runs {
		for _, rec := range r.Records {
			turns = max(turns, rec.Turn)
		}
	}
	perTurn := func(r *Run) []int {
		c := make([]int, turns+1)
		for _, rec := range r.Records {
			if rec.Correct {
				c[rec.Turn]++
			}
		}
		return c
	}
	var fullTurns []int
	if full != nil {
		fullTurns = perTurn(full)
	}
	fmt.Fprintf(w, "%-34s", "run")
	for k := 1; k <= turns; k++ {
		fmt.Fprintf(w, " %12s", fmt.Sprintf("turn %d", k))
	}
	fmt.Fprintf(w, " %12s %9s %9s\n", "all", "read/step", "resident")
	for _, r := range runs {
		name := r.Press
		if r.Press != "none" {
			name = fmt.Sprintf("%s@%g", r.Press, r.Ratio)
		}
		read, resident := "", ""
		if res := r.RetrievalResult; res != nil {
			name += " + " + res.Retrieval + "@" + res.Budget
			if res.Cold != "" {
				name += " (cold " + res.Cold + ")"
			}
			if res.FullBF16BytesPerStep > 0 {
				read = fmt.Sprintf("%.3f", res.KVBytesReadPerStep/res.FullBF16BytesPerStep)
				resident = fmt.Sprintf("%.3f", res.Resident/res.FullBF16BytesPerStep)
			}
		}
		fmt.Fprintf(w, "%-34s", name)
		c := perTurn(r)
		for k := 1; k <= turns; k++ {
			cell := fmt.Sprintf("%d", c[k])
			if fullTurns != nil && fullTurns[k] > 0 {
				cell += fmt.Sprintf(" (%.0f%%)", 100*float64(c[k])/float64(fullTurns[k]))
			}
			fmt.Fprintf(w, " %12s", cell)
		}
		fmt.Fprintf(w, " %12s %9s %9s\n", fmt.Sprintf("%d/%d", r.Correct, r.Total), read, resident)
	}
}
