package tokenizer

import (
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// bpe is a BPE model: a vocabulary and ranked merges of token pairs.
type bpe struct {
	vocab  map[string]int
	merges map[uint64]merge // key: pairKey(left, right)

	ignoreMerges bool   // a word found whole in the vocabulary is one token
	unk          int    // id of the unknown token, or -1
	fuseUnk      bool   // consecutive unknown characters become one unk
	byteFallback bool   // unknown characters become <0xXX> byte tokens
	prefix       string // continuing_subword_prefix
	suffix       string // end_of_word_suffix

	// rawBytes is set when words arrive as raw bytes that the model maps to
	// the byte-level alphabet itself; byteIDs then holds each byte's token.
	rawBytes bool
	byteIDs  [256]int

	mu    sync.RWMutex
	cache map[string][]int
}

// merge is what a pair of adjacent tokens becomes, and when.
type merge struct {
	rank int32
	id   int32
}

func pairKey(a, b int) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// The per-word cache holds words up to cacheWordLen bytes long, and at
// most cacheLimit of them; it is emptied when full.
const (
	cacheLimit   = 1 << 16
	cacheWordLen = 256
)

// newBPE builds the model from a vocabulary and merges in rank order.
func newBPE(vocab map[string]int, merges [][2]string, prefix string) (*bpe, error) {
	m := &bpe{
		vocab:  vocab,
		merges: make(map[uint64]merge, len(merges)),
		unk:    -1,
		prefix: prefix,
		cache:  make(map[string][]int),
	}
	for rank, pair := range merges {
		a, ok := vocab[pair[0]]
		if !ok {
			return nil, fmt.Errorf("merge %d (%q %q): %q is not in the vocabulary", rank, pair[0], pair[1], pair[0])
		}
		b, ok := vocab[pair[1]]
		if !ok {
			return nil, fmt.Errorf("merge %d (%q %q): %q is not in the vocabulary", rank, pair[0], pair[1], pair[1])
		}
		right, ok := strings.CutPrefix(pair[1], prefix)
		if !ok {
			return nil, fmt.Errorf("merge %d (%q %q): %q lacks the continuing-subword prefix %q", rank, pair[0], pair[1], pair[1], prefix)
		}
		id, ok := vocab[pair[0]+right]
		if !ok {
			return nil, fmt.Errorf("merge %d (%q %q): the merged token %q is not in the vocabulary", rank, pair[0], pair[1], pair[0]+right)
		}
		// As in HF, a pair listed twice keeps its last rank.
		m.merges[pairKey(a, b)] = merge{rank: int32(rank), id: int32(id)}
	}
	return m, nil
}

// setRawBytes makes the model take words as raw bytes.
func (m *bpe) setRawBytes() {
	m.rawBytes = true
	for b := range m.byteIDs {
		id, ok := m.vocab[byteToStr[b]]
		if !ok {
			id = -1
		}
		m.byteIDs[b] = id
	}
}

// tokenize appends the tokens of one pre-tokenized word to dst.
func (m *bpe) tokenize(word string, dst []int) []int {
	if word == "" {
		return dst
	}
	if len(word) == 1 && m.rawBytes && m.suffix == "" && m.byteIDs[word[0]] >= 0 {
		// A single byte is its own token; skip the cache.
		return append(dst, m.byteIDs[word[0]])
	}
	m.mu.RLock()
	ids, ok := m.cache[word]
	m.mu.RUnlock()
	if ok {
		return append(dst, ids...)
	}
	ids = m.tokenizeWord(word)
	if len(word) > cacheWordLen {
		return append(dst, ids...)
	}
	m.mu.Lock()
	if len(m.cache) >= cacheLimit {
		clear(m.cache)
	}
	// Clone the key: word may be a slice of a long input.
	m.cache[strings.Clone(word)] = ids
	m.mu.Unlock()
	return append(dst, ids...)
}

// symbol is one token of a word being merged, in a linked list.
type symbol struct {
	id         int
	prev, next int // indices of the neighbours, -1 at the ends
	gone       bool
}

// tokenizeWord runs BPE on one word.
func (m *bpe) tokenizeWord(word string) []int {
	if m.ignoreMerges {
		w := word
		if m.rawBytes {
			w = byteLevelEncode(word)
		}
		if id, ok := m.vocab[w]; ok {
			return []int{id}
		}
	}
	syms := m.initialSymbols(word)
	if len(syms) > 1 && len(m.merges) > 0 {
		syms = m.mergeAll(syms)
	}
	ids := make([]int, 0, len(syms))
	for i := range syms {
		if !syms[i].gone {
			ids = append(ids, syms[i].id)
		}
	}
	return ids
}

// initialSymbols splits a word into one token per character (per byte for
// raw byte-level input), handling characters missing from the vocabulary.
func (m *bpe) initialSymbols(word string) []symbol {
	syms := make([]symbol, 0, len(word))
	add := func(id int) {
		syms = append(syms, symbol{id: id})
	}
	lastUnk := false
	unknown := func(ch string) {
		if m.byteFallback {
			ids := make([]int, 0, len(ch))
			for i := 0; i < len(ch); i++ {
				id, ok := m.vocab[fmt.Sprintf("<0x%02X>", ch[i])]
				if !ok {
					ids = nil
					break
				}
				ids = append(ids, id)
			}
			if ids != nil {
				for _, id := range ids {
					add(id)
				}
				lastUnk = false
				return
			}
		}
		if m.unk >= 0 {
			if !(m.fuseUnk && lastUnk) {
				add(m.unk)
			}
			lastUnk = true
		}
		// With neither, HF drops the character.
	}
	if m.rawBytes && m.prefix == "" && m.suffix == "" {
		for i := 0; i < len(word); i++ {
			if id := m.byteIDs[word[i]]; id >= 0 {
				add(id)
				lastUnk = false
			} else {
				unknown(byteToStr[word[i]])
			}
		}
	} else {
		w := word
		if m.rawBytes {
			w = byteLevelEncode(word)
		}
		for i := 0; i < len(w); {
			_, n := utf8.DecodeRuneInString(w[i:])
			ch := w[i : i+n]
			s := ch
			if i > 0 {
				s = m.prefix + s
			}
			if i+n == len(w) {
				s += m.suffix
			}
			if id, ok := m.vocab[s]; ok {
				add(id)
				lastUnk = false
			} else {
				unknown(ch)
			}
			i += n
		}
	}
	for i := range syms {
		syms[i].prev, syms[i].next = i-1, i+1
	}
	if len(syms) > 0 {
		syms[len(syms)-1].next = -1
	}
	return syms
}

// mergeAll applies merges, lowest rank first and leftmost first among
// equals, until none applies.
func (m *bpe) mergeAll(syms []symbol) []symbol {
	var h pairHeap
	push := func(pos int) {
		next := syms[pos].next
		if next < 0 {
			return
		}
		if mg, ok := m.merges[pairKey(syms[pos].id, syms[next].id)]; ok {
			h.push(pairItem{key: uint64(mg.rank)<<32 | uint64(pos), id: mg.id})
		}
	}
	for i := 0; i+1 < len(syms); i++ {
		push(i)
	}
	for len(h) > 0 {
		top := h.pop()
		pos := int(uint32(top.key))
		s := &syms[pos]
		if s.gone || s.next < 0 {
			continue
		}
		right := &syms[s.next]
		// The pair may have changed since it was queued.
		if mg, ok := m.merges[pairKey(s.id, right.id)]; !ok || mg.id != top.id {
			continue
		}
		s.id = int(top.id)
		s.next = right.next
		right.gone = true
		if s.next >= 0 {
			syms[s.next].prev = pos
		}
		if s.prev >= 0 {
			push(s.prev)
		}
		push(pos)
	}
	return syms
}

// pairItem is a queued merge: rank in the high 32 bits of key, position of
// the left symbol in the low 32.
type pairItem struct {
	key uint64
	id  int32
}

// pairHeap is a binary min-heap of pairItems by key.
type pairHeap []pairItem

func (h *pairHeap) push(x pairItem) {
	*h = append(*h, x)
	a := *h
	i := len(a) - 1
	for i > 0 {
		p := (i - 1) / 2
		if a[p].key <= a[i].key {
			break
		}
		a[p], a[i] = a[i], a[p]
		i = p
	}
}

func (h *pairHeap) pop() pairItem {
	a := *h
	top := a[0]
	n := len(a) - 1
	a[0] = a[n]
	a = a[:n]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && a[l].key < a[m].key {
			m = l
		}
		if r < n && a[r].key < a[m].key {
			m = r
		}
		if m == i {
			break
		}
		a[i], a[m] = a[m], a[i]
		i = m
	}
	*h = a
	return top
}
