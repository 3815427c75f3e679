// Package tokenizer encodes text to token ids and back with the byte-level
// BPE tokenizers that Hugging Face models ship in tokenizer.json (GPT-2,
// Llama 3, Qwen2 and their kin), matching the HF tokenizers library.
//
// Encoding runs the same steps as HF: added tokens (special or not) are
// found in the text first; the rest is normalized, cut into words by the
// pre-tokenizer, mapped to the byte-level alphabet and merged by BPE. The
// pre-tokenizer regexes of Llama 3, Qwen2 and GPT-2 use a look-ahead that
// Go's regexp lacks; they run as hand-written scanners that give the same
// splits. Encode never adds a BOS token: see BOS.
//
// A Tokenizer is safe for concurrent use.
package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Tokenizer is a parsed tokenizer.json.
type Tokenizer struct {
	model   *bpe
	norm    normalizer
	pre     pipeline
	added   []addedToken
	rawSet  *addedSet // added tokens matched in the text as given
	normSet *addedSet // added tokens matched in normalized text

	addedIDs   map[string]int // added token content → id
	tokens     []string       // id → token, as in the vocabulary
	has        []bool         // id → whether the id names a token
	bytes      [][]byte       // id → the bytes the token decodes to
	special    []bool         // id → whether it is a special added token
	joinDecode bool           // no decoder: tokens are joined with spaces

	bos, eos int // -1 when unknown

	limits encodeLimits // bounds on what one token covers (limit.go)
}

// File names in a model folder.
const (
	TokenizerFile = "tokenizer.json"
	ConfigFile    = "tokenizer_config.json"
)

// Load reads and parses a tokenizer.json file.
func Load(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	return t, nil
}

// LoadDir loads a model folder's tokenizer.json and, when present, its
// tokenizer_config.json, which may name the BOS and EOS tokens.
func LoadDir(dir string) (*Tokenizer, error) {
	t, err := Load(filepath.Join(dir, TokenizerFile))
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, ConfigFile)
	cfg, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return t, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if err := t.applyConfig(cfg); err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	return t, nil
}

// ParseWithConfig parses a tokenizer.json and a tokenizer_config.json.
func ParseWithConfig(tokenizerJSON, configJSON []byte) (*Tokenizer, error) {
	t, err := Parse(tokenizerJSON)
	if err != nil {
		return nil, err
	}
	if err := t.applyConfig(configJSON); err != nil {
		return nil, fmt.Errorf("%s: %w", ConfigFile, err)
	}
	return t, nil
}

type fileJSON struct {
	AddedTokens   []addedTokenJSON `json:"added_tokens"`
	Normalizer    json.RawMessage  `json:"normalizer"`
	PreTokenizer  json.RawMessage  `json:"pre_tokenizer"`
	PostProcessor json.RawMessage  `json:"post_processor"`
	Decoder       json.RawMessage  `json:"decoder"`
	Model         json.RawMessage  `json:"model"`
}

type addedTokenJSON struct {
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	Lstrip     bool   `json:"lstrip"`
	Rstrip     bool   `json:"rstrip"`
	Normalized *bool  `json:"normalized"`
	Special    bool   `json:"special"`
}

