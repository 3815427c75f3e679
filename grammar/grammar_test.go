package grammar

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/kvserve/kvserve/models"
	"github.com/kvserve/kvserve/tokenizer"
)

var (
	vocabOnce sync.Once
	tinyVocab *Vocab
	tinyTok   *tokenizer.Tokenizer
)

// tinychatVocab is the bundled model's vocabulary.
func tinychatVocab(t testing.TB) (*Vocab, *tokenizer.Tokenizer) {
	t.Helper()
	if models.TinyChat() == nil {
		t.Skip("built without the bundled model")
	}
	vocabOnce.Do(func() {
		data, err := fs.ReadFile(models.TinyChat(), "tokenizer.json")
		if err != nil {
			panic(err)
		}
		if tinyTok, err = tokenizer.Parse(data); err != nil {
			panic(err)
		}
		tinyVocab = NewVocab(tinyTok.VocabSize(), tinyTok.TokenBytes, tinyTok.IsSpecial)
	})
	return tinyVocab, tinyTok
}

// schemas are the test's schemas with texts each must accept and refuse.
var schemas = []struct {
	name   string
	schema string
	good   []string
	bad    []string
}{
	{"flat", `{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},"ok":{"type":"boolean"}},"required":["name","age","ok"],"additionalProperties":false}`,
		[]string{`{"name":"Ann","age":31,"ok":true}`, `{"name": "A\"b\u00e9", "age": -4, "ok": false}`},
		[]string{`{"age":31,"name":"Ann","ok":true}`, `{"name":"Ann","age":3.5,"ok":true}`, `{"name":"Ann","age":31}`, `{"name":"Ann","age":031,"ok":true}`, `{"name":"Ann","age":31,"ok":true,"x":1}`, ` {"name":"Ann","age":31,"ok":true}`}},
	{"nested", `{"type":"object","properties":{"user":{"type":"object","properties":{"id":{"type":"integer"},"tags":{"type":"array","items":{"type":"string"}}},"required":["id","tags"]},"score":{"type":"number"}},"required":["user","score"]}`,
		[]string{`{"user":{"id":1,"tags":[]},"score":1.5e-3}`, `{"user":{"id":1,"tags":["a", "b"]},"score":-0.25}`},
		[]string{`{"user":{"id":1,"tags":[1]},"score":1}`, `{"user":{"id":1},"score":1}`, `{"user":{"id":1,"tags":[]},"score":1.}`}},
	{"enum", `{"type":"object","properties":{"color":{"enum":["red","green","blue"]},"size":{"type":"string","enum":["S","M","L"]}},"required":["color","size"]}`,
		[]string{`{"color":"green","size":"L"}`},
		[]string{`{"color":"pink","size":"L"}`, `{"color":"green","size":"XL"}`}},
	{"optional", `{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"},"c":{"type":"boolean"}},"required":["c"]}`,
		[]string{`{"c":true}`, `{"a":1,"c":false}`, `{"a":1,"b":"x","c":true}`, `{"b":"","c":true}`},
		[]string{`{}`, `{"a":1}`, `{"c":true,"a":1}`}},
	{"arrays", `{"type":"array","items":{"type":"object","properties":{"x":{"type":"number"},"y":{"type":"number"}},"required":["x","y"]},"minItems":1,"maxItems":3}`,
		[]string{`[{"x":1,"y":2}]`, `[{"x":1,"y":2},{"x":0,"y":-1E+2},{"x":3,"y":4}]`},
		[]string{`[]`, `[{"x":1,"y":2},{"x":1,"y":2},{"x":1,"y":2},{"x":1,"y":2}]`, `[{"x":1}]`}},
	{"nullable", `{"type":"object","properties":{"v":{"type":["string","null"]},"w":{"anyOf":[{"type":"integer"},{"type":"array","items":{"type":"boolean"}}]}},"required":["v","w"]}`,
		[]string{`{"v":null,"w":3}`, `{"v":"s","w":[true,false]}`},
		[]string{`{"v":1,"w":3}`, `{"v":null,"w":"3"}`}},
	{"const-strings", `{"type":"object","properties":{"kind":{"const":"point"},"label":{"type":"string","minLength":2,"maxLength":4}},"required":["kind","label"]}`,
		[]string{`{"kind":"point","label":"ab"}`, `{"kind":"point","label":"abcd"}`, `{"kind":"point","label":"\u00e9\u00e9"}`},
		[]string{`{"kind":"line","label":"ab"}`, `{"kind":"point","label":"a"}`, `{"kind":"point","label":"abcde"}`}},
	{"recursive", `{"$defs":{"node":{"type":"object","properties":{"value":{"type":"integer"},"children":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},"required":["value","children"]}},"$ref":"#/$defs/node"}`,
		[]string{`{"value":1,"children":[{"value":2,"children":[]}]}`},
		[]string{`{"value":1,"children":[{"value":2}]}`}},
	{"map", `{"type":"object","additionalProperties":{"type":"integer"}}`,
		[]string{`{}`, `{"a":1, "b":2}`},
		[]string{`{"a":"x"}`}},
	{"any-object", `{"type":"object"}`,
		[]string{`{"a":[1,{"b":null}],"c":"d"}`},
		[]string{`[1]`, `"x"`}},
}

