package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// addedToken is an entry of tokenizer.json's added_tokens.
type addedToken struct {
	id         int
	content    string
	singleWord bool
	lstrip     bool
	rstrip     bool
	normalized bool
	special    bool
}

// addedSet finds added tokens in text: at the leftmost position where any
// token starts, the longest one, as HF's Aho-Corasick matcher
// (MatchKind::LeftmostLongest) does.
type addedSet struct {
	first [256]bool // bytes that start some token
	nodes []trieNode
}

type trieNode struct {
	next  map[byte]int32
	token int32 // index into the tokens slice, or -1
}

func newAddedSet(tokens []addedToken, pick func(addedToken) bool, content func(addedToken) string) *addedSet {
	s := &addedSet{nodes: []trieNode{{token: -1}}}
	n := 0
	for k, t := range tokens {
		c := content(t)
		if !pick(t) || c == "" {
			continue
		}
		n++
		s.first[c[0]] = true
		cur := int32(0)
		for i := 0; i < len(c); i++ {
			nd := &s.nodes[cur]
			nx, ok := nd.next[c[i]]
			if !ok {
				if nd.next == nil {
					nd.next = make(map[byte]int32)
				}
				nx = int32(len(s.nodes))
				nd.next[c[i]] = nx
				s.nodes = append(s.nodes, trieNode{token: -1})
			}
			cur = nx
		}
		if s.nodes[cur].token < 0 {
			s.nodes[cur].token = int32(k)
		}
	}
	if n == 0 {
		return nil
	}
	return s
}

// longestAt returns the token that matches longest at s[i:] and its
// length, or -1.
func (s *addedSet) longestAt(text string, i int) (tok, n int) {
	tok, cur := -1, int32(0)
	for j := i; j < len(text); j++ {
		nx, ok := s.nodes[cur].next[text[j]]
		if !ok {
			break
		}
		cur = nx
		if t := s.nodes[cur].token; t >= 0 {
			tok, n = int(t), j+1-i
		}
	}
	return tok, n
}

// A segment is a part of the input: an added token, or text to tokenize.
type segment struct {
	text  string
	token int // index into the added tokens, or -1 for text
}

// split cuts text around the added tokens it contains, applying each
// token's single_word, lstrip and rstrip options as HF's find_matches does.
func (s *addedSet) split(text string, tokens []addedToken, dst []segment) []segment {
	if s == nil || text == "" {
		if text != "" {
			dst = append(dst, segment{text, -1})
		}
		return dst
	}
	done := 0 // end of the last match
	for i := 0; i < len(text); i++ {
		if !s.first[text[i]] {
			continue
		}
		k, n := s.longestAt(text, i)
		if k < 0 {
			continue
		}
		t := tokens[k]
		start, stop := i, i+n
		if t.singleWord && (endsWithWord(text[:start]) || startsWithWord(text[stop:])) {
			// Rejected, but the match is still consumed, as HF's
			// non-overlapping search does.
			i = stop - 1
			continue
		}
		if t.lstrip {
			start = max(len(strings.TrimRightFunc(text[:start], unicode.IsSpace)), done)
		}
		if t.rstrip {
			stop = len(text) - len(strings.TrimLeftFunc(text[stop:], unicode.IsSpace))
		}
		if start > done {
			dst = append(dst, segment{text[done:start], -1})
		}
		dst = append(dst, segment{text[start:stop], k})
		done = stop
		i = stop - 1
	}
	if done < len(text) {
		dst = append(dst, segment{text[done:], -1})
	}
	return dst
}

// isWordChar is what HF counts as part of a word for single_word tokens.
func isWordChar(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r)
}

func endsWithWord(s string) bool {
	r, n := utf8.DecodeLastRuneInString(s)
	return n > 0 && isWordChar(r)
}

func startsWithWord(s string) bool {
	r, n := utf8.DecodeRuneInString(s)
	return n > 0 && isWordChar(r)
}
