package press_test

import (
	"strings"
	"testing"

	"github.com/kvserve/kvserve/bench"
	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/press"
)

// TestThinKAndGEAROnTinychat compresses one dev record's context (the
// question unseen, as in bench.Accuracy) with ThinK and GEAR presses, each
// alone and after an eviction method, and checks that tinychat still
// answers as with the full cache, from a cache smaller than bf16's.
func TestThinKAndGEAROnTinychat(t *testing.T) {
	recs, err := bench.ReadRecords("../bench/testdata/dev.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	recs = bench.Filter(recs, []string{"niah_single"}, []int{1000}, 1)
	if len(recs) != 1 {
		t.Fatalf("filter kept %d records", len(recs))
	}
	pool := compute.NewPool(0)
	defer pool.Close()
	b, err := engine.Open("", pool)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cases := []struct {
		name  string
		ratio float64
	}{
		{"think", 0.25},
		{"think", 0.5},
		{"gear4", 0},
		{"gear2", 0},
		{"keydiff+gear4", 0.5},
		{"keydiff+think", 0.5}, // snapkv at 0.5 already misses this needle, in kvpress too
	}
	var presses []*press.Press
	for _, tc := range cases {
		p, err := press.Parse(tc.name, tc.ratio)
		if err != nil {
			t.Fatal(err)
		}
		presses = append(presses, p)
	}
	runs := runQuantPresses(t, b, &recs[0], presses)
	want := strings.TrimSpace(recs[0].Turns[0].Answer)
	for i, tc := range cases {
		r := runs[i]
		t.Logf("%s %.2f: %q, %d context tokens stored in %.3f of bf16's bytes", tc.name, tc.ratio, r.answer, r.contextTokens, float64(r.stored)/float64(r.full))
		if r.answer != want {
			t.Errorf("%s %.2f answered %q, want %q", tc.name, tc.ratio, r.answer, want)
		}
		if r.stored >= r.full {
			t.Errorf("%s %.2f: %d bytes stored, not below bf16's %d", tc.name, tc.ratio, r.stored, r.full)
		}
	}
}
