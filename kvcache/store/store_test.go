package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/kvserve/kvserve/internal/redistest"
)

// tiers returns one fresh tier of each kind with the given cap, the Redis
// one under a prefix of its own.
func tiers(t *testing.T, capBytes int64) []Tier {
	t.Helper()
	d, err := OpenDisk(t.TempDir(), capBytes)
	if err != nil {
		t.Fatal(err)
	}
	out := []Tier{NewMemory(capBytes), d}
	srv := redistest.Start(t)
	r, err := OpenRedis(RedisOptions{URL: srv.URL, Prefix: fmt.Sprintf("test%d:", rand.Uint64()), Cap: capBytes, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return append(out, r)
}

func TestTiers(t *testing.T) {
	ctx := context.Background()
	for _, tier := range tiers(t, 0) {
		t.Run(tier.Name(), func(t *testing.T) {
			if _, err := tier.Get(ctx, "a"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("get of a missing key: %v, want ErrNotFound", err)
			}
			for _, v := range []string{"one", "two, longer"} {
				if err := tier.Put(ctx, "a/b:c", []byte(v)); err != nil {
					t.Fatal(err)
				}
				got, err := tier.Get(ctx, "a/b:c")
				if err != nil || string(got) != v {
					t.Fatalf("get: %q, %v; want %q", got, err, v)
				}
			}
			if ok, err := tier.Has(ctx, "a/b:c"); !ok || err != nil {
				t.Fatalf("has: %v, %v", ok, err)
			}
			if err := tier.Delete(ctx, "a/b:c"); err != nil {
				t.Fatal(err)
			}
			if ok, _ := tier.Has(ctx, "a/b:c"); ok {
				t.Fatal("deleted key still there")
			}
			if err := tier.Delete(ctx, "a/b:c"); err != nil {
				t.Fatalf("deleting a missing key: %v", err)
			}
		})
	}
}

// TestTierCap: past the cap the least recently written (or read) values
// go.
func TestTierCap(t *testing.T) {
	ctx := context.Background()
	val := bytes.Repeat([]byte{7}, 100)
	for _, tier := range tiers(t, 350) {
		t.Run(tier.Name(), func(t *testing.T) {
			for i := range 5 {
				if err := tier.Put(ctx, strconv.Itoa(i), val); err != nil {
					t.Fatal(err)
				}
			}
			for i, want := range []bool{false, false, true, true, true} {
				if ok, _ := tier.Has(ctx, strconv.Itoa(i)); ok != want {
					t.Errorf("key %d held: %v, want %v", i, ok, want)
				}
			}
		})
	}
}

// TestCorruptNeverServed: a value damaged in a tier fails its check, is
// deleted, and the next tier's intact copy is served (and promoted).
func TestCorruptNeverServed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	disk, err := OpenDisk(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	mem := NewMemory(0)
	s := New(Options{Tiers: []Tier{mem, disk}})
	defer s.Close()
	payload := []byte("the keys and values of 256 tokens")
	s.Spill(func(w *Writer) { w.Put("k", payload) })
	s.Wait()
	path := disk.path(fileName("k"))
	good, _ := os.ReadFile(path)
	tests := []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)-3] }},
		{"flipped bit", func(b []byte) []byte { c := bytes.Clone(b); c[len(c)-1] ^= 1; return c }},
		{"header only", func(b []byte) []byte { return b[:sealHeader] }},
		{"empty", func(b []byte) []byte { return nil }},
		{"other key's value", func([]byte) []byte { return seal("other", payload) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem.Delete(ctx, "k")
			if err := os.WriteFile(path, tc.damage(good), 0o644); err != nil {
				t.Fatal(err)
			}
			before := s.Stats()[1].Corrupt
			if got, _, err := s.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("damaged entry served: %q, %v", got, err)
			}
			if s.Stats()[1].Corrupt != before+1 {
				t.Error("damage not counted")
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Error("damaged file not deleted")
			}
		})
	}
	// Intact in the slower tier, damaged in the faster: the intact one.
	s.Spill(func(w *Writer) { w.Put("k", payload) })
	s.Wait()
	mem.Put(ctx, "k", []byte("garbage"))
	got, tier, err := s.Get(ctx, "k")
	if err != nil || tier != 1 || !bytes.Equal(got, payload) {
		t.Fatalf("got %q from tier %d, %v", got, tier, err)
	}
	s.Wait() // the promotion
	if got, tier, _ := s.Get(ctx, "k"); tier != 0 || !bytes.Equal(got, payload) {
		t.Errorf("after promotion: %q from tier %d", got, tier)
	}
}

