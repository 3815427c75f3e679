package engine

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
	"github.com/kvserve/kvserve/press"
)

// pressedReference compresses prompt's cache with p (nil: none) outside
// the scheduler — one forward pass with the press's observer, then
// Compress — and
// decodes n tokens greedily; it returns the tokens and the cache's bytes
// after compression.
func pressedReference(t *testing.T, b *Bundle, p *press.Press, prompt []int, n int) ([]int, int64) {
	t.Helper()
	net := b.Net
	cache := net.NewCache()
	defer cache.Release()
	obs := press.Observer([]*press.Press{p}, 0, len(prompt))
	logits, err := net.ForwardObserved(cache, prompt, model.LastLogits, obs)
	if err != nil {
		t.Fatal(err)
	}
	if p != nil {
		if err := p.Compress(net, cache, obs); err != nil {
			t.Fatal(err)
		}
	}
	bytes := cache.Bytes()
	var out []int
	for range n {
		id := Argmax(logits)
		out = append(out, id)
		if logits, err = net.Forward(cache, []int{id}, model.LastLogits); err != nil {
			t.Fatal(err)
		}
	}
	return out, bytes
}

// TestSchedulerPress runs pressed jobs through the scheduler, with the
// prompt chunked so that the press's observation window spans chunks, and
// checks that each decodes exactly what compressing outside the scheduler
// decodes, that the KV memory fell, and that a plain job beside them is
// unaffected.
func TestSchedulerPress(t *testing.T) {
	b := tinychat(t)
	prompt := chatIDs(t, b, strings.Repeat("The quick brown fox jumps over the lazy dog near the river bank. ", 25)+"What jumps over the dog?")
	const n = 12
	plainWant, _ := pressedReference(t, b, nil, prompt, n)
	for _, name := range []string{"snapkv", "keydiff", "observed_attention", "cake"} {
		t.Run(name, func(t *testing.T) {
			p, err := press.Parse(name, 0.5)
			if err != nil {
				t.Fatal(err)
			}
			want, pressedBytes := pressedReference(t, b, p, prompt, n)
			cache := NewPrefixCache(b.Net, kvcache.PoolConfig{})
			s := NewScheduler(b, SchedulerConfig{PrefillTokens: 48, Cache: cache})
			defer s.Close()
			job := Job{Prompt: prompt, MaxTokens: n, IgnoreEOS: true, Press: p}
			pressed, err := s.Submit(context.Background(), job)
			if err != nil {
				t.Fatal(err)
			}
			plainJob := job
			plainJob.Press = nil
			plain, err := s.Submit(context.Background(), plainJob)
			if err != nil {
				t.Fatal(err)
			}
			ids, _, _, err := collect(t, pressed)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids[0], want) {
				t.Errorf("pressed job decoded %v, compressing outside the scheduler %v", ids[0], want)
			}
			plainIDs, _, _, err := collect(t, plain)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(plainIDs[0], plainWant) {
				t.Errorf("plain job beside it decoded %v, alone %v", plainIDs[0], plainWant)
			}
			full := b.Net.NewCache()
			defer full.Release()
			if _, err := b.Net.Forward(full, prompt, model.NoLogits); err != nil {
				t.Fatal(err)
			}
			if pressedBytes > full.Bytes()*6/10 {
				t.Errorf("pressed cache holds %d bytes, the full one %d", pressedBytes, full.Bytes())
			}
			// Alone, the pressed job holds about half the prompt's bytes
			// while it decodes.
			alone := NewScheduler(b, SchedulerConfig{PrefillTokens: 48})
			defer alone.Close()
			job.MaxTokens = 400
			st, err := alone.Submit(context.Background(), job)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Recv(context.Background()); err != nil {
				t.Fatal(err)
			}
			var used int64
			if !settle(func() bool {
				used = alone.Stats().KV.UsedBytes
				return used > 0 && used <= full.Bytes()*6/10
			}) {
				t.Errorf("while decoding, the pressed job holds %d KV bytes; the full prompt takes %d", used, full.Bytes())
			}
			// The pressed cache was not kept for reuse; the plain one was.
			if u := pressed.Usage(); u.CachedTokens != 0 {
				t.Errorf("pressed job reused %d cached tokens", u.CachedTokens)
			}
			if got := cache.Cached("", prompt); got < len(prompt)-1 {
				t.Errorf("after both finished %d prompt tokens are cached, want the plain job's %d", got, len(prompt)-1)
			}
		})
	}
}

// TestSchedulerPressPeak checks the pool's high-water mark while a pressed
// prompt is computed and compressed: a press that compresses each layer on
// its own (a layered prefill) never holds more than its compressed cache
// and one full layer (+10 %), and a composition's quantization stage runs
// within the same bound, as does CAKE, which plans over every layer (two
// passes); MiniCache, which merges across layers, holds the whole prompt
// at its peak.
func TestSchedulerPressPeak(t *testing.T) {
	b := tinychat(t)
	prompt := chatIDs(t, b, strings.Repeat("The quick brown fox jumps over the lazy dog near the river bank. ", 25)+"What jumps over the dog?")
	layers := int64(b.Net.Config.Layers)
	for _, tc := range []struct {
		press   string
		bounded bool
	}{
		{"snapkv", true},
		{"expected_attention", true},
		{"keydiff+kivi4", true},
		{"cake", true},
		{"minicache", false},
	} {
		t.Run(tc.press, func(t *testing.T) {
			p, err := press.Parse(tc.press, 0.5)
			if err != nil {
				t.Fatal(err)
			}
			cache := NewPoolCache(b.Net, kvcache.PoolConfig{})
			s := NewScheduler(b, SchedulerConfig{PrefillTokens: 48, Cache: cache})
			defer s.Close()
			st, err := s.Submit(context.Background(), Job{Prompt: prompt, MaxTokens: 1, IgnoreEOS: true, Press: p})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := collect(t, st); err != nil {
				t.Fatal(err)
			}
			u := st.Usage()
			full, final, peak := u.KVBytesBeforePress, u.KVBytesAfterPress, cache.Pool().PeakBytes()
			if full == 0 || final == 0 || tc.bounded && final > full*6/10 {
				t.Fatalf("press took the prompt's KV from %d to %d bytes: want about half", full, final)
			}
			bound := 1.1 * float64(final+full/layers)
			t.Logf("%s: full %d, final %d, peak %d, bound %.0f", tc.press, full, final, peak, bound)
			if tc.bounded && float64(peak) > bound {
				t.Errorf("peak %d bytes, over the final %d + one layer %d + 10 %%", peak, final, full/layers)
			}
			if !tc.bounded && peak < full {
				t.Errorf("peak %d bytes under the full prompt's %d: MiniCache computes it whole", peak, full)
			}
		})
	}
}
