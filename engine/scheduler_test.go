package engine

import (
	"context"
	"errors"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/tokenizer/chat"
)

var (
	tinyOnce sync.Once
	tiny     *Bundle
	tinyErr  error
)

// tinychat returns the bundled model, loaded once for the package's tests.
func tinychat(t *testing.T) *Bundle {
	t.Helper()
	tinyOnce.Do(func() { tiny, tinyErr = Open("", compute.NewPool(0)) })
	if tinyErr != nil {
		t.Fatal(tinyErr)
	}
	return tiny
}

func chatIDs(t *testing.T, b *Bundle, text string) []int {
	t.Helper()
	p, err := b.ChatPrompt([]chat.Message{{Role: "user", Content: text}})
	if err != nil {
		t.Fatal(err)
	}
	return b.Tokenizer.Encode(p)
}

// collect reads a stream to its end and returns each choice's ids, text
// and finish reason.
func collect(t *testing.T, st *Stream) (ids [][]int, texts []string, fin []Finish, err error) {
	t.Helper()
	ids, texts, fin = make([][]int, st.N), make([]string, st.N), make([]Finish, st.N)
	for {
		ev, e := st.Recv(context.Background())
		if e == io.EOF {
			return
		}
		if e != nil {
			t.Fatal(e)
		}
		if ev.Err != nil {
			err = ev.Err
			continue
		}
		if ev.Token >= 0 {
			ids[ev.Choice] = append(ids[ev.Choice], ev.Token)
		}
		texts[ev.Choice] += ev.Text
		if ev.Finish != "" {
			fin[ev.Choice] = ev.Finish
		}
	}
}

func generate(t *testing.T, b *Bundle, prompt []int, max int, sp Sampling) ([]int, Finish) {
	t.Helper()
	res, err := b.Generate(context.Background(), b.Net.NewCache(), Request{Prompt: prompt, MaxTokens: max, Sampling: sp}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.Output, res.Finish
}

// settle waits until check holds or a second has passed.
func settle(check func() bool) bool {
	for range 100 {
		if check() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return check()
}

func TestSchedulerMatchesGenerate(t *testing.T) {
	b := tinychat(t)
	s := NewScheduler(b, SchedulerConfig{})
	defer s.Close()
	for _, tc := range []struct {
		name string
		sp   Sampling
	}{
		{"greedy", Sampling{}},
		{"seeded", Sampling{Temperature: 0.8, TopP: 0.95, TopK: 40, Seed: 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prompt := chatIDs(t, b, "What does fmt.Println do?")
			want, wantFin := generate(t, b, prompt, 24, tc.sp)
			st, err := s.Submit(context.Background(), Job{Prompt: prompt, MaxTokens: 24, Sampling: tc.sp})
			if err != nil {
				t.Fatal(err)
			}
			ids, texts, fin, err := collect(t, st)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids[0], want) || fin[0] != wantFin {
				t.Errorf("scheduler gave %v %s, Generate %v %s", ids[0], fin[0], want, wantFin)
			}
			if texts[0] != b.Tokenizer.Decode(want) {
				t.Errorf("text %q, want %q", texts[0], b.Tokenizer.Decode(want))
			}
			if u := st.Usage(); u.PromptTokens != len(prompt) || u.CompletionTokens != len(want) {
				t.Errorf("usage %+v, want %d prompt and %d completion tokens", u, len(prompt), len(want))
			}
		})
	}
}

// TestSchedulerChoices checks that choice i of a request draws what a lone
// generation with seed+i draws, from one prefill and forked caches.
func TestSchedulerChoices(t *testing.T) {
	b := tinychat(t)
	s := NewScheduler(b, SchedulerConfig{})
	defer s.Close()
	prompt := chatIDs(t, b, "Write a Go function.")
	sp := Sampling{Temperature: 1, Seed: 42}
	st, err := s.Submit(context.Background(), Job{Prompt: prompt, MaxTokens: 12, Sampling: sp, N: 3})
	if err != nil {
		t.Fatal(err)
	}
	ids, _, _, err := collect(t, st)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		sp.Seed = 42 + uint64(i)
		want, _ := generate(t, b, prompt, 12, sp)
		if !slices.Equal(ids[i], want) {
			t.Errorf("choice %d: %v, want %v", i, ids[i], want)
		}
	}
	if u := st.Usage(); u.PromptTokens != len(prompt) {
		t.Errorf("usage %+v counts the prompt more than once", u)
	}
}

