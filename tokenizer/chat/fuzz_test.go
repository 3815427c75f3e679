package chat

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kvserve/kvserve/internal/fuzzguard"
)

// FuzzParse: no template source makes Parse or Render panic; the engine's
// own panics come back as errors.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.jinja")
	files = append(files, filepath.Join(tinychatDir, "chat_template.jinja"))
	for _, path := range files {
		src, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(src))
	}
	for _, s := range []string{
		"{% set ns = namespace(a=1) %}{% for m in messages[1:] %}{{ loop.index }}{{ m.content.strip()|trim }}{% endfor %}{{ ns.a }}",
		"{% macro f(n) %}{% if n %}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(3) }}{% raw %}{{ x }}{% endraw %}",
		"{{ messages|tojson }}{{ strftime_now('%d %b %Y') }}{{ raise_exception('x') if not messages else '' }}",
		"{# c #}{%- if add_generation_prompt -%}{{ bos_token ~ eos_token }}{%+ endif +%}",
	} {
		f.Add(s)
	}
	msgs := []Message{{"system", "s"}, {"user", "u"}, {"assistant", "a"}}
	f.Fuzz(func(t *testing.T, src string) {
		defer fuzzguard.Start(t, len(src))()
		tmpl, err := Parse(src, Specials{BOS: "<s>", EOS: "</s>"})
		if err != nil {
			return
		}
		// Loops of range(1 << 20) nested, and repetitions of megabytes,
		// made inputs of a few bytes take seconds: bound them.
		tmpl.MaxSteps, tmpl.MaxOutput = 1<<14, 1<<20
		tmpl.Render(msgs, true)
		tmpl.Render(nil, false)
	})
}
