package chat

import (
	"slices"
	"strings"
)

// rewriteMul rewrites every multiplication a * b in a tag's expression
// text as __kvserve_mul((a), (b)), finding each operand as Jinja's
// precedence does: a postfix expression (name, literal or bracketed group,
// then attributes, subscripts, calls, filters, tests and powers), the left
// one extended over the multiplicative operators before it (they associate
// to the left). A `*` without an operand on each side is left alone.
func rewriteMul(expr string) string {
	if !strings.Contains(expr, "*") {
		return expr
	}
	toks := lexExpr(expr)
	match := matchBrackets(toks)
	type span struct{ start, end int } // token indices, inclusive
	opens := map[int][]span{}          // at a start token
	closes := map[int][]span{}         // after an end token
	stars := map[int]bool{}
	for k, t := range toks {
		if t.text != "*" {
			continue
		}
		s, ok1 := leftOperand(toks, match, k)
		e, ok2 := rightOperand(toks, match, k)
		if !ok1 || !ok2 {
			continue
		}
		sp := span{s, e}
		opens[s] = append(opens[s], sp)
		closes[e] = append(closes[e], sp)
		stars[k] = true
	}
	if len(stars) == 0 {
		return expr
	}
	var b strings.Builder
	pos := 0
	for i, t := range toks {
		b.WriteString(expr[pos:t.start])
		// The outer span opens first: the one that ends later.
		os := opens[i]
		slices.SortFunc(os, func(a, c span) int { return c.end - a.end })
		for range os {
			b.WriteString(mulName + "((")
		}
		if stars[i] {
			b.WriteString("), (")
		} else {
			b.WriteString(t.text)
		}
		// The inner span closes first: the one that starts later.
		for range closes[i] {
			b.WriteString("))")
		}
		pos = t.start + len(t.text)
	}
	b.WriteString(expr[pos:])
	return b.String()
}

// exprToken is a token of a Jinja expression.
type exprToken struct {
	text  string
	start int
	kind  byte // 'n' name, 'l' literal, 'o' operator or punctuation
}

// lexExpr cuts an expression into tokens.
func lexExpr(s string) []exprToken {
	var toks []exprToken
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(s) && s[j] != c {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			j = min(j+1, len(s))
			toks = append(toks, exprToken{s[i:j], i, 'l'})
			i = j
		case c >= '0' && c <= '9':
			j := i
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.' || s[j] == '_' || s[j] == 'e' || s[j] == 'E') {
				j++
			}
			toks = append(toks, exprToken{s[i:j], i, 'l'})
			i = j
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80:
			j := i
			for j < len(s) && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9' || s[j] >= 0x80) {
				j++
			}
			toks = append(toks, exprToken{s[i:j], i, 'n'})
			i = j
		default:
			n := 1
			if i+1 < len(s) {
				switch s[i : i+2] {
				case "**", "//", "==", "!=", "<=", ">=":
					n = 2
				}
			}
			toks = append(toks, exprToken{s[i : i+n], i, 'o'})
			i += n
		}
	}
	return toks
}

// matchBrackets maps each bracket token to its partner (-1 if none).
func matchBrackets(toks []exprToken) []int {
	match := make([]int, len(toks))
	var stack []int
	for i, t := range toks {
		match[i] = -1
		switch t.text {
		case "(", "[", "{":
			stack = append(stack, i)
		case ")", "]", "}":
			if n := len(stack); n > 0 {
				o := stack[n-1]
				stack = stack[:n-1]
				match[i], match[o] = o, i
			}
		}
	}
	return match
}

// keywords are names that are not values.
var keywords = map[string]bool{
	"and": true, "or": true, "not": true, "in": true, "is": true, "if": true, "else": true, "elif": true,
	"for": true, "set": true, "recursive": true, "macro": true, "call": true, "filter": true, "with": true,
	"import": true, "from": true, "as": true, "include": true, "block": true, "extends": true,
}

func isAtom(t exprToken) bool { return t.kind == 'l' || t.kind == 'n' && !keywords[t.text] }

func isCloser(t exprToken) bool { return t.text == ")" || t.text == "]" || t.text == "}" }

// leftOperand returns the first token of the left operand of the * at k.
func leftOperand(toks []exprToken, match []int, k int) (int, bool) {
	i := k - 1
	if i < 0 {
		return 0, false
	}
	for {
		// One postfix expression ending at i.
		for {
			switch {
			case isCloser(toks[i]):
				o := match[i]
				if o < 0 {
					return 0, false
				}
				i = o
				// A call or subscript: its base comes before.
				if toks[i].text != "{" && i > 0 && (isAtom(toks[i-1]) && toks[i-1].kind == 'n' || isCloser(toks[i-1])) {
					i--
					continue
				}
			case isAtom(toks[i]):
			default:
				return 0, false
			}
			break
		}
		if i == 0 {
			return 0, true
		}
		switch toks[i-1].text {
		case ".", "|", "**", "*", "/", "//", "%":
			if i-2 < 0 {
				return 0, false
			}
			i -= 2
			continue
		}
		return i, true
	}
}

// rightOperand returns the last token of the right operand of the * at k.
func rightOperand(toks []exprToken, match []int, k int) (int, bool) {
	j := k + 1
	atom := func() bool {
		for j < len(toks) && (toks[j].text == "-" || toks[j].text == "+") {
			j++
		}
		switch {
		case j >= len(toks):
			return false
		case toks[j].text == "(" || toks[j].text == "[" || toks[j].text == "{":
			if match[j] < 0 {
				return false
			}
			j = match[j]
		case !isAtom(toks[j]):
			return false
		}
		return true
	}
	if !atom() {
		return 0, false
	}
	for j+1 < len(toks) {
		n := toks[j+1].text
		switch {
		case (n == "." || n == "|") && j+2 < len(toks) && toks[j+2].kind == 'n':
			j += 2
		case (n == "(" || n == "[") && match[j+1] > 0:
			j = match[j+1]
		case n == "**":
			j += 2
			if !atom() {
				return 0, false
			}
		case n == "is" && j+2 < len(toks):
			j += 2
			if toks[j].text == "not" && j+1 < len(toks) {
				j++
			}
		default:
			return j, true
		}
	}
	return j, true
}
