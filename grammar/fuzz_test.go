package grammar

import (
	"encoding/json"
	"testing"
)

// FuzzFromSchema compiles arbitrary schemas and runs arbitrary text
// through what compiles: nothing may panic or loop, and text the matcher
// completes must be JSON.
func FuzzFromSchema(f *testing.F) {
	for _, c := range schemas {
		f.Add(c.schema, c.good[0])
	}
	f.Add(`{"$ref":"#"}`, `{}`)
	f.Add(`{"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"anyOf":[{"$ref":"#/$defs/a"}]}},"$ref":"#/$defs/a"}`, `1`)
	f.Add(`{"type":"array","items":{"$ref":"#"}}`, `[[[]]]`)
	f.Fuzz(func(t *testing.T, schema, text string) {
		g, err := FromSchema([]byte(schema))
		if err != nil {
			return
		}
		m := g.NewMatcher(&Vocab{})
		if m.AcceptBytes([]byte(text)) && m.CanEnd() && !json.Valid([]byte(text)) {
			t.Errorf("schema %s accepted %q, which is not JSON", schema, text)
		}
	})
}
