package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvserve/kvserve/internal/redistest"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/kvcache/codec"
	"github.com/kvserve/kvserve/kvcache/store"
)

// A "server" in these tests is a scheduler over a fresh pool and a fresh
// Store over the given tiers: what a new kvserve process starts with.
type tierServer struct {
	s     *Scheduler
	cache *TieredCache
	st    *store.Store
}

func newTierServer(t *testing.T, b *Bundle, tiers ...store.Tier) *tierServer {
	t.Helper()
	st := store.New(store.Options{Tiers: tiers})
	lvl, _ := codec.ParseLevel("bf16") // lossless over a bf16 pool
	pc := NewPrefixCache(b.Net, kvcache.PoolConfig{Budget: 64 << 20, Format: kvcache.BF16})
	tc := NewTieredCache(pc, TierConfig{Store: st, Level: lvl, ChunkTokens: 32, Namespace: "tinychat-test/bf16"})
	s := NewScheduler(b, SchedulerConfig{Cache: tc})
	ts := &tierServer{s: s, cache: tc, st: st}
	t.Cleanup(ts.close)
	return ts
}

// close stops the scheduler, lets the writer finish, and closes the
// store; a second call does nothing.
func (ts *tierServer) close() {
	if ts.s == nil {
		return
	}
	ts.s.Close()
	ts.st.Close()
	ts.s = nil
}

// longPrompt is a chat prompt of about 200 tokens.
func longPrompt(t *testing.T, b *Bundle, topic string) []int {
	var sb strings.Builder
	for i := range 12 {
		fmt.Fprintf(&sb, "Line %d of the %s notes: the value of %s_%d is %d.\n", i, topic, topic, i, i*37%101)
	}
	sb.WriteString("What is the value of " + topic + "_7?")
	return chatIDs(t, b, sb.String())
}

func plainBF16(t *testing.T, b *Bundle) *Scheduler {
	s := NewScheduler(b, SchedulerConfig{Cache: NewPoolCache(b.Net, kvcache.PoolConfig{Format: kvcache.BF16})})
	t.Cleanup(func() { s.Close() })
	return s
}

