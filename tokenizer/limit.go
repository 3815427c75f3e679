package tokenizer

import (
	"fmt"
	"strings"
)

// This file holds encoding under bounds: how many bytes of text one token
// can stand for at most, encoding that stops as soon as a text is known to
// need more tokens than allowed, and encoding in which special tokens
// written in the text are plain text.

// EncodeOptions changes what EncodeWith does. The zero value encodes as
// Encode does.
type EncodeOptions struct {
	// MaxTokens, if > 0, is the most tokens the caller will take. A text
	// longer than MaxTokens × MaxTokenBytes bytes is refused before any
	// work, and encoding stops at the first word that takes the count past
	// MaxTokens: memory and time stay proportional to MaxTokens, not to the
	// text. EncodeWith then returns a *TooLongError.
	MaxTokens int
	// SpecialAsText encodes special added tokens written in the text as
	// the plain text they are made of (Hugging Face's
	// split_special_tokens); added tokens that are not special are still
	// recognised.
	SpecialAsText bool
	// KeepSpecial, if set (and SpecialAsText is not), is asked about each
	// special token found in the text as given, by its byte span; a token
	// it refuses is encoded as plain text. Special tokens matched only
	// after normalization (normalized: true) are then never recognised.
	KeepSpecial func(start, end int) bool
}

// TooLongError says that a text needs more tokens than allowed.
type TooLongError struct {
	Limit int // EncodeOptions.MaxTokens
	// AtLeast is a lower bound on the tokens the text needs (more than
	// Limit); Bytes is the text's length.
	AtLeast, Bytes int
}

// Error says how long the text is and what the limit was.
func (e *TooLongError) Error() string {
	return fmt.Sprintf("text of %d bytes needs more than %d tokens (at least %d)", e.Bytes, e.Limit, e.AtLeast)
}

// encodeLimits is what a tokenizer knows about the bytes one token covers.
type encodeLimits struct {
	// word is the longest piece a word (pre-tokenized, normalized text)
	// can give one token, 0 if unbounded (fused unknown characters).
	word int
	// text is the longest piece of the text as given that one token can
	// stand for, 0 if unbounded (added tokens that strip white space).
	text int
	// plainRaw and plainNorm are rawSet and normSet without the special
	// tokens.
	plainRaw, plainNorm *addedSet
}

// setLimits computes t.limits; buildVocab calls it last.
func (t *Tokenizer) setLimits() {
	longest := 0
	for id, tok := range t.tokens {
		if t.has[id] {
			longest = max(longest, len(tok), len(t.bytes[id]))
		}
	}
	if t.model.unk >= 0 {
		longest = max(longest, 4) // one unknown character
	}
	l := encodeLimits{word: longest}
	if t.model.unk >= 0 && t.model.fuseUnk {
		l.word = 0
	}
	// Normalization can shrink text: a 4-byte character may become one
	// byte (NFKC of U+1D400 is "A"); so one token stands for up to four
	// times its bytes of the text as given.
	l.text = l.word
	if len(t.norm) > 0 {
		l.text *= 4
	}
	for _, a := range t.added {
		if a.lstrip || a.rstrip {
			l.text = 0 // the white space it strips is unbounded
			break
		}
	}
	l.plainRaw = newAddedSet(t.added,
		func(a addedToken) bool { return !a.normalized && !a.special },
		func(a addedToken) string { return a.content })
	l.plainNorm = newAddedSet(t.added,
		func(a addedToken) bool { return a.normalized && !a.special },
		func(a addedToken) string { return t.norm.apply(a.content) })
	t.limits = l
}

// MaxTokenBytes returns the most bytes of text, as given to Encode, that
// one token can stand for, or 0 when the tokenizer has no such bound (its
// added tokens strip white space, or it fuses unknown characters). A text
// of more than n × MaxTokenBytes bytes needs more than n tokens. A nil
// tokenizer (a model folder without tokenizer.json) has no bound: 0.
func (t *Tokenizer) MaxTokenBytes() int {
	if t == nil {
		return 0
	}
	return t.limits.text
}

