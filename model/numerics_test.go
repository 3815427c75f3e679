package model

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/compute"
)

// TestNumericsDeviation measures how far each numerics mode lands from
// transformers' float32 goldens on every fixture: the largest |Δ| of the
// last logits and how many greedy ids agree before the first difference.
// Exact must meet the golden tolerance (as TestArchGolden and
// TestTinychatGolden check in detail); Fast, whose bf16 activations round
// every product's input to 8 bits of mantissa, must keep the first greedy
// id and stay within 0.5 of every logit. Run with -v for
// the table the README quotes.
func TestNumericsDeviation(t *testing.T) {
	type fixture struct {
		name, dir string
		prompt    []int
		last      []float32
		greedy    []int
		stops     []int
	}
	var fixtures []fixture
	var archs []archGolden
	readJSON(t, "testdata/archs/golden.json", &archs)
	for _, g := range archs {
		fixtures = append(fixtures, fixture{g.Name, filepath.Join("testdata/archs", g.Name), g.InputIDs, g.LastLogits, g.GreedyIDs, nil})
	}
	var chats []chatGolden
	readJSON(t, "testdata/tinychat/golden.json", &chats)
	for _, g := range chats {
		fixtures = append(fixtures, fixture{"tinychat/" + g.Name, "../models/tinychat", g.InputIDs, g.LastLogits, g.GreedyIDs, []int{2, 0}})
	}
	var table strings.Builder
	fmt.Fprintf(&table, "%-26s %-6s %12s %14s\n", "fixture", "mode", "max |Δlogit|", "greedy agree")
	for _, f := range fixtures {
		m := loadDir(t, f.dir)
		for _, nm := range []compute.Numerics{compute.Exact, compute.Fast} {
			m.SetNumerics(nm)
			logits, err := m.Forward(m.NewCache(), f.prompt, LastLogits)
			if err != nil {
				t.Fatal(err)
			}
			d := maxAbsDiff(logits, f.last)
			ids := greedy(t, m, f.prompt, len(f.greedy), f.stops...)
			agree := 0
			for agree < min(len(ids), len(f.greedy)) && ids[agree] == f.greedy[agree] {
				agree++
			}
			fmt.Fprintf(&table, "%-26s %-6s %12.5f %8d of %d\n", f.name, nm, d, agree, len(f.greedy))
			switch {
			case nm == compute.Exact && d >= tolerance:
				t.Errorf("%s, exact: max |Δ| %.5f ≥ %g", f.name, d, tolerance)
			case nm == compute.Fast && (d >= 0.5 || agree == 0):
				t.Errorf("%s, fast: max |Δ| %.5f, first greedy id %v, want %d", f.name, d, ids[:min(1, len(ids))], f.greedy[0])
			}
		}
	}
	t.Logf("kernels %s\n%s", compute.KernelName(), table.String())
}