type modelJSON struct {
	Type                    string          `json:"type"`
	Dropout                 *float64        `json:"dropout"`
	UnkToken                *string         `json:"unk_token"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	FuseUnk                 bool            `json:"fuse_unk"`
	ByteFallback            bool            `json:"byte_fallback"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	Vocab                   map[string]int  `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
}

// maxID bounds token ids, and maxGap how sparse they may be, so that a
// malformed file cannot make Parse allocate without bound.
const (
	maxID  = 1 << 24
	maxGap = 1 << 16
)

// Parse parses the contents of a Hugging Face tokenizer.json holding a BPE
// model. It returns an error, never panics, on malformed input, and on
// components it does not support. Supported are: normalizers NFC, NFD,
// NFKC, NFKD and Sequence; pre-tokenizers Sequence, Split, ByteLevel and
// Digits; the ByteLevel decoder (or none); any post-processor (only
// TemplateProcessing, RobertaProcessing, BertProcessing and Sequence are
// read, for BOS). Added tokens are numbered as HF numbers them, which
// agrees with the ids in the files HF writes.
func Parse(data []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	if isNull(f.Model) {
		return nil, errors.New("tokenizer.json: no model")
	}
	var mj modelJSON
	if err := json.Unmarshal(f.Model, &mj); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if mj.Type != "BPE" && !(mj.Type == "" && mj.Merges != nil) {
		return nil, fmt.Errorf("model: unsupported type %q (only BPE is supported)", mj.Type)
	}
	merges, err := parseMerges(mj.Merges)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if mj.Vocab == nil {
		mj.Vocab = map[string]int{}
	}
	prefix := ""
	if mj.ContinuingSubwordPrefix != nil {
		prefix = *mj.ContinuingSubwordPrefix
	}
	model, err := newBPE(mj.Vocab, merges, prefix)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if mj.EndOfWordSuffix != nil {
		model.suffix = *mj.EndOfWordSuffix
	}
	model.ignoreMerges = mj.IgnoreMerges
	model.fuseUnk = mj.FuseUnk
	model.byteFallback = mj.ByteFallback
	if mj.UnkToken != nil {
		id, ok := mj.Vocab[*mj.UnkToken]
		if !ok {
			return nil, fmt.Errorf("model: unk_token %q is not in the vocabulary", *mj.UnkToken)
		}
		model.unk = id
	}

	t := &Tokenizer{model: model, bos: -1, eos: -1, addedIDs: map[string]int{}}
	if t.norm, err = parseNormalizer(f.Normalizer, 0); err != nil {
		return nil, err
	}
	pre, byteLevel, err := parsePreTokenizer(f.PreTokenizer, 0)
	if err != nil {
		return nil, err
	}
	nbl := 0
	for _, st := range pre {
		if _, ok := st.(*byteLevelStage); ok {
			nbl++
		}
	}
	if nbl > 1 || len(pre) > 64 {
		// Each ByteLevel stage doubles the text that the next one sees.
		return nil, fmt.Errorf("pre_tokenizer: %d stages with %d ByteLevel; want at most 64 and one", len(pre), nbl)
	}
	if n := len(pre); byteLevel && n > 0 {
		// Let the model map the bytes of the final pieces itself: it can
		// then cache words by their raw bytes.
		if last, ok := pre[n-1].(*byteLevelStage); ok {
			last.mapBytes = false
			model.setRawBytes()
			if !last.addPrefixSpace && !last.useRegex {
				pre = pre[:n-1]
			}
		}
	}
	t.pre = pre
	if t.joinDecode, err = parseDecoder(f.Decoder, 0); err != nil {
		return nil, err
	}
	if err := t.buildVocab(mj.Vocab, f.AddedTokens); err != nil {
		return nil, err
	}
	if t.bos, err = parsePostProcessor(f.PostProcessor, 0); err != nil {
		return nil, err
	}
	return t, nil
}

// buildVocab fills the id-indexed tables and the added-token matchers.
func (t *Tokenizer) buildVocab(vocab map[string]int, added []addedTokenJSON) error {
	top := -1
	for tok, id := range vocab {
		if id < 0 || id >= maxID {
			return fmt.Errorf("model: token %q has id %d out of range", tok, id)
		}
		top = max(top, id)
	}
	if top >= len(vocab)+maxGap {
		return fmt.Errorf("model: token ids are too sparse: id %d among %d tokens", top, len(vocab))
	}
	// HF ignores the ids that the file gives added tokens and numbers them
	// itself, in order: a token in the vocabulary keeps its id, any other
	// gets the next id after the vocabulary and the added tokens so far.
	// The files HF writes agree with that; for others this matches HF.
	maxAdded := -1
	for _, a := range added {
		if a.Content == "" {
			continue
		}
		if _, dup := t.addedIDs[a.Content]; dup {
			continue
		}
		id, ok := vocab[a.Content]
		if !ok {
			id = len(vocab)
			if maxAdded >= len(vocab) || len(vocab) == 0 {
				id = maxAdded + 1
			}
		}
		maxAdded = max(maxAdded, id)
		t.addedIDs[a.Content] = id
		norm := a.Normalized == nil && !a.Special || a.Normalized != nil && *a.Normalized
		t.added = append(t.added, addedToken{
			id: id, content: a.Content, singleWord: a.SingleWord,
			lstrip: a.Lstrip, rstrip: a.Rstrip, normalized: norm, special: a.Special,
		})
		top = max(top, id)
	}
	n := top + 1
	t.tokens = make([]string, n)
	t.has = make([]bool, n)
	t.special = make([]bool, n)
	for tok, id := range vocab {
		// Two tokens with one id: keep one, the same one every time.
		if t.has[id] && t.tokens[id] < tok {
			continue
		}
		t.tokens[id], t.has[id] = tok, true
	}
	for _, a := range t.added {
		t.tokens[a.id], t.has[a.id] = a.content, true
		t.special[a.id] = a.special
	}
	t.bytes = make([][]byte, n)
	for id, tok := range t.tokens {
		if !t.has[id] {
			continue
		}
		if t.joinDecode {
			t.bytes[id] = []byte(tok)
		} else {
			t.bytes[id] = byteLevelDecode(tok)
		}
	}
	t.rawSet = newAddedSet(t.added,
		func(a addedToken) bool { return !a.normalized },
		func(a addedToken) string { return a.content })
	t.normSet = newAddedSet(t.added,
		func(a addedToken) bool { return a.normalized },
		func(a addedToken) string { return t.norm.apply(a.content) })
	t.setLimits()
	return nil
}

// parseMerges reads merges as "a b" strings or as [a, b] pairs.
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var strs []string
	if err := json.Unmarshal(raw, &strs); err == nil {
		out := make([][2]string, len(strs))
		for k, s := range strs {
			a, b, ok := cutSpace(s)
			if !ok {
				return nil, fmt.Errorf("merge %d: %q is not two tokens separated by a space", k, s)
			}
			out[k] = [2]string{a, b}
		}
		return out, nil
	}
	var pairs [][]string
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, fmt.Errorf("merges: want a list of \"a b\" strings or of [a, b] pairs: %w", err)
	}
	out := make([][2]string, len(pairs))
	for k, p := range pairs {
		if len(p) != 2 {
			return nil, fmt.Errorf("merge %d: want 2 tokens, got %d", k, len(p))
		}
		out[k] = [2]string{p[0], p[1]}
	}
	return out, nil
}

func cutSpace(s string) (a, b string, ok bool) {
	i := strings.IndexByte(s, ' ')
	if i < 0 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// parseDecoder accepts ByteLevel decoders (alone or in a Sequence) and no
// decoder at all, with which HF joins tokens with spaces.
func parseDecoder(raw json.RawMessage, depth int) (join bool, err error) {
	if isNull(raw) {
		return true, nil
	}
	if depth > 8 {
		return false, errors.New("decoders nested too deeply")
	}
	var d struct {
		Type     string            `json:"type"`
		Decoders []json.RawMessage `json:"decoders"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return false, fmt.Errorf("decoder: %w", err)
	}
	switch d.Type {
	case "ByteLevel":
		return false, nil
	case "Sequence":
		if len(d.Decoders) == 0 {
			return true, nil
		}
		for k, sub := range d.Decoders {
			j, err := parseDecoder(sub, depth+1)
			if err != nil {
				return false, fmt.Errorf("decoder %d of Sequence: %w", k, err)
			}
			if j {
				return false, fmt.Errorf("decoder %d of Sequence: empty", k)
			}
		}
		return false, nil
	}
	return false, fmt.Errorf("unsupported decoder type %q (only ByteLevel is supported)", d.Type)
}

