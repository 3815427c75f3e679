package blend

import (
	"math"
	"slices"
	"testing"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/kvcache/chunk"
	"github.com/kvserve/kvserve/model"
)

func loadTiny(t testing.TB) *model.Model {
	t.Helper()
	m, err := model.Load(model.Source{Dir: "../models/tinychat"}, compute.NewPool(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func newBlender(m *model.Model) *Blender {
	return &Blender{Net: m, Chunks: chunk.New(m.NewPool(0, kvcache.F32)), ModelName: "tinychat"}
}

// ids returns n token ids drawn from seed.
func ids(seed, n int) []int {
	out := make([]int, n)
	x := uint32(seed)*2654435761 + 1
	for i := range out {
		x = x*1664525 + 1013904223
		out[i] = 10 + int(x>>8)%4000
	}
	return out
}

func prompt(docs ...[]int) Prompt {
	p := Prompt{{Tokens: ids(1, 12)}}
	for i, d := range docs {
		if i > 0 {
			p = append(p, Segment{Tokens: []int{13, 13}})
		}
		p = append(p, Segment{Tokens: d, Doc: true})
	}
	return append(p, Segment{Tokens: ids(2, 9)})
}

func maxDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// TestMethodsOnModel checks each method on tinychat where its answer is
// known: what must equal full prefill does, to float tolerance.
func TestMethodsOnModel(t *testing.T) {
	m := loadTiny(t)
	b := newBlender(m)
	d1, d2, d3 := ids(3, 70), ids(4, 50), ids(5, 60)
	one := prompt(d1)
	three := prompt(d1, d2, d3)
	fullOf := func(p Prompt) []float32 {
		r, err := Full{}.Prefill(b, "", p)
		if err != nil {
			t.Fatal(err)
		}
		r.Cache.Release()
		return r.Logits
	}
	wantOne, wantThree := fullOf(one), fullOf(three)
	tests := []struct {
		name   string
		method Method
		p      Prompt
		want   []float32
		exact  bool // must equal full prefill
	}{
		{"naive, one document at home", Naive{}, one, wantOne, true},
		{"cachecraft, one document at home", CacheCraft{}, one, wantOne, true},
		{"ape T=S=1, one document", APE{Temperature: 1, Scale: 1}, one, wantOne, true},
		{"cacheblend at ratio 1", CacheBlend{Ratio: 1, Widen: 1}, three, wantThree, true},
		{"cacheblend at its default", CacheBlend{}, three, wantThree, false},
		{"cachecraft at its default", CacheCraft{}, three, wantThree, false},
		{"naive, three documents", Naive{}, three, wantThree, false},
		{"ape at its default", APE{}, three, wantThree, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.method.Prefill(b, "", tc.p)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Cache.Release()
			if r.Tokens != len(tc.p.Tokens()) || r.Cache.Next() != r.Tokens {
				t.Fatalf("result of %d tokens, cache at %d, want %d", r.Tokens, r.Cache.Next(), len(tc.p.Tokens()))
			}
			d := maxDiff(r.Logits, tc.want)
			if tc.exact && d > 2e-3 {
				t.Fatalf("logits differ from full prefill by %g", d)
			}
			if !tc.exact && d == 0 {
				t.Fatalf("logits equal full prefill's exactly: nothing was reused")
			}
			t.Logf("max logit difference %.4f, reused %d, recomputed %d", d, r.Reused, r.Recomputed)
		})
	}
	// Recompute ratios are honoured.
	r, err := CacheBlend{}.Prefill(b, "", three)
	if err != nil {
		t.Fatal(err)
	}
	r.Cache.Release()
	if want := int(math.Ceil(0.15 * float64(r.Reused))); r.Recomputed != want {
		t.Errorf("cacheblend recomputed %d of %d reused tokens, want %d", r.Recomputed, r.Reused, want)
	}
	// The deviation at 100 % recompute is measured against what full
	// prefill caches: cacheblend's cache then equals full prefill's.
	r, err = CacheBlend{Ratio: 1, Widen: 1}.Prefill(b, "", three)
	if err != nil {
		t.Fatal(err)
	}
	ref := m.NewCache()
	if _, err := m.Forward(ref, three.Tokens(), model.NoLogits); err != nil {
		t.Fatal(err)
	}
	k1, k2 := make([]float32, 64), make([]float32, 64)
	for l := range m.Config.Layers {
		for j := range r.Tokens {
			ref.View(l, 1).Key(j, k1)
			r.Cache.View(l, 1).Key(j, k2)
			if d := maxDiff(k1, k2); d > 2e-3 {
				t.Fatalf("layer %d token %d: key differs from full prefill's by %g", l, j, d)
			}
		}
	}
	r.Cache.Release()
}

// TestChunkReuse checks that documents are reused in any order and never
// across tenants.
func TestChunkReuse(t *testing.T) {
	m := loadTiny(t)
	b := newBlender(m)
	d1, d2, d3 := ids(3, 40), ids(4, 30), ids(5, 35)
	steps := []struct {
		salt         string
		p            Prompt
		hits, misses int
	}{
		{"alice", prompt(d1, d2, d3), 0, 3},
		{"alice", prompt(d3, d1, d2), 3, 0},
		{"bob", prompt(d2, d3, d1), 0, 3},
		{"alice", prompt(d2, ids(6, 20)), 1, 1},
	}
	for i, s := range steps {
		r, err := Naive{}.Prefill(b, s.salt, s.p)
		if err != nil {
			t.Fatal(err)
		}
		r.Cache.Release()
		if r.Hits != s.hits || r.Misses != s.misses {
			t.Errorf("step %d (%s): %d hits, %d misses; want %d, %d", i, s.salt, r.Hits, r.Misses, s.hits, s.misses)
		}
	}
	st := b.Chunks.Stats()
	if st.Entries != 7 {
		t.Errorf("%d chunks cached, want 7 (3 per tenant and one more)", st.Entries)
	}
	b.Chunks.Flush()
	if used, _ := b.Chunks.Pool().Stats(); used != 0 {
		t.Errorf("%d blocks in use after every cache was released and the chunks flushed", used)
	}
}

// TestEdit checks PIE's edit: an unchanged prompt, or an edit with nothing
// cached after it, gives exactly full prefill's answer; an edit before
// cached tokens reuses them, re-rotated.
func TestEdit(t *testing.T) {
	m := loadTiny(t)
	pool := m.NewPool(0, kvcache.F32)
	d1, d2 := ids(3, 40), ids(4, 30)
	oldP := prompt(d1, d2)[:4] // head, d1, separator, d2: the cached part
	old := pool.NewSeq()
	if _, err := m.Forward(old, oldP.Tokens(), model.NoLogits); err != nil {
		t.Fatal(err)
	}
	defer old.Release()
	edited := func(doc []int, at int, ins ...int) []int {
		out := append([]int{}, doc[:at]...)
		out = append(out, ins...)
		return append(out, doc[at:]...)
	}
	tests := []struct {
		name  string
		newP  Prompt
		exact bool
		fresh int // tokens computed
	}{
		{"unchanged", prompt(d1, d2), true, 9},
		{"edit in the last document's end", prompt(d1, append(append([]int{}, d2...), 7, 8, 9)), true, 12},
		{"edit in the first document", prompt(edited(d1, 20, 7, 8, 9, 10), d2), false, 13},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := m.NewCache()
			wl, err := m.Forward(want, tc.newP.Tokens(), model.LastLogits)
			if err != nil {
				t.Fatal(err)
			}
			wl = slices.Clone(wl)
			defer want.Release()
			r, err := Edit(m, pool, old, oldP, tc.newP)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Cache.Release()
			if got := r.Tokens - r.Reused; got != tc.fresh {
				t.Errorf("%d tokens computed, want %d", got, tc.fresh)
			}
			d := maxDiff(r.Logits, wl)
			if tc.exact && d > 2e-3 {
				t.Fatalf("logits differ from full prefill by %g", d)
			}
			if !tc.exact && d == 0 {
				t.Fatal("an edit before cached tokens changed nothing")
			}
		})
	}
	if _, err := Edit(m, pool, old, prompt(d1, d2), oldP); err == nil {
		t.Error("edit that removes segments: no error")
	}
}

