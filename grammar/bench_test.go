package grammar_test

import (
	"testing"
	"time"

	"github.com/kvserve/kvserve/compute"
	"github.com/kvserve/kvserve/engine"
	"github.com/kvserve/kvserve/grammar"
	"github.com/kvserve/kvserve/model"
)

// The mask's cost is measured against what it is added to: one decode
// step of tinychat. Run with
//
//	go test ./grammar -run '^$' -bench . -benchtime 200x
//
// and compare ns/op of BenchmarkMask/* with BenchmarkDecodeStep.

var benchSchema = []byte(`{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},"tags":{"type":"array","items":{"type":"string","enum":["a","b","c"]}},"address":{"type":"object","properties":{"street":{"type":"string"},"zip":{"type":"number"}},"required":["street","zip"]}},"required":["name","age","tags","address"]}`)

func openTiny(b *testing.B) *engine.Bundle {
	bundle, err := engine.Open("", compute.NewPool(0))
	if err != nil {
		b.Skip(err)
	}
	return bundle
}

// BenchmarkDecodeStep is one token through tinychat after a 128-token
// prompt, logits of the last position out.
func BenchmarkDecodeStep(b *testing.B) {
	bundle := openTiny(b)
	prompt := make([]int, 128)
	for i := range prompt {
		prompt[i] = 100 + i
	}
	cache := bundle.Net.NewCache()
	if _, err := bundle.Net.Forward(cache, prompt, model.NoLogits); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := bundle.Net.Forward(cache, []int{42}, model.LastLogits); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cache.Truncate(128)
		b.StartTimer()
	}
}

// BenchmarkMask is FillMask at typical places of a JSON answer.
func BenchmarkMask(b *testing.B) {
	bundle := openTiny(b)
	t := bundle.Tokenizer
	v := grammar.NewVocab(bundle.Net.Config.VocabSize, t.TokenBytes, t.IsSpecial)
	g, err := grammar.FromSchema(benchSchema)
	if err != nil {
		b.Fatal(err)
	}
	mask := make([]uint64, (v.Size()+63)/64)
	for _, at := range []struct{ name, prefix string }{
		{"start", ``},
		{"key", `{`},
		{"string", `{"name": "Ann Ma`},
		{"number", `{"name": "Ann", "age": 4`},
		{"enum", `{"name": "Ann", "age": 4, "tags": ["`},
		{"nested-key", `{"name": "Ann", "age": 4, "tags": ["a"], "address": {"st`},
	} {
		m := g.NewMatcher(v)
		if !m.AcceptBytes([]byte(at.prefix)) {
			b.Fatalf("%s: prefix refused", at.name)
		}
		b.Run(at.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				m.FillMask(mask)
			}
		})
	}
	any := grammar.JSONObject().NewMatcher(v)
	any.AcceptBytes([]byte(`{"a": [1, {"b": `))
	b.Run("json_object-value", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			any.FillMask(mask)
		}
	})
}

// BenchmarkConstrainedToken is the grammar's whole work per generated
// token — the mask, the check of the drawn token, and the advance over
// it — averaged over the tokens of a JSON answer of benchSchema (ns/op is
// per token).
func BenchmarkConstrainedToken(b *testing.B) {
	bundle := openTiny(b)
	t := bundle.Tokenizer
	v := grammar.NewVocab(bundle.Net.Config.VocabSize, t.TokenBytes, t.IsSpecial)
	g, err := grammar.FromSchema(benchSchema)
	if err != nil {
		b.Fatal(err)
	}
	answer := t.Encode(`{"name": "Ann Marie Smith", "age": 42, "tags": ["a", "c"], "address": {"street": "12 Long Road, Springfield", "zip": 12345.5}}`)
	mask := make([]uint64, (v.Size()+63)/64)
	b.ResetTimer()
	for n := 0; n < b.N; {
		m := g.NewMatcher(v)
		for _, id := range answer {
			m.FillMask(mask)
			if mask[id>>6]&(1<<(id&63)) == 0 || !m.Accept(id) {
				b.Fatalf("token %d refused", id)
			}
			if n++; n == b.N {
				break
			}
		}
	}
}

// BenchmarkMaskShareOfStep alternates a tinychat decode step with the
// mask at a value of json_object (the dearest place measured) and with the
// grammar's whole work for one token of a schema answer, and reports each
// as a percentage of the step; measured side by side, the shares hold on a
// loaded machine where absolute times do not.
func BenchmarkMaskShareOfStep(b *testing.B) {
	bundle := openTiny(b)
	t := bundle.Tokenizer
	v := grammar.NewVocab(bundle.Net.Config.VocabSize, t.TokenBytes, t.IsSpecial)
	g, err := grammar.FromSchema(benchSchema)
	if err != nil {
		b.Fatal(err)
	}
	answer := t.Encode(`{"name": "Ann Marie Smith", "age": 42, "tags": ["a", "c"], "address": {"street": "12 Long Road, Springfield", "zip": 12345.5}}`)
	anyValue := grammar.JSONObject().NewMatcher(v)
	anyValue.AcceptBytes([]byte(`{"a": [1, {"b": `))
	mask := make([]uint64, (v.Size()+63)/64)
	prompt := make([]int, 128)
	for i := range prompt {
		prompt[i] = 100 + i
	}
	cache := bundle.Net.NewCache()
	if _, err := bundle.Net.Forward(cache, prompt, model.NoLogits); err != nil {
		b.Fatal(err)
	}
	var stepT, anyT, tokT time.Duration
	m := g.NewMatcher(v)
	k := 0
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := bundle.Net.Forward(cache, []int{42}, model.LastLogits); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		anyValue.FillMask(mask)
		t2 := time.Now()
		if k == len(answer) {
			m, k = g.NewMatcher(v), 0
		}
		m.FillMask(mask)
		m.Accept(answer[k])
		k++
		t3 := time.Now()
		stepT += t1.Sub(t0)
		anyT += t2.Sub(t1)
		tokT += t3.Sub(t2)
		cache.Truncate(128)
	}
	b.ReportMetric(100*float64(anyT)/float64(stepT), "json_object-mask-%")
	b.ReportMetric(100*float64(tokT)/float64(stepT), "schema-token-%")
}