// parsePostProcessor finds the BOS token that a post-processor puts in
// front of a single sequence, or -1. Unknown post-processors are ignored:
// Encode does not run them.
func parsePostProcessor(raw json.RawMessage, depth int) (int, error) {
	if isNull(raw) || depth > 8 {
		return -1, nil
	}
	var p struct {
		Type   string `json:"type"`
		Single []struct {
			SpecialToken *struct {
				ID string `json:"id"`
			} `json:"SpecialToken"`
		} `json:"single"`
		SpecialTokens map[string]struct {
			IDs []int `json:"ids"`
		} `json:"special_tokens"`
		Cls        []json.RawMessage `json:"cls"`
		Processors []json.RawMessage `json:"processors"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return -1, fmt.Errorf("post_processor: %w", err)
	}
	switch p.Type {
	case "TemplateProcessing":
		if len(p.Single) == 0 || p.Single[0].SpecialToken == nil {
			return -1, nil
		}
		name := p.Single[0].SpecialToken.ID
		st, ok := p.SpecialTokens[name]
		if !ok || len(st.IDs) == 0 {
			return -1, fmt.Errorf("post_processor: special token %q has no ids", name)
		}
		return st.IDs[0], nil
	case "RobertaProcessing", "BertProcessing":
		var id int
		if len(p.Cls) == 2 && json.Unmarshal(p.Cls[1], &id) == nil {
			return id, nil
		}
		return -1, fmt.Errorf("post_processor: %s: malformed cls", p.Type)
	case "Sequence":
		for _, sub := range p.Processors {
			id, err := parsePostProcessor(sub, depth+1)
			if err != nil || id >= 0 {
				return id, err
			}
		}
	}
	return -1, nil
}

// applyConfig reads the BOS and EOS tokens of a tokenizer_config.json. Its
// BOS token counts only where the post-processor names none and the config
// sets add_bos_token.
func (t *Tokenizer) applyConfig(data []byte) error {
	var c struct {
		BOS         json.RawMessage `json:"bos_token"`
		EOS         json.RawMessage `json:"eos_token"`
		AddBOSToken bool            `json:"add_bos_token"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return err
	}
	lookup := func(field string, raw json.RawMessage) (int, error) {
		s, ok, err := ConfigToken(raw)
		if err != nil || !ok {
			return -1, err
		}
		id, ok := t.TokenID(s)
		if !ok {
			return -1, fmt.Errorf("%s %q is not a token", field, s)
		}
		return id, nil
	}
	eos, err := lookup("eos_token", c.EOS)
	if err != nil {
		return err
	}
	t.eos = eos
	if t.bos < 0 && c.AddBOSToken {
		bos, err := lookup("bos_token", c.BOS)
		if err != nil {
			return err
		}
		t.bos = bos
	}
	return nil
}