// TestSchedulerBatch runs several requests at once, with prompts longer
// than the prefill budget, and checks each against a lone generation.
func TestSchedulerBatch(t *testing.T) {
	b := tinychat(t)
	s := NewScheduler(b, SchedulerConfig{MaxBatch: 4, PrefillTokens: 64})
	defer s.Close()
	questions := []string{"What is a goroutine?", "Explain channels.", strings.Repeat("Tell me about maps. ", 10), "Hi", "What is a slice?", "Print hello."}
	var wg sync.WaitGroup
	got := make([][]int, len(questions))
	for i, q := range questions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := s.Submit(context.Background(), Job{Prompt: chatIDs(t, b, q), MaxTokens: 16})
			if err != nil {
				t.Error(err)
				return
			}
			ids, _, _, err := collect(t, st)
			if err != nil {
				t.Error(err)
			}
			got[i] = ids[0]
		}()
	}
	wg.Wait()
	for i, q := range questions {
		want, _ := generate(t, b, chatIDs(t, b, q), 16, Sampling{})
		if !slices.Equal(got[i], want) {
			t.Errorf("%q: batched %v, alone %v", q, got[i], want)
		}
	}
	if st := s.Stats(); st.Running != 0 || st.Queued != 0 || st.KV.UsedBlocks != 0 {
		t.Errorf("after the requests: %+v", st)
	}
}

func TestSchedulerStopStrings(t *testing.T) {
	b := tinychat(t)
	s := NewScheduler(b, SchedulerConfig{})
	defer s.Close()
	prompt := b.Tokenizer.Encode("package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(")
	full, _ := generate(t, b, prompt, 24, Sampling{})
	text := b.Tokenizer.Decode(full)
	if len(text) < 12 {
		t.Fatalf("greedy text %q too short for the test", text)
	}
	stop := text[8:11]
	st, err := s.Submit(context.Background(), Job{Prompt: prompt, MaxTokens: 24, Stop: []string{"never appears", stop}})
	if err != nil {
		t.Fatal(err)
	}
	_, texts, fin, err := collect(t, st)
	if err != nil {
		t.Fatal(err)
	}
	want := text[:strings.Index(text, stop)]
	if texts[0] != want || fin[0] != FinishStop {
		t.Errorf("got %q (%s), want %q (stop)", texts[0], fin[0], want)
	}
}

func TestStopMatcher(t *testing.T) {
	for _, tc := range []struct {
		stops  []string
		pieces []string
		want   string
		hit    bool
	}{
		{nil, []string{"ab", "cd"}, "abcd", false},
		{[]string{"cd"}, []string{"ab", "c", "d", "ef"}, "ab", true},
		{[]string{"cd"}, []string{"abc", "x"}, "abcx", false},
		{[]string{"xyz", "b"}, []string{"ax", "yb"}, "axy", true},
		{[]string{"xyz"}, []string{"ax", "y"}, "axy", false}, // flushed at the end
		{[]string{"é!"}, []string{"café", "!"}, "caf", true},
	} {
		m := stopMatcher{stops: tc.stops}
		var out string
		hit := false
		for _, p := range tc.pieces {
			s, h := m.push(p)
			out += s
			if h {
				hit = true
				break
			}
		}
		if !hit {
			out += m.flush()
		}
		if out != tc.want || hit != tc.hit {
			t.Errorf("%q over %q: %q %v, want %q %v", tc.stops, tc.pieces, out, hit, tc.want, tc.hit)
		}
	}
}

