package embed

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"unicode"

	"github.com/kvserve/kvserve/semcache"
)

// Hash embeds text without a model by signed feature hashing: each word
// (weight 1), each pair of adjacent words (1) and each character trigram of
// a word with boundary marks (0.5) adds ±weight to one of Dim buckets
// chosen by its FNV-1a hash. Texts that share words and spellings come out
// close; it knows no synonyms.
type Hash struct{ dim int }

// NewHash returns a hashing embedder of dim buckets.
func NewHash(dim int) *Hash { return &Hash{dim: dim} }

// Name returns "hash".
func (h *Hash) Name() string { return fmt.Sprintf("hash%d", h.dim) }

// Embed hashes each text.
func (h *Hash) Embed(_ context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	for i, t := range texts {
		v := make([]float32, h.dim)
		words := strings.FieldsFunc(strings.ToLower(t), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '.' && r != '_' })
		for j, w := range words {
			w = strings.Trim(w, ".")
			h.add(v, "w:"+w, 1)
			if j > 0 {
				h.add(v, "b:"+words[j-1]+" "+w, 1)
			}
			r := []rune("<" + w + ">")
			for k := 0; k+3 <= len(r); k++ {
				h.add(v, "c:"+string(r[k:k+3]), 0.5)
			}
		}
		out[i] = semcache.Normalize(v)
	}
	return out, nil
}

func (h *Hash) add(v []float32, feature string, w float32) {
	f := fnv.New64a()
	f.Write([]byte(feature))
	x := f.Sum64()
	if x>>63 == 1 {
		w = -w
	}
	v[x%uint64(h.dim)] += w
}