// TestAcceptsAndRefuses checks the language of each schema on texts.
func TestAcceptsAndRefuses(t *testing.T) {
	v, _ := tinychatVocab(t)
	for _, c := range schemas {
		g, err := FromSchema([]byte(c.schema))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for _, text := range c.good {
			m := g.NewMatcher(v)
			if !m.AcceptBytes([]byte(text)) || !m.CanEnd() {
				t.Errorf("%s: refused %s", c.name, text)
			}
		}
		for _, text := range c.bad {
			m := g.NewMatcher(v)
			if m.AcceptBytes([]byte(text)) && m.CanEnd() {
				t.Errorf("%s: accepted %s", c.name, text)
			}
		}
	}
}

// TestSampledOutputValidates draws random token sequences under the mask
// for every schema and checks that each finished text parses and follows
// the schema (checked by validate, which reads the schema itself), and
// that the mask equals what trying each token alone gives.
func TestSampledOutputValidates(t *testing.T) {
	v, tok := tinychatVocab(t)
	rng := rand.New(rand.NewPCG(1, 2))
	mask := make([]uint64, (v.Size()+63)/64)
	for _, c := range schemas {
		g, err := FromSchema([]byte(c.schema))
		if err != nil {
			t.Fatal(err)
		}
		var schema any
		json.Unmarshal([]byte(c.schema), &schema)
		finished := 0
		for walk := 0; walk < 8; walk++ {
			m := g.NewMatcher(v)
			var ids []int
			for stepN := 0; stepN < 300; stepN++ {
				m.FillMask(mask)
				var allowed []int
				for id := 0; id < v.Size(); id++ {
					if mask[id>>6]&(1<<(id&63)) != 0 {
						allowed = append(allowed, id)
					}
				}
				if walk == 0 && stepN%16 == 0 { // the mask is exactly the tokens accepted one by one
					for id := 0; id < v.Size(); id++ {
						probe := &Matcher{v: v, states: m.states}
						want := probe.Accept(id)
						if got := mask[id>>6]&(1<<(id&63)) != 0; got != want {
							t.Fatalf("%s: after %q token %d %q: mask %v, accept %v", c.name, tok.Decode(ids), id, v.bytes[id], got, want)
						}
					}
				}
				if m.CanEnd() && (len(allowed) == 0 || rng.IntN(4) == 0) {
					break
				}
				if len(allowed) == 0 {
					t.Fatalf("%s: no token allowed after %q", c.name, tok.Decode(ids))
				}
				id := allowed[rng.IntN(len(allowed))]
				if !m.Accept(id) {
					t.Fatalf("%s: mask allowed token %d that Accept refuses", c.name, id)
				}
				ids = append(ids, id)
			}
			if !m.CanEnd() {
				continue
			}
			finished++
			text := tok.Decode(ids)
			var val any
			if err := json.Unmarshal([]byte(text), &val); err != nil {
				t.Fatalf("%s: output %s does not parse: %v", c.name, text, err)
			}
			if err := validate(schema, schema, val, "$"); err != nil {
				t.Fatalf("%s: output %s: %v", c.name, text, err)
			}
		}
		if finished == 0 {
			t.Errorf("%s: no walk finished in 300 tokens", c.name)
		}
	}
}

