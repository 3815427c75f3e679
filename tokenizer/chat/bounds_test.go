package chat

import (
	"errors"
	"strings"
	"testing"

	"github.com/ardanlabs/jinja"
)

// TestBoundsKeepOutput: the rewritten template writes what the engine
// writes for the source as given — multiplications of every shape,
// loops, macros, whitespace control.
func TestBoundsKeepOutput(t *testing.T) {
	for _, src := range []string{
		"{{ 2 * 3 }}|{{ 'ab' * 3 }}|{{ 2 ** 3 * 2 }}|{{ 1 + 2 * 3 }}|{{ 10 / 4 * 3 }}|{{ 2.5 * 2 }}",
		"{{ 'a' * 2 * 3 }}|{{ 7 // 2 * 2 }}|{{ 7 % 4 * 2 }}|{{ -2 * 3 }}|{{ 2 * -3 }}|{{ (1 + 1) * (2 + 1) }}",
		"{% set n = '3' %}{{ '-' * (n | int) }}{{ '=' * n|int }}|{{ messages[0].content * 2 }}|{{ messages|length * 2 }}",
		"{% macro f(x) %}{{ x * 2 }}{% endmacro %}{{ f(4) }}{{ f('z') * 1 }}",
		"{%- for m in messages -%}\n  {{- m.role * 2 -}}\n{% if loop.index * 2 > 1 %}[{{ loop.index * 10 }}]{% endif %}\n{%- endfor %}\n{{ 3 * 2 if true else 0 }}",
		"{% for i in range(3) %}{% for j in range(2) %}{{ i * j }},{% endfor %}{% else %}none{% endfor %}",
		"{# a * b #}{% raw %}{{ a * b }}{% endraw %}{{ '*' }}{{ \"2 * 3\" }}",
	} {
		tmpl, err := Parse(src, Specials{})
		if err != nil {
			t.Errorf("Parse(%q): %v", src, err)
			continue
		}
		msgs := []Message{{Role: "user", Content: "hi"}, {Role: "assistant", Content: "yo"}}
		got, err := tmpl.Render(msgs, false)
		raw, rerr := jinja.Compile(src)
		if rerr != nil {
			t.Fatalf("the engine cannot compile %q: %v", src, rerr)
		}
		list := []jinja.Value{}
		for _, m := range msgs {
			d := jinja.NewDict()
			d.AsDict().Set("role", jinja.NewString(m.Role))
			d.AsDict().Set("content", jinja.NewString(m.Content))
			list = append(list, d)
		}
		want, werr := raw.RenderValues(map[string]jinja.Value{"messages": jinja.NewList(list)})
		if err != nil || werr != nil || got != want {
			t.Errorf("%q:\n got %q (%v)\nwant %q (%v)", src, got, err, want, werr)
		}
	}
}

// TestBoundsPython: where the engine's * departs from Python's (and so
// from Hugging Face's Jinja), the bounded one follows Python.
func TestBoundsPython(t *testing.T) {
	for src, want := range map[string]string{
		"{{ 3 * 'ab' }}":               "ababab",
		"{{ [1, 2] * 2 }}":             "[1, 2, 1, 2]",
		"{{ range(3)|list * 2 }}":      "[0, 1, 2, 0, 1, 2]",
		"{{ 'x' * true }}":             "x",
		"{{ 'x' * -1 }}|{{ 0 * 'x' }}": "|",
	} {
		tmpl, err := Parse(src, Specials{})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := tmpl.Render(nil, false); err != nil || got != want {
			t.Errorf("%s = %q (%v), want %q", src, got, err, want)
		}
	}
}

// TestBoundsRefuse: repetition past the output bound, loops past the step
// bound and output past the output bound are *LimitErrors, found before
// the work is done.
func TestBoundsRefuse(t *testing.T) {
	for _, tc := range []struct {
		src       string
		steps, by int
		what      string
	}{
		{"{{ 'x' * 10000000000 }}", 0, 0, "output bytes"},
		{"{{ 10000000000 * 'x' }}", 0, 0, "output bytes"},
		{"{% set n = 100000 %}{{ ('ab' * n) * n }}", 0, 0, "output bytes"},
		{"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", 0, 0, "steps"},
		{"{% for i in range(1000) %}{{ messages[0].content }}{% endfor %}", 0, 10000, "output bytes"},
		{"{% for i in range(1000) %}0123456789{% endfor %}", 0, 5000, "output bytes"},
		{"{% macro f() %}x{% endmacro %}{% for i in range(100) %}{{ f() }}{% endfor %}", 150, 0, "steps"},
	} {
		tmpl, err := Parse(tc.src, Specials{})
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.src, err)
		}
		tmpl.MaxSteps, tmpl.MaxOutput = tc.steps, tc.by
		_, err = tmpl.Render([]Message{{Role: "user", Content: strings.Repeat("y", 100)}}, false)
		var le *LimitError
		if !errors.As(err, &le) || le.What != tc.what {
			t.Errorf("%q: %v, want a bound on %s", tc.src, err, tc.what)
		}
	}
}
