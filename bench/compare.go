package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
)

// Baseline is a per task × length × turn accuracy table from another
// engine, as ../shared/bench/tinychat-hf-baseline.json holds it.
type Baseline struct {
	Cells []BaselineCell `json:"accuracy_full_cache"`
}

// BaselineCell is one cell of a Baseline; Turn is 0-based there.
type BaselineCell struct {
	Task         string `json:"task"`
	TargetTokens int    `json:"target_tokens"`
	Turn         int    `json:"turn"`
	Correct      int    `json:"correct"`
	N            int    `json:"n"`
}

// ReferenceAnswer is one line of kvpress's reference results.
type ReferenceAnswer struct {
	Press   string  `json:"press"`
	Ratio   float64 `json:"ratio"`
	ID      string  `json:"id"`
	Answer  string  `json:"answer"`
	Correct bool    `json:"correct"`
}

// ReadReport reads a file written by `kvserve bench accuracy --out`.
func ReadReport(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// ReadBaseline reads a baseline table.
func ReadBaseline(path string) (*Baseline, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var b Baseline
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &b, nil
}

// ReadReference reads kvpress reference answers (JSONL).
func ReadReference(path string) ([]ReferenceAnswer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []ReferenceAnswer
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for line := 1; sc.Scan(); line++ {
		var a ReferenceAnswer
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		out = append(out, a)
	}
	return out, sc.Err()
}

// CellDiff compares one cell of a run with a baseline.
type CellDiff struct {
	Task                 string
	TargetTokens, Turn   int
	Ours, OursN, Skipped int
	Theirs, TheirsN      int
}

// CompareBaseline lines up a run's records with a baseline, cell by cell.
func CompareBaseline(run *Run, base *Baseline) []CellDiff {
	var out []CellDiff
	for _, c := range base.Cells {
		d := CellDiff{Task: c.Task, TargetTokens: c.TargetTokens, Turn: c.Turn + 1, Theirs: c.Correct, TheirsN: c.N}
		for _, r := range run.Records {
			if r.Task != c.Task || r.TargetTokens != c.TargetTokens || r.Turn != c.Turn+1 {
				continue
			}
			switch {
			case r.Skipped:
				d.Skipped++
			default:
				d.OursN++
				if r.Correct {
					d.Ours++
				}
			}
		}
		if d.OursN+d.Skipped > 0 {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Task != b.Task {
			return a.Task < b.Task
		}
		if a.TargetTokens != b.TargetTokens {
			return a.TargetTokens < b.TargetTokens
		}
		return a.Turn < b.Turn
	})
	return out
}

// AnswerDiff is a record whose answer differs from the reference's.
type AnswerDiff struct {
	ID, Ours, Theirs string
	Skipped          bool
	PromptTokens     int
}

// CompareAnswers compares a run's first-turn answers with reference answers
// of the same press and ratio; it returns how many records both have, how
// many answers are identical, and the ones that differ.
func CompareAnswers(run *Run, ref []ReferenceAnswer) (both, same int, diffs []AnswerDiff) {
	both, same, _, _, diffs = compareAnswers(run, ref)
	return both, same, diffs
}

// compareAnswers also counts the correct answers of each side over the
// records both have.
func compareAnswers(run *Run, ref []ReferenceAnswer) (both, same, ours, theirs int, diffs []AnswerDiff) {
	mine := map[string]RecordResult{}
	for _, r := range run.Records {
		if r.Turn == 1 {
			mine[r.ID] = r
		}
	}
	for _, a := range ref {
		if a.Press != run.Press || a.Ratio != run.Ratio {
			continue
		}
		r, ok := mine[a.ID]
		if !ok {
			continue
		}
		both++
		if r.Correct {
			ours++
		}
		if a.Correct {
			theirs++
		}
		if !r.Skipped && r.Answer == strings.TrimSpace(a.Answer) {
			same++
			continue
		}
		diffs = append(diffs, AnswerDiff{ID: a.ID, Ours: r.Answer, Theirs: a.Answer, Skipped: r.Skipped, PromptTokens: r.PromptTokens})
	}
	return both, same, ours, theirs, diffs
}

// WriteComparison prints both comparisons for every run of a report, then
// (with reference answers) a summary table of correct answers side by side.
// verbose lists every differing answer.
func WriteComparison(w io.Writer, rep *Report, base *Baseline, ref []ReferenceAnswer, verbose bool) {
	defer writeSummary(w, rep, ref)
	for _, run := range rep.Runs {
		if base != nil && run.Press == "none" {
			diffs := CompareBaseline(run, base)
			uneven := 0
			for _, d := range diffs {
				if d.OursN+d.Skipped != d.TheirsN {
					uneven++
				}
			}
			fmt.Fprintf(w, "press %s vs baseline, per cell (correct/n)\n", run.Press)
			if uneven > 0 {
				fmt.Fprintf(w, "warning: in %d of %d cells the result ran other records than the baseline (e.g. --per-cell): Δ is in accuracy points, and a cell of few records says little\n", uneven, len(diffs))
			}
			fmt.Fprintf(w, "%-18s %7s %5s %10s %10s %8s %6s\n", "task", "length", "turn", "kvserve", "baseline", "skipped", "Δ")
			worst := 0
			for _, d := range diffs {
				delta := d.Ours - d.Theirs
				if uneven > 0 { // compare shares, not counts of different record sets
					delta = int(math.Round(100 * (share(d.Ours, d.OursN) - share(d.Theirs, d.TheirsN))))
				}
				worst = max(worst, delta, -delta)
				fmt.Fprintf(w, "%-18s %7d %5d %5d/%-4d %5d/%-4d %8d %+6d\n", d.Task, d.TargetTokens, d.Turn, d.Ours, d.OursN, d.Theirs, d.TheirsN, d.Skipped, delta)
			}
			if uneven > 0 {
				fmt.Fprintf(w, "largest |Δ| in a cell: %d accuracy points\n\n", worst)
				continue
			}
			fmt.Fprintf(w, "largest |Δ| in a cell: %d\n\n", worst)
		}
		if ref != nil {
			both, same, diffs := CompareAnswers(run, ref)
			if both == 0 {
				continue
			}
			fmt.Fprintf(w, "press %s ratio %.3g: %d of %d first-turn answers identical to the reference (%.1f %%)\n", run.Press, run.Ratio, same, both, 100*float64(same)/float64(both))
			if !verbose && run.Press != "none" {
				continue
			}
			for _, d := range diffs {
				why := ""
				if d.Skipped {
					why = fmt.Sprintf(" (prompt of %d tokens is longer than the context: skipped here, cut by the reference)", d.PromptTokens)
				}
				fmt.Fprintf(w, "  differs: %s: %q vs %q%s\n", d.ID, d.Ours, d.Theirs, why)
			}
		}
	}
}

// writeSummary prints, per run, correct answers of kvserve and of the
// reference over the same records, the identical answers, and the KV bytes
// held relative to a full bf16 cache.
func writeSummary(w io.Writer, rep *Report, ref []ReferenceAnswer) {
	if ref == nil {
		return
	}
	fmt.Fprintf(w, "\n%-22s %6s %9s %10s %10s %10s\n", "press", "ratio", "kvserve", "reference", "identical", "KV/full")
	for _, run := range rep.Runs {
		both, same, ours, theirs, _ := compareAnswers(run, ref)
		if both == 0 {
			continue
		}
		kv := 0.0
		if run.FullKVBytes > 0 {
			kv = float64(run.KVBytes) / float64(run.FullKVBytes)
		}
		fmt.Fprintf(w, "%-22s %6.3g %5d/%-3d %6d/%-3d %6d/%-3d %10.3f\n", run.Press, run.Ratio, ours, both, theirs, both, same, both, kv)
	}
}

// share is correct/n, 0 when n is 0.
func share(correct, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(correct) / float64(n)
}