// ConfigToken reads a special token as tokenizer_config.json writes it: a
// string, null, or an object whose "content" is the string. ok is false
// for null or a missing field.
func ConfigToken(raw json.RawMessage) (s string, ok bool, err error) {
	if isNull(raw) {
		return "", false, nil
	}
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, true, nil
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil || obj.Content == nil {
		return "", false, fmt.Errorf("special token %s: want a string, null or an object with content", raw)
	}
	return *obj.Content, true, nil
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// Encode returns the token ids of text. Added and special tokens written in
// the text are recognised; no BOS or other template token is added. A
// byte-level model encodes ill-formed UTF-8 byte for byte.
func (t *Tokenizer) Encode(text string) []int {
	ids := make([]int, 0, len(text)/3+1)
	var segs, inner []segment
	run := t.pre.chain(func(word string) { ids = t.model.tokenize(word, ids) })
	segs = t.rawSet.split(text, t.added, segs)
	for _, sg := range segs {
		if sg.token >= 0 {
			ids = append(ids, t.added[sg.token].id)
			continue
		}
		s := sg.text
		if t.norm != nil {
			s = t.norm.apply(s)
		}
		inner = t.normSet.split(s, t.added, inner[:0])
		for _, in := range inner {
			if in.token >= 0 {
				ids = append(ids, t.added[in.token].id)
				continue
			}
			run(in.text)
		}
	}
	return ids
}

// Decode returns the text of ids. Special tokens are written out. Ids
// that name no token are skipped. Bytes that do not form valid UTF-8 become
// U+FFFD, one for each maximal ill-formed sequence, as in HF.
func (t *Tokenizer) Decode(ids []int) string {
	buf := make([]byte, 0, 4*len(ids))
	n := 0
	for _, id := range ids {
		b, ok := t.tokenBytes(id)
		if !ok {
			continue
		}
		if t.joinDecode && n > 0 {
			buf = append(buf, ' ')
		}
		n++
		buf = append(buf, b...)
	}
	return lossyString(buf)
}

// tokenBytes returns the bytes that id decodes to.
func (t *Tokenizer) tokenBytes(id int) ([]byte, bool) {
	if id < 0 || id >= len(t.has) || !t.has[id] {
		return nil, false
	}
	return t.bytes[id], true
}

// VocabSize returns one more than the largest token id, counting added
// tokens: the number of rows an embedding table needs.
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// TokenID returns the id of a token, given as it is written in the
// vocabulary (byte-level form, such as "Ġthe") or as an added token's
// content.
func (t *Tokenizer) TokenID(s string) (int, bool) {
	if id, ok := t.addedIDs[s]; ok {
		return id, true
	}
	id, ok := t.model.vocab[s]
	return id, ok
}

// TokenString returns the token of id as it is written in the vocabulary,
// or "" if id names no token.
func (t *Tokenizer) TokenString(id int) string {
	if id < 0 || id >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// IsSpecial reports whether id is a special added token.
func (t *Tokenizer) IsSpecial(id int) bool {
	return id >= 0 && id < len(t.special) && t.special[id]
}

// BOS returns the token that begins a sequence, when the post-processor
// puts one in front of every sequence or tokenizer_config.json sets
// add_bos_token. Encode never adds it; a caller encoding a raw prompt
// prepends it. (Chat templates usually write it themselves.)
func (t *Tokenizer) BOS() (int, bool) { return t.bos, t.bos >= 0 }

// EOS returns tokenizer_config.json's eos_token, when the tokenizer was
// loaded with one.
func (t *Tokenizer) EOS() (int, bool) { return t.eos, t.eos >= 0 }
