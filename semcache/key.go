package semcache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// Request is a chat or completion request reduced to what decides its
// answer. ParseRequest builds it from the JSON body a client sent.
//
// The exact key is the SHA-256 of a canonical JSON encoding of the request.
// Canonicalization (each step keeps the meaning of the request):
//
//  1. JSON key order, white space and number spelling (1, 1.0, 1e0) do not count.
//  2. max_completion_tokens and max_tokens are one parameter (the former wins);
//     for completions, an absent max_tokens is OpenAI's default 16.
//  3. Default values equal absent ones: temperature 1, top_p 1, top_k 0 or -1,
//     n 1, presence/frequency penalty 0, logit_bias {}, tools [] or null,
//     tool_choice "auto" or "none" without tools, response_format
//     {"type":"text"}, ignore_eos false, kv_press "none", stop null or [].
//  4. Greedy decoding (temperature 0, top_p 0 or top_k 1) drops seed, top_p and
//     top_k, which cannot change a greedy answer.
//  5. stop as a string equals a list of that one string; the list is a set
//     (order and repeats do not count).
//  6. Messages: the role is lower-cased and trimmed; content given as a list
//     of text parts equals the parts joined as a string; text is in Unicode
//     NFC and line ends are \n.
//  7. Fields that do not change the answer are left out: stream,
//     stream_options, user, metadata, cache_salt (the tenant keys its own
//     namespace) and this cache's own fields (semcache_*).
//
// Anything else (an unknown field included) counts as it was sent, so two
// requests that could get different answers never share a key.
//
// The surface key is the exact key with the last user message (or the
// prompt) replaced by its SurfaceText; the partition key leaves that text
// out altogether, so that semantic matches are looked for only among
// requests that agree on everything else (model, system prompt, earlier
// turns, sampling, tools).
type Request struct {
	// Chat is true for a chat request (messages), false for a completion (prompt).
	Chat bool
	// Text is the last user message (or the prompt) as sent.
	Text string
	// Category is the request's semcache_category field, "" if none.
	Category string
	// StoreSampled is the request's semcache_store_sampled field: a sampled
	// answer (temperature > 0) may be stored.
	StoreSampled bool
	// Sampled reports whether the answer is sampled rather than greedy.
	Sampled bool
	// Stream is the request's stream field.
	Stream bool

	canon    map[string]any
	textPath func(map[string]any, any) // replaces the query text in a copy of canon
}

// SurfaceText normalizes a question's surface so that case, spacing, a
// polite prefix and trailing punctuation do not count: Unicode NFKC,
// lower case, runs of white space as one space, trimmed, no space before
// , . ; : ! or ?, one leading greeting or polite prefix removed (see
// politePrefixes) and trailing . ! ? removed. Digits, operators and
// words are kept, so "20 times 36" and "20 times 37" stay apart.
func SurfaceText(s string) string {
	s = strings.ToLower(norm.NFKC.String(s))
	s = strings.Join(strings.FieldsFunc(s, unicode.IsSpace), " ")
	var b strings.Builder
	for i, r := range s {
		if r == ' ' && i+1 < len(s) && strings.ContainsRune(",.;:!?", rune(s[i+1])) {
			continue
		}
		b.WriteRune(r)
	}
	s = b.String()
	for _, p := range politePrefixes {
		if rest, ok := strings.CutPrefix(s, p); ok && strings.TrimSpace(rest) != "" {
			s = strings.TrimSpace(rest)
			break
		}
	}
	return strings.TrimRight(s, ".!? ")
}

// politePrefixes are the openings SurfaceText removes (after lower-casing
// and spacing), longest first.
var politePrefixes = []string{
	"could you answer this?", "can you answer this?", "i have a question:", "quick question -", "quick question:",
	"please tell me:", "tell me,", "please,", "please", "hello!", "hello,", "hi!", "hi,", "hey!", "hey,",
}

