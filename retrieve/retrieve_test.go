package retrieve

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/kvserve/kvserve/kvcache"
	"github.com/kvserve/kvserve/model"
)

func TestParseBudget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Budget
		bad  bool
	}{
		{in: "1/8", want: Budget{Fraction: 0.125}},
		{in: "0.0625", want: Budget{Fraction: 0.0625}},
		{in: "256", want: Budget{Tokens: 256}},
		{in: "1", want: Budget{Fraction: 1}},
		{in: "0", bad: true},
		{in: "-3", bad: true},
		{in: "1.5", bad: true},
		{in: "3/2", bad: true},
		{in: "1/0", bad: true},
		{in: "x", bad: true},
		{in: "", bad: true},
	} {
		got, err := ParseBudget(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && got != tc.want) {
			t.Errorf("ParseBudget(%q) = %+v, %v; want %+v, bad %v", tc.in, got, err, tc.want, tc.bad)
		}
	}
	if got := (Budget{Fraction: 0.125}).Of(1000); got != 125 {
		t.Errorf("1/8 of 1000 = %d, want 125", got)
	}
	if got := (Budget{Tokens: 300}).Of(100); got != 100 {
		t.Errorf("300 tokens of 100 = %d, want 100", got)
	}
	for _, b := range []Budget{{}, {Fraction: 1.5}, {Fraction: -0.1}, {Tokens: -3}, {Tokens: -1, Fraction: 0.5}} {
		if b.Check() == nil {
			t.Errorf("budget %+v passes Check", b)
		}
	}
}

func FuzzParseBudget(f *testing.F) {
	for _, s := range []string{"1/8", "0.5", "12", "1/", "/8", "1e-3", "NaN"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseBudget(s)
		if err != nil {
			return
		}
		if k := b.Of(1000); k < 1 || k > 1000 {
			t.Fatalf("%q: %d of 1000 tokens", s, k)
		}
	})
}

func TestTopK(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 7, 100, 1000} {
		for _, k := range []int{0, 1, n / 3, n - 1, n, n + 5} {
			score := make([]float32, n)
			for i := range score {
				score[i] = float32(r.IntN(50)) // ties
			}
			idx := make([]int, n)
			for i := range idx {
				idx[i] = i
			}
			got := slices.Clone(topK(idx, score, k))
			want := make([]float32, n)
			copy(want, score)
			sort.Slice(want, func(a, b int) bool { return want[a] > want[b] })
			if len(got) != min(max(k, 0), n) {
				t.Fatalf("n %d k %d: %d picked", n, k, len(got))
			}
			var gs []float32
			for _, i := range got {
				gs = append(gs, score[i])
			}
			sort.Slice(gs, func(a, b int) bool { return gs[a] > gs[b] })
			if !slices.Equal(gs, want[:len(got)]) {
				t.Fatalf("n %d k %d: scores %v, want %v", n, k, gs, want[:len(got)])
			}
		}
	}
}

// needleCache builds one layer × one KV head of d channels and n tokens:
// small random keys, except tokens [at, at+16) whose keys point along one
// direction, which the returned query (two heads) points along too.
func needleCache(t *testing.T, n, d, at int, format kvcache.Format) (*kvcache.Seq, []float32) {
	t.Helper()
	r := rand.New(rand.NewPCG(3, 4))
	seq := kvcache.NewPool(kvcache.PoolConfig{Layers: 1, KVHeads: 1, HeadDim: d, Format: format}).NewSeq()
	dir := make([]float32, d)
	for c := range dir {
		dir[c] = float32(r.NormFloat64())
	}
	k, v := make([]float32, d), make([]float32, d)
	for j := range n {
		for c := range d {
			k[c] = 0.3 * float32(r.NormFloat64())
			v[c] = float32(r.NormFloat64())
			if j >= at && j < at+16 {
				k[c] += 2 * dir[c]
			}
		}
		if err := seq.Reserve(1); err != nil {
			t.Fatal(err)
		}
		seq.Append(0, 0, k, v, j)
		seq.Advance(1)
	}
	q := append(slices.Clone(dir), dir...)
	for c := range q {
		q[c] *= 2
	}
	return seq, q
}

