package engine

import (
	"context"
	"errors"
	"io"
	"math"
	"slices"
	"testing"
)

// TestSubmitEmbed: embeddings computed by the scheduler — in chunks, the
// inputs one after another in one cache, batched with a generation —
// equal model.Embedding's, and the generation equals Generate's; the pool
// is empty after.
func TestSubmitEmbed(t *testing.T) {
	b := tinychat(t)
	s := NewScheduler(b, SchedulerConfig{PrefillTokens: 128})
	defer s.Close()
	long := make([]int, 600) // several chunks
	for i := range long {
		long[i] = 3 + i*7%4000
	}
	inputs := [][]int{long, b.Tokenizer.Encode("hello world"), long[:300]}
	prompt := chatIDs(t, b, "Name a fruit.")
	gen, err := s.Submit(context.Background(), Job{Prompt: prompt, MaxTokens: 12, IgnoreEOS: true, Sampling: Sampling{}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.SubmitEmbed(context.Background(), EmbedJob{Inputs: inputs})
	if err != nil {
		t.Fatal(err)
	}
	got := make([][]float32, len(inputs))
	for {
		ev, err := st.Recv(context.Background())
		if err == io.EOF {
			break
		}
		if err != nil || ev.Err != nil {
			t.Fatal(err, ev.Err)
		}
		got[ev.Choice] = ev.Embedding
	}
	if u := st.Usage(); u.PromptTokens != 600+len(inputs[1])+300 {
		t.Errorf("usage %+v", u)
	}
	for i, ids := range inputs {
		want, err := b.Net.Embedding(ids)
		if err != nil {
			t.Fatal(err)
		}
		if len(got[i]) != len(want) {
			t.Fatalf("input %d: %d values, want %d", i, len(got[i]), len(want))
		}
		for j := range want {
			if d := math.Abs(float64(got[i][j] - want[j])); d > 1e-4*(1+math.Abs(float64(want[j]))) {
				t.Fatalf("input %d value %d: %v, want %v", i, j, got[i][j], want[j])
			}
		}
	}
	ids, _, _, err := collect(t, gen)
	if want, _ := generate(t, b, prompt, 12, Sampling{}); err != nil || !slices.Equal(ids[0], want) {
		t.Errorf("generation beside the embeddings: %v %v, want %v", ids[0], err, want)
	}
	if !settle(func() bool { return s.Stats().KV.UsedBlocks == 0 }) {
		t.Errorf("%d blocks still held", s.Stats().KV.UsedBlocks)
	}
}

// TestSubmitEmbedLimits: bad inputs are refused at once, a full queue
// gives ErrQueueFull, and a cancelled request ends with its context's
// error and gives its cache back.
func TestSubmitEmbedLimits(t *testing.T) {
	b := tinychat(t)
	s := NewScheduler(b, SchedulerConfig{QueueSize: 1, MaxBatch: 1})
	defer s.Close()
	var pe *PromptError
	for _, in := range [][][]int{nil, {{}}, {{1, 2, 99999}}, {make([]int, b.ContextLength()+1)}} {
		if _, err := s.SubmitEmbed(context.Background(), EmbedJob{Inputs: in}); !errors.As(err, &pe) {
			t.Errorf("%d inputs: %v, want a PromptError", len(in), err)
		}
	}
	long := make([]int, 3000)
	for i := range long {
		long[i] = 5 + i%3000
	}
	ctx, cancel := context.WithCancel(context.Background())
	first, err := s.SubmitEmbed(ctx, EmbedJob{Inputs: [][]int{long, long}})
	if err != nil {
		t.Fatal(err)
	}
	settle(func() bool { return s.Stats().Running == 1 })
	second, err := s.SubmitEmbed(context.Background(), EmbedJob{Inputs: [][]int{long[:10]}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SubmitEmbed(context.Background(), EmbedJob{Inputs: [][]int{long[:10]}}); !errors.Is(err, ErrQueueFull) {
		t.Errorf("third request: %v, want ErrQueueFull", err)
	}
	cancel()
	var last error
	for {
		ev, err := first.Recv(context.Background())
		if err == io.EOF {
			break
		}
		if ev.Err != nil {
			last = ev.Err
		}
	}
	if !errors.Is(last, context.Canceled) {
		t.Errorf("cancelled request ended with %v", last)
	}
	for {
		ev, err := second.Recv(context.Background())
		if err == io.EOF {
			break
		}
		if ev.Err != nil {
			t.Errorf("second request: %v", ev.Err)
		}
	}
	if !settle(func() bool { return s.Stats().KV.UsedBlocks == 0 }) {
		t.Errorf("%d blocks still held", s.Stats().KV.UsedBlocks)
	}
}