func TestSplit(t *testing.T) {
	enc := func(s string) []int {
		out := make([]int, len(s))
		for i := range len(s) {
			out[i] = int(s[i])
		}
		return out
	}
	tests := []struct {
		text string
		docs []string
		want []string // segments, documents in brackets
		err  bool
	}{
		{"<s>A\n\nB\n\nq?", []string{"A", "B"}, []string{"<s>", "[A]", "\n\n", "[B]", "\n\nq?"}, false},
		{"AB", []string{"A", "B"}, []string{"[A]", "[B]"}, false},
		{"B then A", []string{"A", "B"}, nil, true},
		{"x", []string{""}, nil, true},
	}
	for _, tc := range tests {
		p, err := Split(tc.text, tc.docs, enc)
		if (err != nil) != tc.err {
			t.Errorf("%q: error %v, want error %v", tc.text, err, tc.err)
			continue
		}
		var got []string
		for _, s := range p {
			b := make([]byte, len(s.Tokens))
			for i, x := range s.Tokens {
				b[i] = byte(x)
			}
			if s.Doc {
				got = append(got, "["+string(b)+"]")
			} else {
				got = append(got, string(b))
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: segments %q, want %q", tc.text, got, tc.want)
		}
	}
}

// FuzzSplit: Split never panics, and its segments spell the text back, the
// documents among them in order.
func FuzzSplit(f *testing.F) {
	f.Add("<s>A\n\nB\n\nq?", "A", "B")
	f.Add("AA", "A", "A")
	f.Add("", "", "x")
	f.Fuzz(func(t *testing.T, text, d1, d2 string) {
		enc := func(s string) []int {
			out := make([]int, len(s))
			for i := range len(s) {
				out[i] = int(s[i])
			}
			return out
		}
		p, err := Split(text, []string{d1, d2}, enc)
		if err != nil {
			return
		}
		var got []byte
		var docs []string
		for _, s := range p {
			b := make([]byte, len(s.Tokens))
			for i, x := range s.Tokens {
				b[i] = byte(x)
			}
			got = append(got, b...)
			if s.Doc {
				docs = append(docs, string(b))
			}
		}
		if string(got) != text || !slices.Equal(docs, []string{d1, d2}) {
			t.Fatalf("segments spell %q with documents %q", got, docs)
		}
	})
}