// HasSpecial reports whether text contains a special token that Encode
// would recognise.
func (t *Tokenizer) HasSpecial(text string) bool {
	for _, sg := range t.rawSet.split(text, t.added, nil) {
		if sg.token >= 0 && t.added[sg.token].special {
			return true
		}
	}
	return false
}

// SpecialSpans returns the byte spans of the special tokens that Encode
// would recognise in text, in order.
func (t *Tokenizer) SpecialSpans(text string) [][2]int {
	var spans [][2]int
	off := 0
	for _, sg := range t.rawSet.split(text, t.added, nil) {
		// Segments cover the text in order, but lstrip and rstrip tokens
		// take white space into their segment: find the content in it.
		if sg.token >= 0 && t.added[sg.token].special {
			c := t.added[sg.token].content
			i := strings.Index(sg.text, c)
			spans = append(spans, [2]int{off + i, off + i + len(c)})
		}
		off += len(sg.text)
	}
	return spans
}

// EncodeWith returns the token ids of text under opts; see EncodeOptions.
// Its only error is a *TooLongError.
func (t *Tokenizer) EncodeWith(text string, opts EncodeOptions) ([]int, error) {
	limit := opts.MaxTokens
	if limit > 0 {
		if per := t.limits.text; per > 0 && len(text) > limit*per {
			return nil, &TooLongError{Limit: limit, AtLeast: (len(text) + per - 1) / per, Bytes: len(text)}
		}
	}
	raw, normed := t.rawSet, t.normSet
	if opts.SpecialAsText {
		raw, normed = t.limits.plainRaw, t.limits.plainNorm
	} else if opts.KeepSpecial != nil {
		normed = t.limits.plainNorm
	}
	capacity := len(text)/3 + 1
	if limit > 0 {
		capacity = min(capacity, limit+1)
	}
	ids := make([]int, 0, capacity)
	over := false
	words := 0
	run := t.pre.chain(func(word string) {
		if over {
			return
		}
		if limit > 0 {
			left := limit - len(ids)
			if per := t.limits.word; per > 0 && len(word) > left*per {
				over, words = true, (len(word)+per-1)/per
				return
			}
		}
		ids = t.model.tokenize(word, ids)
		over = limit > 0 && len(ids) > limit
	})
	var segs, inner []segment
	if opts.KeepSpecial != nil && !opts.SpecialAsText {
		segs = raw.splitKeep(text, t.added, segs, opts.KeepSpecial)
	} else {
		segs = raw.split(text, t.added, segs)
	}
	for _, sg := range segs {
		if over {
			break
		}
		if sg.token >= 0 {
			ids = append(ids, t.added[sg.token].id)
			over = limit > 0 && len(ids) > limit
			continue
		}
		s := sg.text
		if t.norm != nil {
			s = t.norm.apply(s)
		}
		inner = normed.split(s, t.added, inner[:0])
		for _, in := range inner {
			if over {
				break
			}
			if in.token >= 0 {
				ids = append(ids, t.added[in.token].id)
				over = limit > 0 && len(ids) > limit
				continue
			}
			run(in.text)
		}
	}
	if over {
		return nil, &TooLongError{Limit: limit, AtLeast: max(len(ids), limit+1, len(ids)+words), Bytes: len(text)}
	}
	return ids, nil
}

// splitKeep is split for a text in which keep decides, by byte span, which
// special tokens count; a refused one is plain text, one piece with the
// text around it.
func (s *addedSet) splitKeep(text string, tokens []addedToken, dst []segment, keep func(start, end int) bool) []segment {
	parts := s.split(text, tokens, nil)
	off := 0 // segments cover the text in order
	for _, p := range parts {
		start := off
		off += len(p.text)
		if p.token >= 0 {
			if !tokens[p.token].special {
				dst = append(dst, p)
				continue
			}
			c := tokens[p.token].content
			i := start + strings.Index(p.text, c)
			if keep(i, i+len(c)) {
				dst = append(dst, p)
				continue
			}
		}
		if n := len(dst); n > 0 && dst[n-1].token < 0 {
			prevStart := start - len(dst[n-1].text)
			dst[n-1].text = text[prevStart:off]
			continue
		}
		dst = append(dst, segment{text[start:off], -1})
	}
	return dst
}
