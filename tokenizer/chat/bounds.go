package chat

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ardanlabs/jinja"
)

// Rendering is bounded in steps and output. The engine (ardanlabs/jinja
// v1.8.0) has no limits of its own — its string repetition allocates
// whatever `'x' * 10000000000` asks for, and loops run as long as their
// lists — so Parse rewrites the template source, keeping its output:
//
//   - every `{% for %}` body starts with a call that counts one step and
//     the bytes of literal text the body writes;
//   - every `{{ expr }}` becomes `{{ __kvserve_out((expr)) }}`, which
//     counts the bytes written;
//   - every multiplication `a * b` becomes `__kvserve_mul((a), (b))`,
//     which refuses a repetition larger than the output bound before it
//     is made.
//
// Render fails with a *LimitError once a bound is passed. Macro calls
// count as steps too (guard.go).

// Bounds of one rendering, unless Template.MaxSteps or MaxOutput say.
const (
	DefaultMaxSteps  = 1 << 18 // loop iterations and macro calls
	DefaultMaxOutput = 16 << 20

	outName  = "__kvserve_out"
	mulName  = "__kvserve_mul"
	tickName = "__kvserve_tick"
	tickVar  = "__kvserve_ticked"
)

// LimitError reports a rendering that passed one of its bounds.
type LimitError struct {
	What  string // "steps" or "output bytes"
	Limit int
}

// Error says which bound was passed.
func (e *LimitError) Error() string {
	return fmt.Sprintf("the template passed its bound of %d %s", e.Limit, e.What)
}

// budget counts a rendering's steps and output.
type budget struct {
	steps, out         int
	maxSteps, maxBytes int
}

func (b *budget) step(text int) error {
	b.steps++
	b.out += text
	switch {
	case b.steps > b.maxSteps:
		return &LimitError{"steps", b.maxSteps}
	case b.out > b.maxBytes:
		return &LimitError{"output bytes", b.maxBytes}
	}
	return nil
}

// callables returns the functions the rewritten template calls.
func (b *budget) callables() map[string]jinja.Value {
	return map[string]jinja.Value{
		tickName: jinja.NewCallable(tickName, func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
			n := 0
			if len(args) > 0 && args[0].IsInt() {
				n = int(args[0].AsInt())
			}
			return jinja.NewString(""), b.step(n)
		}),
		outName: jinja.NewCallable(outName, func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
			if len(args) != 1 {
				return jinja.Undefined(), errors.New("output: want one value")
			}
			v := args[0]
			n := 0
			switch {
			case v.IsString():
				n = len(v.AsString())
			case v.IsList() || v.IsDict():
				n = len(v.String())
			default:
				n = 8
			}
			b.out += n
			if b.out > b.maxBytes {
				return jinja.Undefined(), &LimitError{"output bytes", b.maxBytes}
			}
			return v, nil
		}),
		mulName: jinja.NewCallable(mulName, func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
			if len(args) != 2 {
				return jinja.Undefined(), errors.New("*: want two operands")
			}
			return b.mul(args[0], args[1])
		}),
	}
}

// mul is the template's a * b: numbers multiply, a string or list times
// an integer repeats it — refused when the result would pass the output
// bound.
func (b *budget) mul(x, y jinja.Value) (jinja.Value, error) {
	count := func(v jinja.Value) (int64, bool) {
		switch {
		case v.IsInt():
			return v.AsInt(), true
		case v.IsBool():
			if v.AsBool() {
				return 1, true
			}
			return 0, true
		}
		return 0, false
	}
	if _, ok := count(x); ok && (y.IsString() || y.IsList()) {
		x, y = y, x
	}
	if n, ok := count(y); ok && (x.IsString() || x.IsList()) {
		n = max(n, 0)
		if x.IsString() {
			s := x.AsString()
			if len(s) > 0 && n > int64(b.maxBytes/len(s)) {
				return jinja.Undefined(), &LimitError{"output bytes", b.maxBytes}
			}
			return jinja.NewString(strings.Repeat(s, int(n))), nil
		}
		items := x.AsList().Items
		if len(items) > 0 && n > int64(maxRange/len(items)) {
			return jinja.Undefined(), fmt.Errorf("list repetition: more than %d items", maxRange)
		}
		out := make([]jinja.Value, 0, len(items)*int(n))
		for range n {
			out = append(out, items...)
		}
		return jinja.NewList(out), nil
	}
	num := func(v jinja.Value) (float64, bool) {
		switch {
		case v.IsFloat():
			return v.AsFloat(), true
		case v.IsInt():
			return float64(v.AsInt()), true
		case v.IsBool():
			if v.AsBool() {
				return 1, true
			}
			return 0, true
		}
		return 0, false
	}
	if x.IsFloat() || y.IsFloat() {
		a, ok1 := num(x)
		c, ok2 := num(y)
		if ok1 && ok2 {
			return jinja.NewFloat(a * c), nil
		}
	}
	a, ok1 := count(x)
	c, ok2 := count(y)
	if ok1 && ok2 {
		return jinja.NewInt(a * c), nil
	}
	return jinja.Undefined(), fmt.Errorf("cannot multiply %s by %s", x.String(), y.String())
}

// instrumentBounds rewrites src as the comment at the top of this file
// says. A source it cannot read (an unclosed tag) is returned unchanged
// for the engine to report.
func instrumentBounds(src string) string {
	var b strings.Builder
	last := 0
	ok := scanTags(src, func(t jinjaTag) {
		b.WriteString(src[last:t.start])
		expr := rewriteMul(t.inner)
		if !t.statement {
			fmt.Fprintf(&b, "{{%s %s((%s)) %s}}", t.left, outName, expr, t.right)
		} else {
			fmt.Fprintf(&b, "{%%%s%s%s%%}", t.left, expr, t.right)
			if t.word == "for" {
				fmt.Fprintf(&b, "{%% set %s = %s(%d) %s%%}", tickVar, tickName, bodyText(src, t.end, "for", "endfor"), t.right)
			}
		}
		last = t.end
	})
	if !ok {
		return src
	}
	b.WriteString(src[last:])
	return b.String()
}

// bodyText returns the bytes of literal text between from and the tag
// that closes the block (open … close, nested), counted generously:
// nested blocks' text included.
func bodyText(src string, from int, open, close string) int {
	depth, n := 1, 0
	for i := from; i < len(src); {
		j := strings.IndexByte(src[i:], '{')
		if j < 0 || i+j+1 >= len(src) {
			return n + len(src) - i
		}
		n += j
		i += j
		switch src[i+1] {
		case '%':
			end := tagEnd(src, i+2, "%}")
			if end < 0 {
				return n
			}
			word, _, _ := strings.Cut(strings.TrimSpace(strings.Trim(src[i+2:end-2], "-+")), " ")
			switch word {
			case open:
				depth++
			case close:
				if depth--; depth == 0 {
					return n
				}
			}
			i = end
		case '{', '#':
			closer := "}}"
			if src[i+1] == '#' {
				closer = "#}"
			}
			end := tagEnd(src, i+2, closer)
			if end < 0 {
				return n
			}
			i = end
		default:
			n++
			i++
		}
	}
	return n
}
