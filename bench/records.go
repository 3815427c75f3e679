// Package bench measures kvserve end to end: accuracy on long-context task
// sets, and (elsewhere in the package) speed.
package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
)

// Turn is one question over a record's shared context, with its reference
// answer.
type Turn struct {
	Question string `json:"question"`
	Answer   string `json:"answer"`
}

// Record is one line of a task set such as ../shared/bench/dev.jsonl.
type Record struct {
	ID           string `json:"id"`
	Task         string `json:"task"`
	TargetTokens int    `json:"target_tokens"`
	System       string `json:"system"`
	Context      string `json:"context"`
	Turns        []Turn `json:"turns"`
	// Documents are the retrieved passages the context joins (rag.jsonl).
	Documents []Document `json:"documents,omitempty"`
}

// ReadRecords reads a JSONL task set.
func ReadRecords(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if r.ID == "" || len(r.Turns) == 0 {
			return nil, fmt.Errorf("%s:%d: record needs an id and at least one turn", path, line)
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%s: no records", path)
	}
	return recs, nil
}

// Filter keeps records of the given tasks and lengths (empty means all) and
// at most perCell records per task × length cell (0 means all), in file
// order.
func Filter(recs []Record, tasks []string, lengths []int, perCell int) []Record {
	count := map[string]int{}
	var out []Record
	for _, r := range recs {
		if len(tasks) > 0 && !slices.Contains(tasks, r.Task) {
			continue
		}
		if len(lengths) > 0 && !slices.Contains(lengths, r.TargetTokens) {
			continue
		}
		key := fmt.Sprintf("%s/%d", r.Task, r.TargetTokens)
		if perCell > 0 && count[key] >= perCell {
			continue
		}
		count[key]++
		out = append(out, r)
	}
	return out
}