// TestSpillNeverBlocks: with the writer stuck, Spill drops work once the
// queue is full and returns at once.
func TestSpillNeverBlocks(t *testing.T) {
	s := New(Options{Tiers: []Tier{NewMemory(0)}, QueueSize: 2})
	release := make(chan struct{})
	s.Spill(func(w *Writer) { <-release })
	time.Sleep(10 * time.Millisecond) // the writer takes the first job
	start := time.Now()
	queued := 0
	for range 10 {
		if s.Spill(func(w *Writer) {}) {
			queued++
		}
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("10 spills took %v", d)
	}
	if queued != 2 || s.Dropped() != 8 {
		t.Errorf("queued %d, dropped %d; want 2 and 8", queued, s.Dropped())
	}
	close(release)
	s.Close()
}

// TestRedisDownOrSlow: a stopped or hung server makes lookups miss within
// the timeout, counts the failures, and stops trying for a while.
func TestRedisDownOrSlow(t *testing.T) {
	srv := redistest.StartOwn(t)
	r, err := OpenRedis(RedisOptions{URL: srv.URL, Prefix: "down:", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := New(Options{Tiers: []Tier{r}})
	defer s.Close()
	ctx := context.Background()
	s.Spill(func(w *Writer) { w.Put("k", []byte("v")) })
	s.Wait()
	if _, _, err := s.Get(ctx, "k"); err != nil {
		t.Fatalf("with the server up: %v", err)
	}
	for _, tc := range []struct {
		name   string
		break_ func()
	}{
		{"paused", func() { srv.Pause() }},
		{"stopped", srv.Stop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.mu.Lock()
			r.downTil, r.backoff = time.Time{}, 0
			r.mu.Unlock()
			tc.break_()
			errs := s.Stats()[0].Errors
			start := time.Now()
			for range 5 {
				if _, _, err := s.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("get from a broken server: %v, want a miss", err)
				}
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("5 lookups took %v; the first should time out and the rest skip the server", d)
			}
			if s.Stats()[0].Errors <= errs {
				t.Error("failures not counted")
			}
		})
	}
}

// The kill -9 test: a child process (this test binary, re-executed) spills
// values to a disk tier as fast as it can; the parent kills it with
// SIGKILL mid-stream, reopens the directory, and checks that every value
// it can load is exactly what was written under its key.

const childEnv = "KVSERVE_TEST_SPILL_CHILD"

func spillValue(i int) []byte {
	r := rand.New(rand.NewPCG(uint64(i), 9))
	b := make([]byte, 256<<10+i%1000)
	for j := range b {
		b[j] = byte(r.Uint32())
	}
	return b
}

func TestSpillChild(t *testing.T) {
	dir := os.Getenv(childEnv)
	if dir == "" {
		t.Skip("the child of TestKillDuringSpill")
	}
	d, err := OpenDisk(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Tiers: []Tier{d}, QueueSize: 4})
	for i := 0; ; i++ {
		v := spillValue(i)
		key := "chunk/" + strconv.Itoa(i)
		for !s.Spill(func(w *Writer) { w.Put(key, v) }) {
			time.Sleep(time.Millisecond)
		}
	}
}

func TestKillDuringSpill(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSpillChild$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Let it write a dozen files, then kill it mid-stream.
	deadline := time.Now().Add(20 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "*", "*.kv"))
		if len(files) >= 12 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	d, err := OpenDisk(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, "*", tmpPrefix+"*")); len(tmp) != 0 {
		t.Errorf("temporary files left after reopening: %v", tmp)
	}
	s := New(Options{Tiers: []Tier{d}})
	defer s.Close()
	loaded := 0
	for i := range 10000 {
		got, _, err := s.Get(context.Background(), "chunk/"+strconv.Itoa(i))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil || !bytes.Equal(got, spillValue(i)) {
			t.Fatalf("chunk %d: loaded %d bytes that differ from what was written (%v)", i, len(got), err)
		}
		loaded++
	}
	if loaded < 12 {
		t.Errorf("%d chunks loaded after the kill, want ≥ 12", loaded)
	}
	t.Logf("%d chunks intact after kill -9, %d damaged ones detected", loaded, s.Stats()[0].Corrupt)
}
