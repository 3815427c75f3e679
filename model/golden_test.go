package model

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvserve/kvserve/compute"
)

// tolerance is what a correct float32 implementation meets against
// transformers' float32 logits (../shared/models/README.md).
const tolerance = 2e-3

type archGolden struct {
	Name        string    `json:"name"`
	InputIDs    []int     `json:"input_ids"`
	LastLogits  []float32 `json:"last_logits"`
	LogitsPos40 []float32 `json:"logits_pos40"`
	GreedyIDs   []int     `json:"greedy_ids"`
}

type chatGolden struct {
	Name       string      `json:"name"`
	InputIDs   []int       `json:"input_ids"`
	LastLogits []float32   `json:"last_logits"`
	Top5IDs    [][]int     `json:"top5_ids"`
	Top5Logits [][]float32 `json:"top5_logits"`
	GreedyIDs  []int       `json:"greedy_ids"`
	GreedyText string      `json:"greedy_text"`
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

var testPool = compute.NewPool(0)

func loadDir(t testing.TB, dir string) *Model {
	t.Helper()
	m, err := Load(Source{Dir: dir}, testPool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// greedy decodes up to n tokens after the prompt, stopping at any stop id.
func greedy(t testing.TB, m *Model, prompt []int, n int, stop ...int) []int {
	t.Helper()
	cache := m.NewCache()
	logits, err := m.Forward(cache, prompt, LastLogits)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for len(out) < n {
		id := argmax(logits)
		out = append(out, id)
		for _, s := range stop {
			if id == s {
				return out
			}
		}
		if logits, err = m.Forward(cache, []int{id}, LastLogits); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// kernelSets runs a test once with the CPU's best kernels and once with the
// portable Go kernels, so both paths meet the golden outputs.
func kernelSets(t *testing.T, test func(t *testing.T)) {
	for _, generic := range []bool{false, true} {
		name := compute.KernelName()
		if generic {
			name = "generic"
		}
		t.Run(name, func(t *testing.T) {
			defer compute.UseGeneric(generic)()
			test(t)
		})
		if name == "generic" && !generic {
			return // no SIMD set on this CPU: one run covers it
		}
	}
}

func TestArchGolden(t *testing.T) {
	kernelSets(t, testArchGolden)
}

func testArchGolden(t *testing.T) {
	var golden []archGolden
	readJSON(t, "testdata/archs/golden.json", &golden)
	if len(golden) != 5 {
		t.Fatalf("golden.json has %d models, want 5", len(golden))
	}
	for _, g := range golden {
		t.Run(g.Name, func(t *testing.T) {
			m := loadDir(t, filepath.Join("testdata/archs", g.Name))
			logits, err := m.Forward(m.NewCache(), g.InputIDs, AllLogits)
			if err != nil {
				t.Fatal(err)
			}
			v := m.Config.VocabSize
			n := len(g.InputIDs)
			if d := maxAbsDiff(logits[(n-1)*v:n*v], g.LastLogits); d >= tolerance {
				t.Errorf("last logits: max |Δ| = %.5f", d)
			}
			if d := maxAbsDiff(logits[40*v:41*v], g.LogitsPos40); d >= tolerance {
				t.Errorf("logits at position 40: max |Δ| = %.5f", d)
			}
			if got := greedy(t, m, g.InputIDs, len(g.GreedyIDs)); !equalInts(got, g.GreedyIDs) {
				t.Errorf("greedy ids %v, want %v", got, g.GreedyIDs)
			}
		})
	}
}

func TestTinychatGolden(t *testing.T) {
	kernelSets(t, testTinychatGolden)
}

func testTinychatGolden(t *testing.T) {
	var golden []chatGolden
	readJSON(t, "testdata/tinychat/golden.json", &golden)
	m := loadDir(t, "../models/tinychat")
	v := m.Config.VocabSize
	for _, g := range golden {
		t.Run(g.Name, func(t *testing.T) {
			logits, err := m.Forward(m.NewCache(), g.InputIDs, AllLogits)
			if err != nil {
				t.Fatal(err)
			}
			n := len(g.InputIDs)
			if d := maxAbsDiff(logits[(n-1)*v:n*v], g.LastLogits); d >= tolerance {
				t.Errorf("last logits: max |Δ| = %.5f", d)
			}
			worst := 0.0
			for p := range n {
				row := logits[p*v : (p+1)*v]
				ids := top5(row)
				for j, id := range g.Top5IDs[p] {
					worst = max(worst, math.Abs(float64(row[id]-g.Top5Logits[p][j])))
					// A swap between near-equal logits is not an error.
					if ids[j] != id && math.Abs(float64(row[ids[j]]-row[id])) > tolerance {
						t.Fatalf("position %d: top-5 %v, want %v", p, ids, g.Top5IDs[p])
					}
				}
			}
			if worst >= tolerance {
				t.Errorf("top-5 logits: max |Δ| = %.5f", worst)
			}
			if got := greedy(t, m, g.InputIDs, 32, 2, 0); !equalInts(got, g.GreedyIDs) {
				t.Errorf("greedy ids %v, want %v", got, g.GreedyIDs)
			}
		})
	}
}

// top5 returns the indices of the five largest values, largest first
// (the lower index first on ties).
func top5(row []float32) []int {
	best := make([]int, 0, 6)
	for i, v := range row {
		if len(best) == 5 && v <= row[best[4]] {
			continue
		}
		j := len(best)
		best = append(best, i)
		for j > 0 && v > row[best[j-1]] {
			best[j] = best[j-1]
			j--
		}
		best[j] = i
		best = best[:min(len(best), 5)]
	}
	return best
}