func testConfig(d int) *model.Config {
	return &model.Config{Layers: 1, Heads: 2, KVHeads: 1, HeadDim: d, AttnScale: float32(1 / math.Sqrt(float64(d)))}
}

// TestSelectorsFindTheNeedle checks each selector on hand-made keys: the
// tokens the query points at are read, with the sinks and the window,
// within the budget, in ascending order.
func TestSelectorsFindTheNeedle(t *testing.T) {
	const n, d, at, budget = 256, 16, 100, 48
	ends := make([]bool, n) // token ids are positions here; sentences of 16 from 100
	for i := range ends {
		ends[i] = (i+1)%16 == 4
	}
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			for _, cold := range []bool{false, true} {
				seq, q := needleCache(t, n, d, at, kvcache.BF16)
				opt := Options{Budget: Budget{Tokens: budget}, SentenceEnd: ends}
				if cold {
					opt.Cold = kvcache.NewColdTier()
				}
				r, err := New(name, testConfig(d), opt)
				if err != nil {
					t.Fatal(err)
				}
				ids := make([]int, n)
				for i := range ids {
					ids[i] = i
				}
				r.Tokens(ids)
				if err := r.Prepare(seq, []int{0}); err != nil { // a decode step
					t.Fatal(err)
				}
				if cold && seq.StoredBytes() >= int64(n*d*2*2) {
					t.Errorf("cold: %d bytes resident, no less than the whole cache", seq.StoredBytes())
				}
				sel := r.Select(0, 0, seq.View(0, 0), q, n)
				if name == "none" {
					if sel != nil {
						t.Fatalf("none selected %d tokens, want all (nil)", len(sel))
					}
					return
				}
				if len(sel) > budget {
					t.Fatalf("%d tokens selected, budget %d", len(sel), budget)
				}
				for i := 1; i < len(sel); i++ {
					if sel[i] <= sel[i-1] {
						t.Fatalf("selection not ascending: %v", sel)
					}
				}
				for _, j := range []int{0, 1, 2, 3, n - 1, n - 12} {
					if !slices.Contains(sel, j) {
						t.Errorf("token %d (sink or window) not selected: %v", j, sel)
					}
				}
				for j := at; j < at+16; j++ {
					if !slices.Contains(sel, j) {
						t.Errorf("needle token %d not selected: %v", j, sel)
					}
				}
				if st := r.Stats(); st.TokensRead != float64(len(sel)) || st.TokensCached != n {
					t.Errorf("stats %+v, want %d of %d tokens read", st, len(sel), n)
				}
			}
		})
	}
}

// TestQuestBoundsHold checks that a page's bound is at least q·k for
// every key of the page, bfloat16 rounding included.
func TestQuestBoundsHold(t *testing.T) {
	const n, d = 100, 8
	seq, _ := needleCache(t, n, d, 40, kvcache.F32)
	p := newQuest(&shape{group: 1, headDim: d, scale: 1}).(*quest)
	kv := seq.View(0, 0)
	p.extend(kv, nil, 70)
	p.extend(kv, nil, 50) // truncated: pages rebuilt
	p.extend(kv, nil, n)
	if p.pages != (n+QuestPage-1)/QuestPage {
		t.Fatalf("%d pages for %d tokens", p.pages, n)
	}
	r := rand.New(rand.NewPCG(5, 6))
	key := make([]float32, d)
	for range 20 {
		q := make([]float32, d)
		for c := range q {
			q[c] = float32(r.NormFloat64())
		}
		for pg := range p.pages {
			var bound float32
			for c := range d {
				bound += max(q[c]*bf16(p.min[pg*d+c]), q[c]*bf16(p.max[pg*d+c]))
			}
			for j := pg * QuestPage; j < min(n, (pg+1)*QuestPage); j++ {
				kv.Key(j, key)
				var s float32
				for c := range d {
					s += q[c] * key[c]
				}
				if s > bound+1e-5 {
					t.Fatalf("page %d: q·k of token %d is %g, above the bound %g", pg, j, s, bound)
				}
			}
		}
	}
}

