package tokenizer

import (
	"encoding/json"
	"fmt"

	"golang.org/x/text/unicode/norm"
)

// normalizer rewrites text before pre-tokenization.
type normalizer []norm.Form

func (n normalizer) apply(s string) string {
	for _, f := range n {
		s = f.String(s)
	}
	return s
}

var unicodeForms = map[string]norm.Form{
	"NFC":  norm.NFC,
	"NFD":  norm.NFD,
	"NFKC": norm.NFKC,
	"NFKD": norm.NFKD,
}

// parseNormalizer accepts null, the Unicode normalization forms, and
// Sequences of them.
func parseNormalizer(raw json.RawMessage, depth int) (normalizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	if depth > 8 {
		return nil, fmt.Errorf("normalizers nested too deeply")
	}
	var n struct {
		Type        string            `json:"type"`
		Normalizers []json.RawMessage `json:"normalizers"`
	}
	if err := json.Unmarshal(raw, &n); err != nil {
		return nil, fmt.Errorf("normalizer: %w", err)
	}
	if f, ok := unicodeForms[n.Type]; ok {
		return normalizer{f}, nil
	}
	if n.Type != "Sequence" {
		return nil, fmt.Errorf("unsupported normalizer type %q (supported: NFC, NFD, NFKC, NFKD, Sequence)", n.Type)
	}
	var out normalizer
	for k, sub := range n.Normalizers {
		f, err := parseNormalizer(sub, depth+1)
		if err != nil {
			return nil, fmt.Errorf("normalizer %d of Sequence: %w", k, err)
		}
		out = append(out, f...)
	}
	return out, nil
}