// ParseRequest reads a chat (messages) or completion (prompt) request body.
// It fails on a body that is not a JSON object or has neither field.
func ParseRequest(body []byte) (*Request, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil || raw == nil {
		return nil, fmt.Errorf("semcache: the request body is not a JSON object")
	}
	r := &Request{}
	if v, ok := raw["semcache_category"]; ok {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("semcache: semcache_category must be a string")
		}
		r.Category = strings.ToLower(strings.TrimSpace(s))
	}
	if v, ok := raw["semcache_store_sampled"].(bool); ok {
		r.StoreSampled = v
	}
	r.Stream, _ = raw["stream"].(bool)
	c := map[string]any{}
	for k, v := range raw {
		switch k {
		case "stream", "stream_options", "user", "metadata", "cache_salt":
			continue
		}
		if strings.HasPrefix(k, "semcache_") {
			continue
		}
		c[k] = canonValue(v)
	}
	if msgs, ok := raw["messages"]; ok {
		r.Chat = true
		list, ok := msgs.([]any)
		if !ok || len(list) == 0 {
			return nil, fmt.Errorf("semcache: messages must be a non-empty list")
		}
		out := make([]any, len(list))
		last := -1
		for i, m := range list {
			obj, ok := m.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("semcache: messages[%d] is not an object", i)
			}
			nm := map[string]any{}
			for k, v := range obj {
				nm[k] = canonValue(v)
			}
			role, _ := obj["role"].(string)
			role = strings.ToLower(strings.TrimSpace(role))
			nm["role"] = role
			text, err := contentText(obj["content"])
			if err != nil {
				return nil, fmt.Errorf("semcache: messages[%d]: %v", i, err)
			}
			nm["content"] = text
			if role == "user" {
				last, r.Text = i, text
			}
			out[i] = nm
		}
		c["messages"] = out
		if last < 0 {
			return nil, fmt.Errorf("semcache: no user message")
		}
		r.textPath = func(cp map[string]any, v any) {
			msgs := append([]any(nil), cp["messages"].([]any)...)
			m := map[string]any{}
			for k, x := range msgs[last].(map[string]any) {
				m[k] = x
			}
			m["content"] = v
			msgs[last] = m
			cp["messages"] = msgs
		}
	} else {
		switch p := raw["prompt"].(type) {
		case string:
			r.Text = cleanText(p)
		case []any:
			if len(p) != 1 {
				return nil, fmt.Errorf("semcache: prompt must be one string")
			}
			s, ok := p[0].(string)
			if !ok {
				return nil, fmt.Errorf("semcache: prompt must be one string")
			}
			r.Text = cleanText(s)
		default:
			return nil, fmt.Errorf("semcache: the request has neither messages nor a prompt string")
		}
		c["prompt"] = r.Text
		r.textPath = func(cp map[string]any, v any) { cp["prompt"] = v }
		if _, ok := c["max_tokens"]; !ok {
			if _, ok := c["max_completion_tokens"]; !ok {
				c["max_tokens"] = number("16")
			}
		}
	}
	r.Sampled = canonSampling(c)
	r.canon = c
	return r, nil
}

// contentText returns a message's content as text: a string, null, or
// the text parts of a list joined.
func contentText(v any) (string, error) {
	switch t := v.(type) {
	case nil:
		return "", nil
	case string:
		return cleanText(t), nil
	case []any:
		var b strings.Builder
		for _, p := range t {
			part, ok := p.(map[string]any)
			if !ok || part["type"] != "text" {
				return "", fmt.Errorf("content parts other than text are not cached")
			}
			s, _ := part["text"].(string)
			b.WriteString(s)
		}
		return cleanText(b.String()), nil
	}
	return "", fmt.Errorf("content must be a string or a list of text parts")
}

// cleanText puts text in NFC with \n line ends.
func cleanText(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return norm.NFC.String(s)
}

// canonValue turns numbers into one spelling and strings into NFC, all the
// way down.
func canonValue(v any) any {
	switch t := v.(type) {
	case json.Number:
		return canonNumber(t)
	case string:
		return cleanText(t)
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = canonValue(x)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[k] = canonValue(x)
		}
		return out
	}
	return v
}

// number marks a canonical number (so it is not mistaken for a string).
type number string

