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
	for i := 0; i+1 < len(src); {
		if src[i] != '{' {
			i++
			continue
		}
		switch src[i+1] {
		case '#':
			end := strings.Index(src[i+2:], "#}")
			if end < 0 {
				return src
			}
			i += 2 + end + 2
		case '{':
			end := tagEnd(src, i+2, "}}")
			if end < 0 {
				return src
			}
			i = end
		case '%':
			end := tagEnd(src, i+2, "%}")
			if end < 0 {
				return src
			}
			inner := src[i+2 : end-2]
			left := ""
			if strings.HasPrefix(inner, "-") || strings.HasPrefix(inner, "+") {
				left = inner[:1]
			}
			right := ""
			if strings.HasSuffix(inner, "-") {
				right = "-"
			}
			word, _, _ := strings.Cut(strings.TrimSpace(strings.Trim(inner, "-+")), " ")
			switch word {
			case "raw":
				// Skip to the end of the raw block.
				k := strings.Index(src[end:], "endraw")
				if k < 0 {
					return src
				}
				i = end + k
				continue
			case "macro":
				b.WriteString(src[last:end])
				fmt.Fprintf(&b, "{%% set %s = %s() %s%%}", depthVar, enterName, right)
				last = end
			case "endmacro":
				b.WriteString(src[last:i])
				fmt.Fprintf(&b, "{%%%s set %s = %s() %%}", left, depthVar, leaveName)
				last = i
			}
			i = end
		default:
			i++
		}
	}
	if last == 0 {
		return src
	}
	b.WriteString(src[last:])
	return b.String()
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