func openDisk(t *testing.T, dir string) *store.Disk {
	d, err := store.OpenDisk(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestTieredRestartFromDisk: a second "process" on the same directory
// loads the first's prompt from disk instead of computing it, and answers
// exactly what a cache-less scheduler answers.
func TestTieredRestartFromDisk(t *testing.T) {
	b := tinychat(t)
	dir := t.TempDir()
	prompt := longPrompt(t, b, "alpha")
	job := Job{Prompt: prompt, MaxTokens: 8, IgnoreEOS: true}

	first := newTierServer(t, b, openDisk(t, dir))
	out1, u1 := run(t, first.s, job)
	first.close()
	if u1.CachedTokens != 0 {
		t.Fatalf("first process found %d tokens cached", u1.CachedTokens)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.kv"))
	if len(files) == 0 {
		t.Fatal("nothing written to disk")
	}

	second := newTierServer(t, b, openDisk(t, dir))
	turn2 := slices.Concat(prompt, out1, chatIDs(t, b, "And alpha_3?"))
	job2 := Job{Prompt: turn2, MaxTokens: 8, IgnoreEOS: true}
	out2, u2 := run(t, second.s, job2)
	if want := (len(prompt) + len(out1) - 1) / 32 * 32; u2.CachedTokens < want-32 || u2.CachedTokens == 0 {
		t.Errorf("restarted process loaded %d tokens, want about %d", u2.CachedTokens, want)
	}
	if l := second.cache.Loads(); l.Tokens != int64(u2.CachedTokens) {
		t.Errorf("loads %+v, cached %d", l, u2.CachedTokens)
	}
	ref, _ := run(t, plainBF16(t, b), job2)
	if !slices.Equal(out2, ref) {
		t.Errorf("from disk:\n%v\nrecomputed:\n%v", out2, ref)
	}
}

// TestTieredCorruptRecomputed: damaged files are detected, deleted, and
// their tokens computed; the answer is the recomputed one.
func TestTieredCorruptRecomputed(t *testing.T) {
	b := tinychat(t)
	dir := t.TempDir()
	prompt := longPrompt(t, b, "beta")
	job := Job{Prompt: prompt, MaxTokens: 8, IgnoreEOS: true}
	first := newTierServer(t, b, openDisk(t, dir))
	run(t, first.s, job)
	first.close()
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.kv"))
	for i, f := range files { // truncate one, flip a byte of every other
		raw, _ := os.ReadFile(f)
		if i == 0 {
			raw = raw[:len(raw)/2]
		} else if i%2 == 0 {
			raw[len(raw)-1-i] ^= 0x40
		}
		os.WriteFile(f, raw, 0o644)
	}
	second := newTierServer(t, b, openDisk(t, dir))
	out, u := run(t, second.s, job)
	ref, _ := run(t, plainBF16(t, b), job)
	if !slices.Equal(out, ref) {
		t.Errorf("after damage:\n%v\nrecomputed:\n%v", out, ref)
	}
	if c := second.st.Stats()[0].Corrupt; c == 0 {
		t.Error("no damaged entry detected")
	}
	t.Logf("%d of %d tokens loaded, %d damaged entries found", u.CachedTokens, len(prompt), second.st.Stats()[0].Corrupt)
}

// TestTieredRedisShared: two "servers" on one Redis share a prefix; under
// another tenant's salt nothing is found.
func TestTieredRedisShared(t *testing.T) {
	b := tinychat(t)
	srv := redistest.Start(t)
	prefix := fmt.Sprintf("shared%d:", time.Now().UnixNano())
	open := func() store.Tier {
		r, err := store.OpenRedis(store.RedisOptions{URL: srv.URL, Prefix: prefix, TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a, other := newTierServer(t, b, open()), newTierServer(t, b, open())
	prompt := longPrompt(t, b, "gamma")
	job := Job{Prompt: prompt, MaxTokens: 8, IgnoreEOS: true, Salt: "tenant-a"}
	outA, _ := run(t, a.s, job)
	a.st.Wait()

	job.Salt = "tenant-b"
	_, u := run(t, other.s, job)
	if u.CachedTokens != 0 {
		t.Errorf("tenant b found %d of tenant a's tokens", u.CachedTokens)
	}
	job.Salt = "tenant-a"
	outB, u := run(t, other.s, job)
	if want := (len(prompt) - 1) / 32 * 32; u.CachedTokens != want {
		t.Errorf("second server loaded %d tokens of the first's, want %d", u.CachedTokens, want)
	}
	if !slices.Equal(outA, outB) {
		t.Errorf("first server:\n%v\nsecond, from Redis:\n%v", outA, outB)
	}
}

// TestTieredRedisDown: with the Redis server stopped or hung, requests
// still succeed, computing their prompts, within about one timeout.
func TestTieredRedisDown(t *testing.T) {
	b := tinychat(t)
	srv := redistest.StartOwn(t)
	r, err := store.OpenRedis(store.RedisOptions{URL: srv.URL, Timeout: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ts := newTierServer(t, b, r)
	ref, _ := run(t, plainBF16(t, b), Job{Prompt: longPrompt(t, b, "delta"), MaxTokens: 8, IgnoreEOS: true})
	for _, tc := range []struct {
		name   string
		break_ func()
	}{{"hung", func() { srv.Pause() }}, {"stopped", srv.Stop}} {
		t.Run(tc.name, func(t *testing.T) {
			tc.break_()
			start := time.Now()
			out, u := run(t, ts.s, Job{Prompt: longPrompt(t, b, "delta"), MaxTokens: 8, IgnoreEOS: true, Salt: tc.name})
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("request took %v", d)
			}
			if u.CachedTokens != 0 || !slices.Equal(out, ref) {
				t.Errorf("cached %d; got %v, want %v", u.CachedTokens, out, ref)
			}
		})
	}
	ts.close()
	if ts.st.Stats()[0].Errors == 0 {
		t.Error("failures not counted")
	}
}