// MarshalJSON writes the number bare.
func (n number) MarshalJSON() ([]byte, error) { return []byte(n), nil }

func canonNumber(n json.Number) number {
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) {
		return number(strconv.Quote(string(n)))
	}
	return number(strconv.FormatFloat(f, 'g', -1, 64))
}

// num reads a canonical number field; ok is false if absent or not a number.
func num(c map[string]any, k string) (float64, bool) {
	n, ok := c[k].(number)
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(n), 64)
	return f, err == nil
}

// canonSampling applies rules 2–5 to c and reports whether the answer is
// sampled.
func canonSampling(c map[string]any) bool {
	if v, ok := c["max_completion_tokens"]; ok && v != nil {
		c["max_tokens"] = v
	}
	delete(c, "max_completion_tokens")
	dropIf := func(k string, def ...any) {
		v, ok := c[k]
		if !ok {
			return
		}
		if v == nil {
			delete(c, k)
			return
		}
		for _, d := range def {
			if jsonEqual(v, d) {
				delete(c, k)
				return
			}
		}
	}
	dropIf("max_tokens")
	dropIf("temperature", number("1"))
	dropIf("top_p", number("1"))
	dropIf("top_k", number("0"), number("-1"))
	dropIf("n", number("1"))
	dropIf("presence_penalty", number("0"))
	dropIf("frequency_penalty", number("0"))
	dropIf("logit_bias", map[string]any{})
	dropIf("tools", []any{})
	dropIf("response_format", map[string]any{"type": "text"})
	dropIf("ignore_eos", false)
	dropIf("echo", false)
	dropIf("logprobs", false)
	dropIf("kv_press", "none", "")
	dropIf("seed")
	if _, ok := c["tools"]; !ok {
		dropIf("tool_choice", "auto", "none")
	}
	switch st := c["stop"].(type) {
	case nil:
		delete(c, "stop")
	case string:
		c["stop"] = []any{st}
	case []any:
		set := map[string]bool{}
		var list []string
		for _, x := range st {
			s, ok := x.(string)
			if !ok {
				list = nil
				break
			}
			if !set[s] {
				set[s] = true
				list = append(list, s)
			}
		}
		if list != nil || len(st) == 0 {
			sort.Strings(list)
			out := make([]any, len(list))
			for i, s := range list {
				out[i] = s
			}
			c["stop"] = out
			if len(out) == 0 {
				delete(c, "stop")
			}
		}
	}
	t, hasT := num(c, "temperature")
	if !hasT {
		t = 1
	}
	tp, hasTP := num(c, "top_p")
	tk, hasTK := num(c, "top_k")
	greedy := t == 0 || (hasTP && tp == 0) || (hasTK && tk == 1)
	if greedy {
		c["temperature"] = number("0")
		delete(c, "top_p")
		delete(c, "top_k")
		delete(c, "seed")
	}
	return !greedy
}

// jsonEqual compares two canonical values.
func jsonEqual(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// hash returns the hex SHA-256 of c's canonical JSON (map keys sorted).
func hash(c map[string]any) string {
	buf, err := json.Marshal(c)
	if err != nil { // cannot happen for decoded JSON; never share a key then
		buf = []byte(fmt.Sprintf("unencodable %p", c))
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:])
}

// with returns a shallow copy of the canonical request with the query text
// replaced by v.
func (r *Request) with(v any) map[string]any {
	cp := make(map[string]any, len(r.canon))
	for k, x := range r.canon {
		cp[k] = x
	}
	r.textPath(cp, v)
	return cp
}

// ExactKey returns the canonical hash of the whole request.
func (r *Request) ExactKey() string { return hash(r.canon) }

// SurfaceKey returns the canonical hash with the query text replaced by its
// SurfaceText.
func (r *Request) SurfaceKey() string {
	return hash(r.with(map[string]any{"surface": SurfaceText(r.Text)}))
}

// PartitionKey returns the canonical hash of everything but the query text:
// the requests whose answers may serve each other's paraphrases.
func (r *Request) PartitionKey() string {
	return hash(r.with(map[string]any{"query": true}))
}
