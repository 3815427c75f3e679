package semcache_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kvserve/kvserve/semcache"
	"github.com/kvserve/kvserve/semcache/embed"
)

func chatBody(q string, extra string) []byte {
	return []byte(fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":%q}],"temperature":0,"max_tokens":64%s}`, q, extra))
}

func query(t testing.TB, tenant, q, extra string) *semcache.Query {
	t.Helper()
	r, err := semcache.ParseRequest(chatBody(q, extra))
	if err != nil {
		t.Fatal(err)
	}
	return &semcache.Query{Tenant: tenant, Request: r}
}

func answer(text, finish string) *semcache.Answer {
	return &semcache.Answer{Choices: []semcache.Choice{{Text: text, Finish: finish}}}
}

func testConfig() semcache.Config {
	cfg := semcache.DefaultConfig()
	cfg.Default = semcache.Policy{Threshold: 0.6}
	cfg.LoadAdapt = 0
	cfg.Categories = map[string]semcache.Policy{"code": {Threshold: 0.6, TTL: semcache.Duration(time.Hour)}}
	return cfg
}

func newCache(t testing.TB, cfg semcache.Config) *semcache.Cache {
	t.Helper()
	c, err := semcache.New(context.Background(), cfg, embed.NewHash(512))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTenantsNeverShare(t *testing.T) {
	ctx := context.Background()
	c := newCache(t, testConfig())
	if why := c.Store(ctx, query(t, "alice", "What does errors.As do in Go?", ""), nil, answer("alice's answer", "stop")); why != "" {
		t.Fatalf("store: %s", why)
	}
	for _, q := range []string{"What does errors.As do in Go?", "what does errors.as do in go", "In Go, what does errors.As do?"} {
		if res := c.Lookup(ctx, query(t, "bob", q, "")); res.Hit {
			t.Fatalf("bob got alice's entry for %q (tier %s)", q, res.Tier)
		}
		if res := c.Lookup(ctx, query(t, "", q, "")); res.Hit {
			t.Fatalf("the anonymous tenant got alice's entry for %q", q)
		}
		res := c.Lookup(ctx, query(t, "alice", q, ""))
		if !res.Hit || res.Answer.Choices[0].Text != "alice's answer" {
			t.Fatalf("alice missed her own entry for %q: %+v", q, res)
		}
	}
}

func TestTiers(t *testing.T) {
	ctx := context.Background()
	c := newCache(t, testConfig())
	c.Store(ctx, query(t, "", "What does errors.As do in Go?", ""), nil, answer("A", "stop"))
	for _, tc := range []struct{ q, extra, tier string }{
		{"What does errors.As do in Go?", "", "exact"},
		{"What does errors.As do in Go?", `,"stream":true,"user":"x"`, "exact"},
		{"  WHAT does errors.As do in Go ?  ", "", "surface"},
		{"Hi! What does errors.As do in Go?", "", "surface"},
		{"In Go, what does errors.As do?", "", "semantic"},
		{"What does errors.As do in Go?", `,"max_tokens":65`, ""}, // another partition
		{"What does errors.As do in Go?", `,"messages":[{"role":"system","content":"x"},{"role":"user","content":"What does errors.As do in Go?"}]`, ""},
	} {
		res := c.Lookup(ctx, query(t, "", tc.q, tc.extra))
		if res.Tier != tc.tier || res.Hit != (tc.tier != "") {
			t.Errorf("%q%s: tier %q (hit %v, sim %.3f, reason %s), want %q", tc.q, tc.extra, res.Tier, res.Hit, res.Similarity, res.Reason, tc.tier)
		}
	}
}

func TestNeverStored(t *testing.T) {
	ctx := context.Background()
	c := newCache(t, testConfig())
	sampled, _ := semcache.ParseRequest([]byte(`{"messages":[{"role":"user","content":"tell me a story"}]}`))
	optIn, _ := semcache.ParseRequest([]byte(`{"messages":[{"role":"user","content":"tell me a story"}],"semcache_store_sampled":true}`))
	for _, tc := range []struct {
		name string
		q    *semcache.Query
		a    *semcache.Answer
		want string
	}{
		{"truncated", query(t, "", "q1", ""), answer("cut", "length"), "truncated"},
		{"no answer", query(t, "", "q2", ""), &semcache.Answer{}, "empty"},
		{"sampled", &semcache.Query{Request: sampled}, answer("once upon", "stop"), "sampled"},
		{"unknown category", query(t, "", "q3", `,"semcache_category":"poetry"`), answer("x", "stop"), "unknown_category"},
		{"sampled, opted in", &semcache.Query{Request: optIn}, answer("once upon", "stop"), ""},
		{"greedy", query(t, "", "q4", ""), answer("y", "stop"), ""},
	} {
		if got := c.Store(ctx, tc.q, nil, tc.a); got != tc.want {
			t.Errorf("%s: Store = %q, want %q", tc.name, got, tc.want)
		}
		res := c.Lookup(ctx, tc.q)
		if res.Hit != (tc.want == "") {
			t.Errorf("%s: hit %v after store %q", tc.name, res.Hit, tc.want)
		}
	}
	res := c.Lookup(ctx, query(t, "", "q", `,"semcache_category":"poetry"`))
	if res.Hit || !errors.Is(res.Err, semcache.ErrUnknownCategory) {
		t.Fatalf("unknown category: %+v", res)
	}
}

func TestTTLNotSlidingUnlessAsked(t *testing.T) {
	ctx := context.Background()
	for _, sliding := range []bool{false, true} {
		cfg := testConfig()
		cfg.SlidingTTL = sliding
		c := newCache(t, cfg)
		now := time.Unix(1e9, 0)
		c.SetClock(func() time.Time { return now })
		q := query(t, "", "What is a goroutine?", `,"semcache_category":"code"`)
		c.Store(ctx, q, nil, answer("A", "stop"))
		now = now.Add(50 * time.Minute)
		if !c.Lookup(ctx, q).Hit {
			t.Fatal("miss before the TTL")
		}
		now = now.Add(20 * time.Minute) // 70 min after the store, 20 after the hit
		if got := c.Lookup(ctx, q).Hit; got != sliding {
			t.Fatalf("sliding=%v: hit %v 70 min after the store", sliding, got)
		}
	}
}

func TestQuotaEvictsLeastRecentlyUsed(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig()
	cfg.Categories["code"] = semcache.Policy{Threshold: 1.01, MaxEntries: 2}
	c := newCache(t, cfg)
	cat := `,"semcache_category":"code"`
	a, b, d := query(t, "", "What is a channel?", cat), query(t, "", "What is a mutex?", cat), query(t, "", "What is a slice?", cat)
	c.Store(ctx, a, nil, answer("A", "stop"))
	c.Store(ctx, b, nil, answer("B", "stop"))
	c.Lookup(ctx, a) // a is now the most recently used
	c.Store(ctx, d, nil, answer("D", "stop"))
	if !c.Lookup(ctx, a).Hit || c.Lookup(ctx, b).Hit || !c.Lookup(ctx, d).Hit {
		t.Fatal("want b evicted, a and d kept")
	}
	for _, s := range c.Stats() {
		if s.Category == "code" && (s.Entries != 2 || s.Evicted != 1) {
			t.Fatalf("stats: %+v", s)
		}
	}
}

func TestBackOffAndThresholds(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig()
	cfg.Semantic, cfg.Surface = true, false
	q := query(t, "", "In Go, what does strings.Split do?", "")
	for _, tc := range []struct {
		threshold, margin, load, adapt float64
		hit                            bool
	}{
		{0.5, 0, 0.5, 0, true},
		{0.5, 0.5, 0.5, 0, false}, // the runner-up is too close
		{0.99, 0, 0.5, 0, false},
	} {
		cfg.Default = semcache.Policy{Threshold: tc.threshold, Margin: tc.margin}
		c := newCache(t, cfg)
		c.Store(ctx, query(t, "", "what does strings.Split do in go?", ""), nil, answer("split", "stop"))
		c.Store(ctx, query(t, "", "what does strings.Fields do in go?", ""), nil, answer("fields", "stop"))
		res := c.Lookup(ctx, q)
		if res.Hit != tc.hit {
			t.Errorf("threshold %v margin %v: hit %v (sim %.3f, runner-up %.3f, %s)", tc.threshold, tc.margin, res.Hit, res.Similarity, res.RunnerUp, res.Reason)
		}
	}
	// Load moves the threshold: the same similarity misses when idle and
	// hits when saturated.
	cfg.Default = semcache.Policy{Threshold: 0.9}
	cfg.LoadAdapt = 0.1
	c := newCache(t, cfg)
	c.Store(ctx, query(t, "", "what does strings.Split do in go programs?", ""), nil, answer("split", "stop"))
	load := 0.0
	c.SetLoad(func() float64 { return load })
	probe := query(t, "", "what does strings.Split do in go code?", "")
	idle := c.Lookup(ctx, probe)
	load = 1
	busy := c.Lookup(ctx, probe)
	if idle.Threshold <= busy.Threshold || idle.Threshold-busy.Threshold < 0.199 {
		t.Fatalf("thresholds idle %.3f busy %.3f", idle.Threshold, busy.Threshold)
	}
	if s := busy.Similarity; s > idle.Threshold || s < busy.Threshold {
		t.Skipf("probe similarity %.3f is not between the two thresholds", s)
	}
	if idle.Hit || !busy.Hit {
		t.Fatalf("idle hit %v, busy hit %v (sim %.3f)", idle.Hit, busy.Hit, busy.Similarity)
	}
}

func TestClassifier(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig()
	cfg.Categories = map[string]semcache.Policy{
		"code": {Threshold: 0.6, Examples: []string{"what does strings.Split do in go", "what does http.Get do in go"}},
		"math": {Threshold: 0.6, Examples: []string{"what is 3 plus 4", "what is 12 times 9"}},
	}
	c := newCache(t, cfg)
	res := c.Lookup(ctx, query(t, "", "What is 7 times 8?", ""))
	if res.Category != "math" || !res.Classified {
		t.Fatalf("classified %q (%v), want math", res.Category, res.Classified)
	}
}

type failing struct{}

func (failing) Embed(context.Context, []string) ([][]float32, error) {
	return nil, errors.New("connection refused")
}
func (failing) Name() string { return "failing" }

func TestFailingEmbedderMisses(t *testing.T) {
	ctx := context.Background()
	c, err := semcache.New(ctx, testConfig(), failing{})
	if err != nil {
		t.Fatal(err)
	}
	q := query(t, "", "What is a goroutine?", "")
	if why := c.Store(ctx, q, nil, answer("A", "stop")); why != "embed_error" {
		t.Fatalf("Store = %q, want embed_error", why)
	}
	if res := c.Lookup(ctx, q); res.Hit || res.Reason != "embed_error" || res.Err == nil {
		t.Fatalf("Lookup = %+v", res)
	}
	cfg := testConfig()
	cfg.Categories["code"] = semcache.Policy{Threshold: 0.5, Examples: []string{"x"}}
	if _, err := semcache.New(ctx, cfg, failing{}); err == nil {
		t.Fatal("New with examples and a failing embedder must fail at start")
	}
}

// BenchmarkLookup10k times a semantic lookup (hash embedding included)
// among 10⁴ stored entries of one category.
func BenchmarkLookup10k(b *testing.B) {
	ctx := context.Background()
	cfg := testConfig()
	cfg.Categories["code"] = semcache.Policy{Threshold: 0.95, MaxEntries: 20000}
	c := newCache(b, cfg)
	cat := `,"semcache_category":"code"`
	for i := range 10000 {
		c.Store(ctx, query(b, "", fmt.Sprintf("What does function number %d of package p%d do in Go?", i, i%97), cat), nil, answer(fmt.Sprint(i), "stop"))
	}
	qs := make([]*semcache.Query, 100)
	for i := range qs {
		qs[i] = query(b, "", fmt.Sprintf("In Go, what does function %d of package p%d do?", i*37, i), cat)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.Lookup(ctx, qs[i%len(qs)])
	}
}

func TestUncalibratedEmbedderTurnsSemanticOff(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig()
	cfg.Embedder, cfg.CalibratedFor = "bert:some-model", "hash"
	c := newCache(t, cfg)
	if c.Calibrated() || c.Config().Semantic {
		t.Fatal("thresholds of another embedder were trusted")
	}
	c.Store(ctx, query(t, "", "What does errors.As do in Go?", ""), nil, answer("A", "stop"))
	if res := c.Lookup(ctx, query(t, "", "In Go, what does errors.As do?", "")); res.Hit || res.Reason != "no_semantic" {
		t.Fatalf("paraphrase: %+v", res)
	}
	if res := c.Lookup(ctx, query(t, "", "what does errors.As do in Go", "")); !res.Hit || res.Tier != "surface" {
		t.Fatalf("the hash tiers must still answer: %+v", res)
	}
}