// TestSchedulerCancel cancels one request mid-generation: it ends with the
// context's error, the other request finishes, and every block goes back.
func TestSchedulerCancel(t *testing.T) {
	b := tinychat(t)
	before := runtime.NumGoroutine()
	cache := NewPoolCache(b.Net, kvcache.PoolConfig{Budget: 64 << 20})
	s := NewScheduler(b, SchedulerConfig{Cache: cache})
	prompt := chatIDs(t, b, "Tell me a story.")
	ctx, cancel := context.WithCancel(context.Background())
	st1, err := s.Submit(ctx, Job{Prompt: prompt, MaxTokens: 200, IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	st2, err := s.Submit(context.Background(), Job{Prompt: prompt, MaxTokens: 40, IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := st1.Recv(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	_, _, _, err = collect(t, st1)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled request ended with %v", err)
	}
	ids, _, fin, err := collect(t, st2)
	if err != nil || len(ids[0]) != 40 || fin[0] != FinishLength {
		t.Errorf("other request: %d tokens, %s, %v", len(ids[0]), fin[0], err)
	}
	if !settle(func() bool { return s.Stats().KV.UsedBlocks == 0 }) {
		t.Errorf("blocks still used: %+v", s.Stats().KV)
	}
	if used, _ := cache.Pool().Stats(); used != 0 {
		t.Errorf("pool has %d blocks in use", used)
	}
	s.Close()
	if !settle(func() bool { return runtime.NumGoroutine() <= before }) {
		t.Errorf("%d goroutines before, %d after", before, runtime.NumGoroutine())
	}
}

func TestSchedulerQueueFullAndClose(t *testing.T) {
	b := tinychat(t)
	s := NewScheduler(b, SchedulerConfig{MaxBatch: 1, QueueSize: 1})
	prompt := chatIDs(t, b, "Hi")
	var streams []*Stream
	var full bool
	for range 5 {
		st, err := s.Submit(context.Background(), Job{Prompt: prompt, MaxTokens: 500, IgnoreEOS: true})
		if errors.Is(err, ErrQueueFull) {
			full = true
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
	}
	if !full {
		t.Error("a queue of 1 never filled")
	}
	s.Close()
	for _, st := range streams {
		if _, _, _, err := collect(t, st); !errors.Is(err, ErrClosed) {
			t.Errorf("request after Close ended with %v", err)
		}
	}
	if _, err := s.Submit(context.Background(), Job{Prompt: prompt}); !errors.Is(err, ErrClosed) {
		t.Errorf("Submit after Close: %v", err)
	}
}

func TestSchedulerRejects(t *testing.T) {
	b := tinychat(t)
	s := NewScheduler(b, SchedulerConfig{MaxBatch: 2, Cache: NewPoolCache(b.Net, kvcache.PoolConfig{Budget: 1 << 20})})
	defer s.Close()
	long := make([]int, b.ContextLength())
	var pe *PromptError
	var pa *ParamError
	for _, tc := range []struct {
		job  Job
		want any
	}{
		{Job{}, &pe},
		{Job{Prompt: long}, &pe},
		{Job{Prompt: long[:500]}, &pe}, // over the 1 MiB KV budget
		{Job{Prompt: []int{1 << 30}}, &pe},
		{Job{Prompt: []int{5}, N: 3}, &pa},
		{Job{Prompt: []int{5}, Sampling: Sampling{TopP: 2}}, &pa},
		{Job{Prompt: []int{5}, Stop: []string{""}}, &pa},
	} {
		_, err := s.Submit(context.Background(), tc.job)
		if err == nil || !errors.As(err, tc.want) {
			t.Errorf("Submit(%d tokens, n=%d): %v", len(tc.job.Prompt), tc.job.N, err)
		}
	}
}

// TestSchedulerTrimsWhenIdle checks that once the scheduler runs out of
// work the blocks its requests released are handed back to the heap: the
// pool's free list is already empty when the test trims it again.
func TestSchedulerTrimsWhenIdle(t *testing.T) {
	b := tinychat(t)
	cache := NewPoolCache(b.Net, kvcache.PoolConfig{})
	s := NewScheduler(b, SchedulerConfig{Cache: cache})
	defer s.Close()
	st, err := s.Submit(context.Background(), Job{Prompt: chatIDs(t, b, strings.Repeat("hello there ", 50)), MaxTokens: 8, IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := collect(t, st); err != nil {
		t.Fatal(err)
	}
	if !settle(func() bool { return s.Stats().Running == 0 && cache.Pool().Kept() == 0 }) {
		t.Errorf("idle scheduler left %d released blocks untrimmed", cache.Pool().Kept())
	}
}
