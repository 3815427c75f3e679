package press

import (
	"testing"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

func loadTiny(t *testing.T) *model.Model {
	t.Helper()
	pool := compute.NewPool(0)
	t.Cleanup(pool.Close)
	m, err := model.Load(model.Source{Dir: "../model/testdata/archs/qwen2"}, pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestDecodingCompression decodes with compression every 8 tokens back to
// 40 and checks that the cache stays bounded and its blocks are freed.
func TestDecodingCompression(t *testing.T) {
	m := loadTiny(t)
	p, _ := New("keydiff", 0)
	d := &Decoding{Press: p, Interval: 8, Target: 40}
	pool := m.NewPool(0, 0)
	seq := pool.NewSeq()
	defer seq.Release()
	prompt := make([]int, 64)
	for i := range prompt {
		prompt[i] = 100 + i
	}
	logits, err := m.Forward(seq, prompt, model.LastLogits)
	if err != nil {
		t.Fatal(err)
	}
	compressed := 0
	for step := range 32 {
		tok := argmaxF(logits)
		if logits, err = m.Forward(seq, []int{tok}, model.LastLogits); err != nil {
			t.Fatal(err)
		}
		did, err := d.Step(m, seq, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if did {
			compressed++
			if got := seq.Tokens(); got != 40 {
				t.Fatalf("step %d: %d tokens after compression, want 40", step, got)
			}
		}
		if compressed > 0 && seq.Tokens() > 40+8 {
			t.Fatalf("step %d: cache grew to %d tokens", step, seq.Tokens())
		}
	}
	if compressed != 4 {
		t.Errorf("compressed %d times in 32 steps, want 4", compressed)
	}
	if seq.Next() != 64+32 {
		t.Errorf("positions moved: next %d", seq.Next())
	}
}

// TestBatchAfterCompression decodes two sequences compressed differently
// together and checks each gets the logits it gets alone.
func TestBatchAfterCompression(t *testing.T) {
	m := loadTiny(t)
	v := m.Config.VocabSize
	pool := m.NewPool(0, 0)
	mk := func(n int, ratio float64, name string) []*seqPair {
		var out []*seqPair
		for range 2 {
			s := pool.NewSeq()
			ids := make([]int, n)
			for i := range ids {
				ids[i] = 7 + 3*i
			}
			if _, err := m.Forward(s, ids, model.NoLogits); err != nil {
				t.Fatal(err)
			}
			p, _ := New(name, ratio)
			if err := p.Apply(m, s, nil); err != nil {
				t.Fatal(err)
			}
			out = append(out, &seqPair{seq: s})
		}
		return out
	}
	a, b := mk(70, 0.5, "keydiff"), mk(33, 0.25, "streaming_llm")
	alone := [][]float32{}
	for _, sp := range []*seqPair{a[0], b[0]} {
		l, err := m.Forward(sp.seq, []int{11}, model.LastLogits)
		if err != nil {
			t.Fatal(err)
		}
		alone = append(alone, append([]float32(nil), l...))
	}
	steps := []model.Step{
		{Cache: a[1].seq, Tokens: []int{11}, Output: model.LastLogits, Logits: make([]float32, v)},
		{Cache: b[1].seq, Tokens: []int{11}, Output: model.LastLogits, Logits: make([]float32, v)},
	}
	if err := m.ForwardBatch(steps); err != nil {
		t.Fatal(err)
	}
	for i := range steps {
		for j := range alone[i] {
			if d := alone[i][j] - steps[i].Logits[j]; d > 1e-4 || d < -1e-4 {
				t.Fatalf("sequence %d: batched logit %d differs by %g", i, j, d)
			}
		}
	}
	for _, sp := range append(a, b...) {
		sp.seq.Release()
	}
	if used, _ := pool.Stats(); used != 0 {
		t.Errorf("%d blocks leaked", used)
	}
}

type seqPair struct{ seq *kvcache.Seq }

func argmaxF(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}