// TestTokenSelectReuse checks the selection cache: the same query again
// reads no key and picks the same tokens; a different query recomputes.
func TestTokenSelectReuse(t *testing.T) {
	const n, d = 200, 16
	seq, q := needleCache(t, n, d, 60, kvcache.F32)
	ts := newTokenSelect(&shape{group: 2, headDim: d, scale: 0.25}).(*tokenSelect)
	kv := seq.View(0, 0)
	first, read := ts.pick(nil, kv, q, 4, 180, 20)
	if read == 0 {
		t.Fatal("the first pick read no keys")
	}
	again, read := ts.pick(nil, kv, q, 4, 180, 20)
	if read != 0 || !slices.Equal(first, again) {
		t.Errorf("a repeated query read %d bytes and picked %v, want 0 and %v", read, again, first)
	}
	// The window moved on by two tokens: they join the reused pick.
	moved, _ := ts.pick(nil, kv, q, 4, 182, 20)
	if !slices.Contains(moved, 180) || !slices.Contains(moved, 181) || len(moved) > 20 {
		t.Errorf("after the window moved: %v, want 180 and 181 within 20", moved)
	}
	other := slices.Clone(q)
	for c := range other {
		other[c] = -other[c]
	}
	if _, read := ts.pick(nil, kv, other, 4, 182, 20); read == 0 || ts.computed != 2 || ts.reused != 2 {
		t.Errorf("an opposite query: read %d, computed %d, reused %d; want a recompute", read, ts.computed, ts.reused)
	}
}

// TestA2ATSCodes checks the codebook: coding is nearest-centroid, so the
// approximate keys are closer to the keys than the keys are to zero, and a
// truncation drops codes.
func TestA2ATSCodes(t *testing.T) {
	const n, d = 300, 16
	seq, _ := needleCache(t, n, d, 10, kvcache.F32)
	a := newA2ATS(&shape{group: 1, headDim: d, scale: 1}).(*a2ats)
	kv := seq.View(0, 0)
	a.extend(kv, nil, 30)
	if a.cent != nil || a.n != 0 {
		t.Fatalf("a codebook from %d tokens, want none below %d", 30, a2atsMinTrain)
	}
	a.extend(kv, nil, n)
	if a.n != n || len(a.codes) != n*d/8 {
		t.Fatalf("%d tokens coded in %d bytes, want %d in %d", a.n, len(a.codes), n, n*d/8)
	}
	var errSum, normSum float64
	key := make([]float32, d)
	for j := range n {
		kv.Key(j, key)
		for m := range a.subspaces() {
			c := int(a.codes[j*d/8+m/2]>>(4*(m%2))) & 15
			for i, ch := range a.dims(m) {
				x := float64(key[ch] - a.cent[(m*a2atsCentroids+c)*a2atsSub+i])
				errSum += x * x
				normSum += float64(key[ch]) * float64(key[ch])
			}
		}
	}
	if errSum > 0.5*normSum {
		t.Errorf("quantization error %.3g of key energy %.3g", errSum, normSum)
	}
	a.extend(kv, nil, 120)
	if a.n != 120 || len(a.codes) != 120*d/8 {
		t.Errorf("after truncation to 120: %d tokens, %d bytes of codes", a.n, len(a.codes))
	}
}

// TestSentenceSegments checks that sentencekv cuts at sentence ends and at
// MaxSentence, and rebuilds an open last sentence as tokens arrive.
func TestSentenceSegments(t *testing.T) {
	const d = 8
	seq, _ := needleCache(t, 120, d, 0, kvcache.F32)
	ends := make([]bool, 200)
	ends[9], ends[10], ends[99] = true, true, true
	s := newSentenceKV(&shape{group: 1, headDim: d, opt: &Options{SentenceEnd: ends}}).(*sentenceKV)
	id := func(p int) int { return p }
	kv := seq.View(0, 0)
	s.extend(kv, id, 50)
	s.extend(kv, id, 120)
	var got []segment
	got = append(got, s.segs...)
	want := []segment{{0, 10}, {10, 11}, {11, 43}, {43, 75}, {75, 100}, {100, 120}}
	if !slices.Equal(got, want) || !s.open || len(s.vecs) != len(want)*d {
		t.Errorf("segments %v (open %v, %d vector floats), want %v, open", got, s.open, len(s.vecs), want)
	}
	s.extend(kv, id, 60)
	if want := []segment{{0, 10}, {10, 11}, {11, 43}, {43, 60}}; !slices.Equal(s.segs, want) {
		t.Errorf("after truncation to 60: %v, want %v", s.segs, want)
	}
}
