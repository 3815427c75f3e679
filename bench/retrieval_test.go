package bench

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/retrieve"
)

// TestAccuracyWithRetrieval runs one record, both turns, with the full
// read counted (none) and with quest at 1/8, resident and with the KV in
// a cold tier: none reads every token and gives the full cache's answers;
// quest reads an eighth of the tokens, the same answers resident or cold,
// and cold keeps far fewer bytes resident; the JSON carries the fields;
// the plot draws.
func TestAccuracyWithRetrieval(t *testing.T) {
	recs, b := tinychatOn(t, "niah_multikey", 1)
	eighth := retrieve.Budget{Fraction: 0.125}
	specs := []RetrievalSpec{{Name: "none", Budget: retrieve.Budget{Fraction: 1}}, {Name: "quest", Budget: eighth}, {Name: "quest", Budget: eighth, Cold: "memory"}}
	runs, err := Accuracy(context.Background(), b, recs, nil, AccuracyOptions{Turns: 2, Format: kvcache.BF16, Retrieval: specs})
	if err != nil {
		t.Fatal(err)
	}
	full, err := Accuracy(context.Background(), b, recs, nil, AccuracyOptions{Turns: 2, Format: kvcache.BF16})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 3 || runs[0].Total != 2 {
		t.Fatalf("%d runs, first of %d turns", len(runs), runs[0].Total)
	}
	none, quest, cold := runs[0].RetrievalResult, runs[1].RetrievalResult, runs[2].RetrievalResult
	if none.TokensRead != none.TokensCached || none.KVBytesReadPerStep != none.FullBF16BytesPerStep || none.Steps == 0 {
		t.Errorf("none: %+v, want every token read", none)
	}
	for i, r := range runs[0].Records {
		if r.Answer != full[0].Records[i].Answer {
			t.Errorf("none, turn %d: %q, the full cache says %q", r.Turn, r.Answer, full[0].Records[i].Answer)
		}
	}
	if f := quest.TokensRead / quest.TokensCached; f > 0.126 || f < 0.1 {
		t.Errorf("quest at 1/8 read %.3f of the tokens", f)
	}
	for i, r := range runs[1].Records {
		if r.Answer != runs[2].Records[i].Answer {
			t.Errorf("quest turn %d: %q resident, %q cold", r.Turn, r.Answer, runs[2].Records[i].Answer)
		}
	}
	if cold.Resident > quest.Resident/4 || cold.ColdFetched == 0 || cold.Cold != "memory" {
		t.Errorf("cold: %.0f bytes resident (%.0f without the tier), %.0f fetched per step", cold.Resident, quest.Resident, cold.ColdFetched)
	}
	data, err := json.Marshal(Report{Runs: runs})
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"kv_bytes_read_per_step"`, `"kv_bytes_resident"`, `"retrieval":"quest"`, `"kv_bytes"`} {
		if !strings.Contains(string(data), field) {
			t.Errorf("JSON lacks %s", field)
		}
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil || !back.HasRetrieval() {
		t.Fatalf("read back: %v", err)
	}
	path := t.TempDir() + "/r.png"
	if err := PlotRetrieval(&back, "test", path); err != nil {
		t.Fatal(err)
	}
	if png, err := os.ReadFile(path); err != nil || string(png[1:4]) != "PNG" {
		t.Fatalf("plot: %v", err)
	}
}