// validate checks value against a JSON Schema (the subset FromSchema
// takes), written independently of the compiler.
func validate(root, schema, value any, path string) error {
	s, _ := schema.(map[string]any)
	if ref, ok := s["$ref"].(string); ok {
		defs := root.(map[string]any)["$defs"].(map[string]any)
		return validate(root, defs[strings.TrimPrefix(ref, "#/$defs/")], value, path)
	}
	if c, ok := s["const"]; ok && fmt.Sprint(c) != fmt.Sprint(value) {
		return fmt.Errorf("%s: %v is not the const %v", path, value, c)
	}
	if e, ok := s["enum"].([]any); ok {
		found := false
		for _, x := range e {
			found = found || fmt.Sprint(x) == fmt.Sprint(value)
		}
		if !found {
			return fmt.Errorf("%s: %v is not in the enum", path, value)
		}
	}
	if alts, ok := s["anyOf"].([]any); ok {
		for _, a := range alts {
			if validate(root, a, value, path) == nil {
				return nil
			}
		}
		return fmt.Errorf("%s: %v matches no alternative", path, value)
	}
	var types []string
	switch t := s["type"].(type) {
	case string:
		types = []string{t}
	case []any:
		for _, x := range t {
			types = append(types, x.(string))
		}
	}
	if len(types) > 0 {
		ok := false
		for _, t := range types {
			switch x := value.(type) {
			case nil:
				ok = ok || t == "null"
			case bool:
				ok = ok || t == "boolean"
			case float64:
				ok = ok || t == "number" || (t == "integer" && x == float64(int64(x)))
			case string:
				ok = ok || t == "string"
			case []any:
				ok = ok || t == "array"
			case map[string]any:
				ok = ok || t == "object"
			}
		}
		if !ok {
			return fmt.Errorf("%s: %v is not of type %v", path, value, types)
		}
	}
	switch x := value.(type) {
	case string:
		n := len([]rune(x))
		if lo, ok := s["minLength"].(float64); ok && n < int(lo) {
			return fmt.Errorf("%s: %q shorter than %v", path, x, lo)
		}
		if hi, ok := s["maxLength"].(float64); ok && n > int(hi) {
			return fmt.Errorf("%s: %q longer than %v", path, x, hi)
		}
	case []any:
		if lo, ok := s["minItems"].(float64); ok && len(x) < int(lo) {
			return fmt.Errorf("%s: %d items, fewer than %v", path, len(x), lo)
		}
		if hi, ok := s["maxItems"].(float64); ok && len(x) > int(hi) {
			return fmt.Errorf("%s: %d items, more than %v", path, len(x), hi)
		}
		for i, e := range x {
			if it, ok := s["items"]; ok {
				if err := validate(root, it, e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		req, _ := s["required"].([]any)
		for _, r := range req {
			if _, ok := x[r.(string)]; !ok {
				return fmt.Errorf("%s: required %q missing", path, r)
			}
		}
		for k, e := range x {
			if ps, ok := props[k]; ok {
				if err := validate(root, ps, e, path+"."+k); err != nil {
					return err
				}
			} else if props != nil {
				return fmt.Errorf("%s: property %q not in the schema", path, k)
			} else if ap, ok := s["additionalProperties"].(map[string]any); ok {
				if err := validate(root, ap, e, path+"."+k); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// TestUnsupportedKeywords checks that a keyword the grammar cannot enforce
// is an error naming it.
func TestUnsupportedKeywords(t *testing.T) {
	for _, kw := range []string{`"pattern":"^a"`, `"format":"email"`, `"minimum":0`, `"allOf":[]`} {
		_, err := FromSchema([]byte(`{"type":"object","properties":{"a":{"type":"string",` + kw + `}}}`))
		name := strings.Trim(strings.SplitN(kw, ":", 2)[0], `"`)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: got %v, want an error naming it", kw, err)
		}
	}
}
