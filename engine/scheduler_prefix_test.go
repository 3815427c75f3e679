package engine

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

// run submits a job and returns its choice-0 ids and usage.
func run(t *testing.T, s *Scheduler, job Job) ([]int, Usage) {
	t.Helper()
	st, err := s.Submit(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	ids, _, _, err := collect(t, st)
	if err != nil {
		t.Fatal(err)
	}
	return ids[0], st.Usage()
}

// TestPrefixReuseMultiTurn: the second turn of a conversation finds the
// whole first turn cached — prompt and answer — and generates what a
// scheduler without a prefix cache generates.
func TestPrefixReuseMultiTurn(t *testing.T) {
	b := tinychat(t)
	pc := NewPrefixCache(b.Net, kvcache.PoolConfig{Budget: 64 << 20})
	s := NewScheduler(b, SchedulerConfig{Cache: pc})
	defer s.Close()
	plain := NewScheduler(b, SchedulerConfig{})
	defer plain.Close()

	turn1 := chatIDs(t, b, "Write a short poem about the sea.")
	job := Job{Prompt: turn1, MaxTokens: 24, IgnoreEOS: true}
	out1, u1 := run(t, s, job)
	if u1.CachedTokens != 0 || len(out1) != 24 {
		t.Fatalf("first turn: %+v, %d tokens", u1, len(out1))
	}
	turn2 := slices.Concat(turn1, out1, chatIDs(t, b, "Now a longer one."))
	job.Prompt = turn2
	out2, u2 := run(t, s, job)
	// The cache holds the prompt and every answer token but the last,
	// which was sampled and never fed back.
	if want := len(turn1) + len(out1) - 1; u2.CachedTokens != want {
		t.Errorf("second turn cached %d tokens, want %d", u2.CachedTokens, want)
	}
	ref, _ := run(t, plain, job)
	if !slices.Equal(out2, ref) {
		t.Errorf("with a cached prefix:\n%v\nwithout:\n%v", out2, ref)
	}
	// The same prompt again: all but its last token is cached.
	_, u3 := run(t, s, job)
	if u3.CachedTokens != len(turn2)-1 {
		t.Errorf("repeated prompt cached %d of %d", u3.CachedTokens, len(turn2))
	}
	if st := s.Stats(); st.CachedTokens != int64(u2.CachedTokens+u3.CachedTokens) || st.KV.PrefixTokens == 0 {
		t.Errorf("stats %+v", st)
	}
	settle(func() bool { return s.Stats().Running == 0 })
	pc.Flush()
	if used, _ := pc.Pool().Stats(); used != 0 {
		t.Errorf("after Flush the pool has %d blocks in use", used)
	}
}

// TestPrefixSalt: the same prompt under another salt finds nothing.
func TestPrefixSalt(t *testing.T) {
	b := tinychat(t)
	pc := NewPrefixCache(b.Net, kvcache.PoolConfig{Budget: 64 << 20})
	s := NewScheduler(b, SchedulerConfig{Cache: pc})
	defer s.Close()
	prompt := chatIDs(t, b, "What is the capital of France?")
	for _, tc := range []struct {
		salt   string
		cached int
	}{{"a", 0}, {"b", 0}, {"a", len(prompt) - 1}, {"", 0}, {"b", len(prompt) - 1}} {
		_, u := run(t, s, Job{Prompt: prompt, MaxTokens: 2, Salt: tc.salt})
		if u.CachedTokens != tc.cached {
			t.Errorf("salt %q: cached %d, want %d", tc.salt, u.CachedTokens, tc.cached)
		}
	}
}

// TestPrefixEviction: under a budget that holds a few conversations, kept
// caches are evicted to admit new ones; every request completes, and a
// flush empties the pool.
func TestPrefixEviction(t *testing.T) {
	b := tinychat(t)
	var prompts [][]int
	for i := range 12 {
		prompts = append(prompts, chatIDs(t, b, fmt.Sprintf("Conversation %d: tell me about the number %d and its friends.", i, i*7)))
	}
	probe := NewPoolCache(b.Net, kvcache.PoolConfig{})
	budget := 6 * probe.SeqBytes(len(prompts[0])+40) // four running, two kept
	pc := NewPrefixCache(b.Net, kvcache.PoolConfig{Budget: budget})
	s := NewScheduler(b, SchedulerConfig{Cache: pc, MaxBatch: 4})
	defer s.Close()
	var streams []*Stream
	for _, p := range prompts {
		st, err := s.Submit(context.Background(), Job{Prompt: p, MaxTokens: 40, IgnoreEOS: true})
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
	}
	for i, st := range streams {
		if _, _, _, err := collect(t, st); err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
	st := s.Stats()
	if st.KV.PrefixEvictions == 0 || st.KV.UsedBytes > budget {
		t.Errorf("no eviction, or over the budget: %+v", st.KV)
	}
	settle(func() bool { return s.Stats().Running == 0 })
	pc.Flush()
	if used, _ := pc.Pool().Stats(); used != 0 {
		t.Errorf("after Flush the pool has %d blocks in use", used)
	}
}

// TestPickPolicy checks the choice among waiting requests: the longest
// cached prefix first, ties to the earliest, a long-skipped request first,
// and a request that shares an uncached prefix with a prompt being computed
// waits.
func TestPickPolicy(t *testing.T) {
	b := tinychat(t)
	pc := NewPrefixCache(b.Net, kvcache.PoolConfig{})
	seqFor := func(ids []int) *kvcache.Seq { // a cache of ids, computed by the model
		c := pc.Pool().NewSeq()
		if _, err := b.Net.Forward(c, ids, model.NoLogits); err != nil {
			t.Fatal(err)
		}
		return c
	}
	ids := func(from, n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = from + i
		}
		return out
	}
	doc := ids(100, 80)
	pc.Release(seqFor(doc), "", doc)
	req := func(prompt []int, salt string) *request {
		return &request{job: Job{Prompt: prompt, Salt: salt}, n: 1}
	}
	cold := req(ids(500, 90), "")
	short := req(slices.Concat(doc[:40], ids(900, 10)), "")
	long := req(slices.Concat(doc, ids(700, 10)), "")
	otherTenant := req(slices.Concat(doc, ids(800, 10)), "t")
	for _, tc := range []struct {
		name    string
		queue   []*request
		running []*request
		free    int
		want    *request
	}{
		{"longest cached prefix", []*request{cold, short, long}, nil, 8, long},
		{"salt counts", []*request{cold, otherTenant, short}, nil, 8, short},
		{"ties to the earliest", []*request{cold, otherTenant}, nil, 8, cold},
		{"no place", []*request{{job: Job{Prompt: doc}, n: 3}}, nil, 2, nil},
		{"waits for a shared prompt being computed", []*request{req(slices.Concat(ids(500, 60), ids(1, 5)), ""), short}, []*request{cold}, 8, short},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Scheduler{cfg: SchedulerConfig{Cache: pc, MaxBatch: 8}, queue: tc.queue}
			l := &loopState{s: s, running: tc.running}
			if got := l.pick(tc.free); got != tc.want {
				t.Errorf("picked %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("no starvation", func(t *testing.T) {
		first := req(ids(500, 90), "")
		s := &Scheduler{cfg: SchedulerConfig{Cache: pc, MaxBatch: 8}}
		l := &loopState{s: s}
		for i := range maxSkips + 1 {
			s.queue = []*request{first, req(slices.Concat(doc, ids(1000+i, 3)), "")}
			got := l.pick(8)
			if (got == first) != (i == maxSkips) {
				t.Fatalf("round %d: picked the cold request: %v", i, got == first)
			}
		}
	})
	t.Run("a long-skipped request holds the line for places", func(t *testing.T) {
		big := &request{job: Job{Prompt: ids(500, 90)}, n: 4, skipped: maxSkips}
		s := &Scheduler{cfg: SchedulerConfig{Cache: pc, MaxBatch: 8}, queue: []*request{big, long}}
		l := &loopState{s: s}
		if got := l.pick(2); got != nil {
			t.Errorf("picked %v while the skipped request waits for places", got)
		}
		if got := l.pick(4); got != big {
			t.Errorf("picked %v, want the skipped request", got)
		}
	})
	pc.Flush()
	if used, _ := pc.Pool().Stats(); used != 0 {
		t.Errorf("after Flush the pool has %d blocks in use", used)
	}
}
