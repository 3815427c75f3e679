package blend

import (
	"fmt"
	"strings"
)

// Split cuts a rendered prompt into segments around its documents, which
// must appear in text in the given order, and tokenizes each segment on its
// own (so a document's tokens are the same wherever it sits, and its
// cached KV can be found again). encode is the tokenizer.
func Split(text string, docs []string, encode func(string) []int) (Prompt, error) {
	var p Prompt
	rest := text
	for i, d := range docs {
		if d == "" {
			return nil, fmt.Errorf("document %d is empty", i)
		}
		at := strings.Index(rest, d)
		if at < 0 {
			return nil, fmt.Errorf("document %d not found in the rendered prompt (after the documents before it)", i)
		}
		if at > 0 {
			p = append(p, Segment{Tokens: encode(rest[:at])})
		}
		p = append(p, Segment{Tokens: encode(d), Doc: true})
		rest = rest[at+len(d):]
	}
	if rest != "" {
		p = append(p, Segment{Tokens: encode(rest)})
	}
	return p, nil
}
