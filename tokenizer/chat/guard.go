package chat

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ardanlabs/jinja"
)

// The engine runs macros by Go recursion with no depth limit, and a Go
// stack overflow kills the process: a template whose macro recursed
// without end would take the server down. Parse therefore instruments
// every macro body with calls that count the depth, and Render fails once
// it passes maxMacroDepth (Python's recursion limit stops HF's Jinja at a
// similar depth). The inserted tags carry the whitespace control of the
// tags they sit against, so the output does not change.

const (
	maxMacroDepth = 200
	maxRange      = 1 << 20 // the most items range() may make

	enterName = "__kvserve_macro_enter"
	leaveName = "__kvserve_macro_leave"
	depthVar  = "__kvserve_macro_depth"
)

// instrumentMacros returns src with a depth count at the start and end of
// every macro body.
func instrumentMacros(src string) string {
	var b strings.Builder
	last := 0
	ok := scanTags(src, func(t jinjaTag) {
		if !t.statement {
			return
		}
		switch t.word {
		case "macro":
			right := ""
			if t.right == "-" {
				right = "-"
			}
			b.WriteString(src[last:t.end])
			fmt.Fprintf(&b, "{%% set %s = %s() %s%%}", depthVar, enterName, right)
			last = t.end
		case "endmacro":
			b.WriteString(src[last:t.start])
			fmt.Fprintf(&b, "{%%%s set %s = %s() %%}", t.left, depthVar, leaveName)
			last = t.start
		}
	})
	if !ok || last == 0 {
		return src
	}
	b.WriteString(src[last:])
	return b.String()
}

// jinjaTag is one {{ … }} or {% … %} tag of a template source.
type jinjaTag struct {
	start, end  int    // src[start:end] is the whole tag
	statement   bool   // {% … %} rather than {{ … }}
	left, right string // whitespace-control markers ("-" or "+") inside the delimiters, or ""
	inner       string // the text between the markers
	word        string // the first word of inner
}

// scanTags calls fn for each expression and statement tag of src, in
// order, skipping comments and raw blocks. It returns false for a source
// it cannot read (an unclosed tag, comment or raw block), which the
// engine is left to report.
func scanTags(src string, fn func(jinjaTag)) bool {
	for i := 0; i+1 < len(src); {
		if src[i] != '{' {
			i++
			continue
		}
		switch src[i+1] {
		case '#':
			end := strings.Index(src[i+2:], "#}")
			if end < 0 {
				return false
			}
			i += 2 + end + 2
		case '{', '%':
			t := jinjaTag{start: i, statement: src[i+1] == '%'}
			closer := "}}"
			if t.statement {
				closer = "%}"
			}
			if t.end = tagEnd(src, i+2, closer); t.end < 0 {
				return false
			}
			t.inner = src[i+2 : t.end-2]
			if strings.HasPrefix(t.inner, "-") || strings.HasPrefix(t.inner, "+") {
				t.left, t.inner = t.inner[:1], t.inner[1:]
			}
			if strings.HasSuffix(t.inner, "-") || strings.HasSuffix(t.inner, "+") {
				t.right, t.inner = t.inner[len(t.inner)-1:], t.inner[:len(t.inner)-1]
			}
			t.word, _, _ = strings.Cut(strings.TrimSpace(t.inner), " ")
			if t.statement && t.word == "raw" {
				k := strings.Index(src[t.end:], "endraw")
				if k < 0 {
					return false
				}
				i = t.end + k
				continue
			}
			fn(t)
			i = t.end
		default:
			i++
		}
	}
	return true
}

// tagEnd returns the index just past the closer of a tag whose content
// starts at i, skipping quoted strings, or -1.
func tagEnd(src string, i int, closer string) int {
	for i < len(src) {
		switch c := src[i]; c {
		case '\'', '"':
			i++
			for i < len(src) && src[i] != c {
				if src[i] == '\\' {
					i++
				}
				i++
			}
			i++
		default:
			if strings.HasPrefix(src[i:], closer) {
				return i + len(closer)
			}
			i++
		}
	}
	return -1
}

// guards returns the callables that count macro depth and a range() that
// refuses to make more than maxRange items.
func guards(b *budget) map[string]jinja.Value {
	depth := 0
	empty := jinja.NewString("")
	return map[string]jinja.Value{
		enterName: jinja.NewCallable(enterName, func([]jinja.Value, map[string]jinja.Value) (jinja.Value, error) {
			depth++
			if depth > maxMacroDepth {
				return jinja.Undefined(), fmt.Errorf("macros nested deeper than %d", maxMacroDepth)
			}
			return empty, b.step(0)
		}),
		leaveName: jinja.NewCallable(leaveName, func([]jinja.Value, map[string]jinja.Value) (jinja.Value, error) {
			depth--
			return empty, nil
		}),
		"range": jinja.NewCallable("range", rangeFunc),
	}
}

// rangeFunc is Python's range, made into a list.
func rangeFunc(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	var n [3]int64
	for i, a := range args {
		if i >= 3 || !a.IsInt() {
			return jinja.Undefined(), errors.New("range: want 1 to 3 integers")
		}
		n[i] = a.AsInt()
	}
	start, stop, step := int64(0), n[0], int64(1)
	switch len(args) {
	case 0:
		return jinja.Undefined(), errors.New("range: want 1 to 3 integers")
	case 2:
		start, stop = n[0], n[1]
	case 3:
		start, stop, step = n[0], n[1], n[2]
	}
	if step == 0 {
		return jinja.Undefined(), errors.New("range: step must not be zero")
	}
	var count int64
	switch {
	case step > 0 && stop > start:
		count = (stop - start + step - 1) / step
	case step < 0 && stop < start:
		count = (start - stop - step - 1) / -step
	}
	if count < 0 || count > maxRange {
		return jinja.Undefined(), fmt.Errorf("range: more than %d items", maxRange)
	}
	items := make([]jinja.Value, count)
	for i := range items {
		items[i] = jinja.NewInt(start + int64(i)*step)
	}
	return jinja.NewList(items), nil
}
