package blend

import "testing"

// BenchmarkPrefill times each method on a 6-document prompt of about 1 800
// tokens, documents warm.
func BenchmarkPrefill(b *testing.B) {
	m := loadTiny(b)
	bl := newBlender(m)
	var docs [][]int
	for i := range 6 {
		docs = append(docs, ids(20+i, 290))
	}
	p := prompt(docs...)
	if _, err := bl.Warm("", p); err != nil {
		b.Fatal(err)
	}
	for _, meth := range []Method{Full{}, Naive{}, CacheBlend{}, CacheCraft{}, APE{}} {
		b.Run(meth.Name(), func(b *testing.B) {
			for b.Loop() {
				r, err := meth.Prefill(bl, "", p)
				if err != nil {
					b.Fatal(err)
				}
				r.Cache.Release()
			}
		})
	}
}
