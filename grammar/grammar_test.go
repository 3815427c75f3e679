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
			if err := Validate(schema, val); err != nil {
				t.Fatalf("%s: output %s: %v", c.name, text, err)
			}
		}
		if finished == 0 {
			t.Errorf("%s: no walk finished in 300 tokens", c.name)
		}
	}
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

// TestLargeEnum checks an enum of more values than the matcher follows
// states at once, sharing prefixes, and numeric consts that prefix each
// other.
func TestLargeEnum(t *testing.T) {
	var vals []string
	for i := range 300 {
		vals = append(vals, fmt.Sprintf(`"item-%d"`, i))
	}
	g, err := FromSchema([]byte(`{"enum":[` + strings.Join(vals, ",") + `,1,12,123]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{`"item-0"`, `"item-299"`, `"item-29"`, `1`, `12`, `123`} {
		m := g.NewMatcher(&Vocab{})
		if !m.AcceptBytes([]byte(text)) || !m.CanEnd() {
			t.Errorf("refused %s", text)
		}
	}
	for _, text := range []string{`"item-300"`, `"item-"`, `1234`, `2`} {
		m := g.NewMatcher(&Vocab{})
		if m.AcceptBytes([]byte(text)) && m.CanEnd() {
			t.Errorf("accepted %s", text)
		}
	}
}
