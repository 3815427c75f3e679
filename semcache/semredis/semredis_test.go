package semredis_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/kvserve/kvserve/internal/redistest"
	"github.com/kvserve/kvserve/semcache"
	"github.com/kvserve/kvserve/semcache/embed"
	"github.com/kvserve/kvserve/semcache/semredis"
	"github.com/redis/go-redis/v9"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func query(t testing.TB, tenant, q, category string) *semcache.Query {
	t.Helper()
	body := fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":%q}],"temperature":0,"max_tokens":64}`, q)
	r, err := semcache.ParseRequest([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return &semcache.Query{Tenant: tenant, Request: r, Category: category}
}

func answer(text string) *semcache.Answer {
	return &semcache.Answer{Choices: []semcache.Choice{{Text: text, Finish: "stop"}}, PromptTokens: 9, CompletionTokens: 3}
}

func config() semcache.Config {
	cfg := semcache.DefaultConfig()
	cfg.Default = semcache.Policy{Threshold: 0.6}
	cfg.LoadAdapt = 0
	cfg.Categories = map[string]semcache.Policy{
		"code":  {Threshold: 0.6, TTL: semcache.Duration(time.Hour)},
		"quick": {Threshold: 0.6, TTL: semcache.Duration(300 * time.Millisecond)},
		"one":   {Threshold: 0.6, MaxEntries: 1},
	}
	return cfg
}

// replica starts a cache persisted to url under model and restores it.
func replica(t *testing.T, url, model string) (*semcache.Cache, *semredis.Store, int, int, error) {
	t.Helper()
	c, err := semcache.New(context.Background(), config(), embed.NewHash(512))
	if err != nil {
		t.Fatal(err)
	}
	st, err := semredis.Open(semredis.Options{URL: url, Model: model, Embedder: c.Config().Embedder, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c.SetPersister(st)
	n, skipped, err := c.Restore(context.Background())
	return c, st, n, skipped, err
}

func keys(t *testing.T, url, pattern string) []string {
	t.Helper()
	opt, _ := redis.ParseURL(url)
	rc := redis.NewClient(opt)
	defer rc.Close()
	ks, err := rc.Keys(context.Background(), pattern).Result()
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func TestSecondReplicaServesFirstsEntries(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	model := "shared-" + t.Name() + fmt.Sprint(time.Now().UnixNano())
	a, st, n, _, err := replica(t, srv.URL, model)
	if err != nil || n != 0 {
		t.Fatalf("first replica restored %d entries, err %v; want 0, nil", n, err)
	}
	if why := a.Store(ctx, query(t, "alice", "What does errors.As do in Go?", "code"), nil, answer("alice's answer")); why != "" {
		t.Fatalf("store: %s", why)
	}
	a.Store(ctx, query(t, "bob", "How do I reverse a slice in Go?", "code"), nil, answer("bob's answer"))
	if ks := keys(t, srv.URL, st.KeyPrefix()+"*"); len(ks) != 2 {
		t.Fatalf("Redis holds %d keys under %s, want 2: %v", len(ks), st.KeyPrefix(), ks)
	}

	b, _, n, skipped, err := replica(t, srv.URL, model)
	if err != nil || n != 2 || skipped != 0 {
		t.Fatalf("second replica restored %d (skipped %d), err %v; want 2, 0, nil", n, skipped, err)
	}
	for _, tc := range []struct{ tenant, q, tier, want string }{
		{"alice", "What does errors.As do in Go?", "exact", "alice's answer"},
		{"alice", "what does errors.as do in go", "surface", "alice's answer"},
		{"alice", "In Go, what does errors.As do?", "semantic", "alice's answer"},
		{"bob", "How do I reverse a slice in Go?", "exact", "bob's answer"},
		{"bob", "What does errors.As do in Go?", "", ""},
		{"", "What does errors.As do in Go?", "", ""},
		{"alice", "How do I reverse a slice in Go?", "", ""},
	} {
		res := b.Lookup(ctx, query(t, tc.tenant, tc.q, "code"))
		got := ""
		if res.Hit {
			got = res.Answer.Choices[0].Text
		}
		if res.Tier != tc.tier || got != tc.want {
			t.Errorf("%s %q on the second replica: tier %q answer %q, want %q %q", tc.tenant, tc.q, res.Tier, got, tc.tier, tc.want)
		}
	}

	// Another model or embedder on the same Redis sees nothing.
	if _, _, n, _, err := replica(t, srv.URL, model+"-other"); err != nil || n != 0 {
		t.Fatalf("a replica of another model restored %d entries, err %v; want 0", n, err)
	}
}

func TestExpiredAndEvictedEntriesAreGone(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	model := "expiry-" + fmt.Sprint(time.Now().UnixNano())
	a, st, _, _, _ := replica(t, srv.URL, model)
	a.Store(ctx, query(t, "", "What is a goroutine?", "quick"), nil, answer("short-lived"))
	a.Store(ctx, query(t, "", "What is a channel?", "code"), nil, answer("an hour"))
	a.Store(ctx, query(t, "", "What is a mutex?", "one"), nil, answer("evicted"))
	a.Store(ctx, query(t, "", "What is a map?", "one"), nil, answer("kept"))
	if ks := keys(t, srv.URL, st.KeyPrefix()+"*"); len(ks) != 3 {
		t.Fatalf("Redis holds %d keys, want 3 (the quota of category one evicted the mutex entry): %v", len(ks), ks)
	}
	time.Sleep(400 * time.Millisecond)
	b, _, n, _, err := replica(t, srv.URL, model)
	if err != nil || n != 2 {
		t.Fatalf("restored %d entries, err %v; want 2 (the 300ms entry expired in Redis)", n, err)
	}
	for q, want := range map[string]string{"What is a goroutine?": "", "What is a channel?": "an hour", "What is a mutex?": "", "What is a map?": "kept"} {
		got := ""
		if res := b.Lookup(ctx, query(t, "", q, "")); res.Hit && res.Tier == "exact" {
			got = res.Answer.Choices[0].Text
		}
		if got != want {
			t.Errorf("%q after restore: %q, want %q", q, got, want)
		}
	}

	// Entries whose time is up by the restoring cache's clock are skipped
	// even while Redis still holds them.
	c, err := semcache.New(ctx, config(), embed.NewHash(512))
	if err != nil {
		t.Fatal(err)
	}
	c.SetClock(func() time.Time { return time.Now().Add(2 * time.Hour) })
	c.SetPersister(st)
	if n, skipped, err := c.Restore(ctx); err != nil || n != 1 || skipped != 1 {
		t.Fatalf("restore two hours later: %d loaded, %d skipped, err %v; want 1 (no TTL), 1 (an hour), nil", n, skipped, err)
	}
}

func TestRedisDownServesFromMemory(t *testing.T) {
	ctx := context.Background()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "redis://" + l.Addr().String() + "/0"
	l.Close() // nothing listens there now
	c, _, n, _, err := replica(t, url, "down")
	if err == nil || n != 0 {
		t.Fatalf("restore from a dead Redis: %d entries, err %v; want an error", n, err)
	}
	start := time.Now()
	for i := range 20 {
		q := fmt.Sprintf("What is %d plus %d?", i, i)
		if why := c.Store(ctx, query(t, "", q, ""), nil, answer(fmt.Sprint(2*i))); why != "" {
			t.Fatalf("store with Redis down: %s", why)
		}
		if res := c.Lookup(ctx, query(t, "", q, "")); !res.Hit {
			t.Fatalf("lookup with Redis down missed %q", q)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("20 stores with Redis down took %v: the back-off should skip it", d)
	}
}

// TestRunningReplicasReadThrough starts both replicas first: the second
// finds the first's new entry in Redis on an exact miss, for its tenant
// only, and keeps it in memory.
func TestRunningReplicasReadThrough(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	model := "live-" + fmt.Sprint(time.Now().UnixNano())
	a, _, _, _, _ := replica(t, srv.URL, model)
	b, _, _, _, _ := replica(t, srv.URL, model)
	if res := b.Lookup(ctx, query(t, "alice", "What is a rune?", "code")); res.Hit {
		t.Fatalf("hit before any store: %+v", res)
	}
	a.Store(ctx, query(t, "alice", "What is a rune?", "code"), nil, answer("an int32"))
	if res := b.Lookup(ctx, query(t, "bob", "What is a rune?", "code")); res.Hit {
		t.Fatalf("bob was served alice's entry: %+v", res)
	}
	res := b.Lookup(ctx, query(t, "alice", "What is a rune?", "code"))
	if !res.Hit || res.Tier != "exact" || res.Answer.Choices[0].Text != "an int32" {
		t.Fatalf("alice on the second replica: %+v", res)
	}
	// Now in b's memory: its surface tier answers too.
	if res := b.Lookup(ctx, query(t, "alice", "what is a rune", "code")); !res.Hit || res.Tier != "surface" {
		t.Fatalf("surface after read-through: %+v", res)
	}
}

// BenchmarkRestore2000 measures loading 2000 entries (hash embeddings of
// 512 dimensions) from Redis into the tiers and HNSW indexes.
func BenchmarkRestore2000(b *testing.B) {
	ctx := context.Background()
	srv := redistest.Start(b)
	model := "bench-" + fmt.Sprint(time.Now().UnixNano())
	c, err := semcache.New(ctx, config(), embed.NewHash(512))
	if err != nil {
		b.Fatal(err)
	}
	st, _ := semredis.Open(semredis.Options{URL: srv.URL, Model: model, Embedder: "hash", Logger: quiet})
	defer st.Close()
	c.SetPersister(st)
	for i := range 2000 {
		c.Store(ctx, query(b, "", fmt.Sprintf("Question number %d about topic %d?", i, i%37), "code"), nil, answer(fmt.Sprint(i)))
	}
	b.ResetTimer()
	for range b.N {
		d, _ := semcache.New(ctx, config(), embed.NewHash(512))
		d.SetPersister(st)
		if n, _, err := d.Restore(ctx); n != 2000 || err != nil {
			b.Fatalf("restored %d, %v", n, err)
		}
	}
}

// BenchmarkLookupMissReadThrough measures an exact-tier miss that asks
// Redis (a question no replica stored; the hash tiers only).
func BenchmarkLookupMissReadThrough(b *testing.B) {
	ctx := context.Background()
	srv := redistest.Start(b)
	cfg := config()
	cfg.Semantic = false
	c, _ := semcache.New(ctx, cfg, nil)
	st, _ := semredis.Open(semredis.Options{URL: srv.URL, Model: "bench-miss", Embedder: cfg.Embedder, Logger: quiet})
	defer st.Close()
	c.SetPersister(st)
	q := query(b, "", "Never stored?", "code")
	b.ResetTimer()
	for range b.N {
		if c.Lookup(ctx, q).Hit {
			b.Fatal("hit")
		}
	}
}
