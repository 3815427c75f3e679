package model

import "testing"

// TestForwardBatchMatchesSingle checks that sequences of different lengths
// run together (one in decode, others in prefill) give the logits each
// gets alone.
func TestForwardBatchMatchesSingle(t *testing.T) {
	for _, name := range []string{"gemma3", "mistral-swa", "qwen2"} {
		t.Run(name, func(t *testing.T) {
			m := loadDir(t, "testdata/archs/"+name)
			var golden []archGolden
			readJSON(t, "testdata/archs/golden.json", &golden)
			ids := golden[0].InputIDs
			v := m.Config.VocabSize
			prompts := [][]int{ids[:50], ids[10:13], ids[:96]}
			// Alone.
			var want [][]float32
			for _, p := range prompts {
				cache := m.NewCache()
				if _, err := m.Forward(cache, p[:len(p)-1], NoLogits); err != nil {
					t.Fatal(err)
				}
				l, err := m.Forward(cache, p[len(p)-1:], LastLogits)
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, append([]float32(nil), l...))
			}
			// Together: the first sequence's prompt is cached already and
			// only its last token runs; the others prefill whole.
			first := m.NewCache()
			if _, err := m.Forward(first, prompts[0][:49], NoLogits); err != nil {
				t.Fatal(err)
			}
			steps := []Step{
				{Cache: first, Tokens: prompts[0][49:], Output: LastLogits, Logits: make([]float32, v)},
				{Cache: m.NewCache(), Tokens: prompts[1], Output: LastLogits, Logits: make([]float32, v)},
				{Cache: m.NewCache(), Tokens: prompts[2], Output: AllLogits, Logits: make([]float32, 96*v)},
			}
			if err := m.ForwardBatch(steps); err != nil {
				t.Fatal(err)
			}
			got := [][]float32{steps[0].Logits, steps[1].Logits, steps[2].Logits[95*v:]}
			for i := range got {
				if d := maxAbsDiff(got[i], want[i]); d > 1e-4 {
					t.Errorf("sequence %d: batched logits differ by %g", i, d)
				}
			}
			if err := m.ForwardBatch([]Step{steps[1], steps[1]}); err == nil {
				t.Error("two steps sharing a cache were accepted")
			}
		})
	}
}
