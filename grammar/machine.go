package grammar

// The pushdown automaton: a state is a stack of frames, one per node being
// matched, innermost on top. The stack below the top is an immutable
// linked list, so a state is a small value that steps and branches without
// copying the stack. Where the language is ambiguous (unions, optional
// properties) a byte may lead to several states; a Matcher follows a set.

// frame is a node being matched and how far.
type frame struct {
	n   *node
	pos uint8 // the phase within the node
	i   int32 // property, literal or item index; repetition count
	off int32 // offset in a literal or key; characters or digits so far
	j   int32 // the last literal still possible (i is the first)
}

// link is the stack below the top frame.
type link struct {
	f  frame
	up *link
}

// state is a position in the language.
type state struct {
	top   frame
	up    *link
	depth int32
}

// Phases. Object: start, first key or '}', inside a key, colon, value (a
// space allowed / taken), after a value, after a comma (a space allowed /
// taken). Map, array, string, number, literal and repeat likewise.
const (
	pStart uint8 = iota
	pFirst
	pKey
	pColon
	pValue0
	pValue1
	pAfter
	pNext0
	pNext1
	pBody
	pEsc
	pHex
	pMinus
	pZero
	pInt
	pDot
	pFrac
	pE
	pESign
	pExp
	pSep
	pEnd
)

// keyString is the node of a map's keys.
var keyString = &node{kind: kString, max: -1}

// newState returns the state before any text of root.
func newState(root *node) state {
	return state{top: frame{n: &node{kind: kRoot, elem: root}}}
}

// pop returns the state with the top frame done.
func (s state) pop() state {
	return state{top: s.up.f, up: s.up.up, depth: s.depth - 1}
}

// push makes parent (the top frame, updated) wait below a new frame of
// child, and feeds b to the child.
func push(s state, parent frame, child *node, b byte, out []state) []state {
	if s.depth >= MaxDepth {
		return out
	}
	ns := state{top: frame{n: child}, up: &link{f: parent, up: s.up}, depth: s.depth + 1}
	return step(ns, b, out)
}

// pending reports whether the top frame may end here without a byte of
// its own (a number, a finished sequence or repetition), so that the next
// byte belongs to the frame below.
func pending(f frame) bool {
	switch f.n.kind {
	case kNumber, kInteger:
		switch f.pos {
		case pZero, pInt, pFrac, pExp:
			return true
		}
	case kSeq:
		return int(f.i) == len(f.n.alts)
	case kRepeat:
		return f.pos == pStart && int(f.i) >= f.n.min
	}
	return false
}

// canEnd reports whether the text may end in state s.
func canEnd(s state) bool {
	for {
		if s.top.n.kind == kRoot {
			return s.top.pos == pEnd
		}
		if !pending(s.top) || s.up == nil {
			return false
		}
		s = s.pop()
	}
}

// firstRequired returns the index of the first required property at or
// after i, or len(props).
func firstRequired(props []prop, i int) int {
	for ; i < len(props); i++ {
		if props[i].required {
			return i
		}
	}
	return len(props)
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

func isHex(b byte) bool { return isDigit(b) || (b|0x20 >= 'a' && b|0x20 <= 'f') }

// step appends to out the states that follow s on byte b.
func step(s state, b byte, out []state) []state {
	f := s.top
	n := f.n
	set := func(pos uint8) []state {
		t := s
		t.top.pos = pos
		return append(out, t)
	}
	switch n.kind {
	case kRoot:
		if f.pos == pStart {
			return push(s, frame{n: n, pos: pEnd}, n.elem, b, out)
		}
		return out

	case kUnion:
		for _, a := range n.alts {
			t := s
			t.top = frame{n: a}
			out = step(t, b, out)
		}
		return out

	case kSeq:
		if int(f.i) < len(n.alts) {
			p := f
			p.i++
			return push(s, p, n.alts[f.i], b, out)
		}
		return step(s.pop(), b, out)

	case kRepeat:
		switch f.pos {
		case pStart:
			if n.max < 0 || int(f.i) < n.max {
				p := f
				if f.i == 0 {
					p.i = 1
					out = push(s, p, n.elem, b, out)
				} else {
					p.pos = pSep
					out = push(s, p, n.sep, b, out)
				}
			}
			if int(f.i) >= n.min {
				out = step(s.pop(), b, out)
			}
			return out
		case pSep:
			p := f
			p.pos, p.i = pStart, f.i+1
			return push(s, p, n.elem, b, out)
		}
		return out

	case kLiteral:
		// The literals are sorted, so those that share the bytes read so
		// far are the range i..j; one state follows all of them.
		lo, hi, off := int(f.i), int(f.j), int(f.off)
		if f.pos == pStart {
			lo, hi, off = 0, len(n.lits)-1, 0
		}
		for lo <= hi && (len(n.lits[lo]) <= off || n.lits[lo][off] < b) {
			lo++
		}
		for hi >= lo && (len(n.lits[hi]) <= off || n.lits[hi][off] > b) {
			hi--
		}
		if lo > hi {
			return out
		}
		if len(n.lits[lo]) == off+1 { // one literal ends here
			out = append(out, s.pop())
			lo++
		}
		if lo <= hi {
			t := s
			t.top = frame{n: n, pos: pKey, i: int32(lo), j: int32(hi), off: int32(off + 1)}
			out = append(out, t)
		}
		return out

	case kString:
		switch f.pos {
		case pStart:
			if b == '"' {
				return set(pBody)
			}
		case pBody:
			if f.i != 0 { // inside a multi-byte character
				lo, hi := byte(0x80), byte(0xBF)
				switch f.i >> 2 {
				case 1:
					lo = 0xA0
				case 2:
					hi = 0x9F
				case 3:
					lo = 0x90
				case 4:
					hi = 0x8F
				}
				if b < lo || b > hi {
					return out
				}
				t := s
				t.top.i = f.i&3 - 1
				return append(out, t)
			}
			switch {
			case b == '"':
				if int(f.off) >= n.min {
					return append(out, s.pop())
				}
			case b == '\\':
				if n.max < 0 || int(f.off) < n.max {
					return set(pEsc)
				}
			case b < 0x20 || (b >= 0x80 && b < 0xC2) || b > 0xF4:
			default:
				if n.max >= 0 && int(f.off) >= n.max {
					return out
				}
				t := s
				t.top.off++
				switch {
				case b >= 0xF0:
					t.top.i = 3
					if b == 0xF0 {
						t.top.i |= 3 << 2
					} else if b == 0xF4 {
						t.top.i |= 4 << 2
					}
				case b >= 0xE0:
					t.top.i = 2
					if b == 0xE0 {
						t.top.i |= 1 << 2
					} else if b == 0xED {
						t.top.i |= 2 << 2
					}
				case b >= 0xC2:
					t.top.i = 1
				}
				return append(out, t)
			}
		case pEsc:
			if n.max >= 0 && int(f.off) >= n.max {
				return out
			}
			switch b {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				t := s
				t.top.pos, t.top.off, t.top.i = pBody, f.off+1, 0
				return append(out, t)
			case 'u':
				t := s
				t.top.pos, t.top.i = pHex, 0
				return append(out, t)
			}
		case pHex:
			if isHex(b) {
				t := s
				t.top.i++
				if t.top.i == 4 {
					t.top.pos, t.top.off, t.top.i = pBody, f.off+1, 0
				}
				return append(out, t)
			}
		}
		return out

	case kNumber, kInteger:
		real := n.kind == kNumber
		digits := func(pos uint8, limit int32) []state {
			if isDigit(b) && f.off < limit {
				t := s
				t.top.pos, t.top.off = pos, f.off+1
				return append(out, t)
			}
			return nil
		}
		switch f.pos {
		case pStart, pMinus:
			switch {
			case b == '-' && f.pos == pStart:
				return set(pMinus)
			case b == '0':
				return set(pZero)
			case b >= '1' && b <= '9':
				t := s
				t.top.pos, t.top.off = pInt, 1
				return append(out, t)
			}
			return out
		case pInt:
			if r := digits(pInt, maxIntDigits); r != nil {
				return r
			}
		case pDot:
			if isDigit(b) {
				t := s
				t.top.pos, t.top.off = pFrac, 1
				return append(out, t)
			}
			return out
		case pFrac:
			if r := digits(pFrac, maxFracDigits); r != nil {
				return r
			}
		case pE, pESign:
			switch {
			case (b == '+' || b == '-') && f.pos == pE:
				return set(pESign)
			case isDigit(b):
				t := s
				t.top.pos, t.top.off = pExp, 1
				return append(out, t)
			}
			return out
		case pExp:
			if r := digits(pExp, maxExpDigits); r != nil {
				return r
			}
			return step(s.pop(), b, out)
		}
		// pZero, pInt, pFrac: a fraction or exponent may follow, or the end.
		if real && b == '.' && (f.pos == pZero || f.pos == pInt) {
			return set(pDot)
		}
		if real && (b == 'e' || b == 'E') {
			return set(pE)
		}
		return step(s.pop(), b, out)

	case kArray:
		switch f.pos {
		case pStart:
			if b == '[' {
				return set(pFirst)
			}
		case pFirst:
			if b == ']' {
				if n.min == 0 {
					return append(out, s.pop())
				}
				return out
			}
			return push(s, frame{n: n, pos: pAfter, i: 1}, n.elem, b, out)
		case pAfter:
			switch b {
			case ',':
				if n.max < 0 || int(f.i) < n.max {
					return set(pNext0)
				}
			case ']':
				if int(f.i) >= n.min {
					return append(out, s.pop())
				}
			}
		case pNext0, pNext1:
			if b == ' ' && f.pos == pNext0 {
				return set(pNext1)
			}
			return push(s, frame{n: n, pos: pAfter, i: f.i + 1}, n.elem, b, out)
		}
		return out

	case kMap:
		switch f.pos {
		case pStart:
			if b == '{' {
				return set(pFirst)
			}
		case pFirst, pNext0, pNext1:
			switch {
			case b == '}' && f.pos == pFirst:
				return append(out, s.pop())
			case b == ' ' && f.pos == pNext0:
				return set(pNext1)
			case b == '"':
				return push(s, frame{n: n, pos: pColon}, keyString, b, out)
			}
		case pColon:
			if b == ':' {
				return set(pValue0)
			}
		case pValue0, pValue1:
			if b == ' ' && f.pos == pValue0 {
				return set(pValue1)
			}
			return push(s, frame{n: n, pos: pAfter}, n.elem, b, out)
		case pAfter:
			switch b {
			case ',':
				return set(pNext0)
			case '}':
				return append(out, s.pop())
			}
		}
		return out

	case kObject:
		switch f.pos {
		case pStart:
			if b == '{' {
				return set(pFirst)
			}
		case pFirst, pNext0, pNext1:
			if b == '}' && f.pos == pFirst && firstRequired(n.props, 0) == len(n.props) {
				return append(out, s.pop())
			}
			if b == ' ' && f.pos == pNext0 {
				return set(pNext1)
			}
			if b != '"' {
				return out
			}
			last := min(firstRequired(n.props, int(f.i)), len(n.props)-1)
			for j := int(f.i); j <= last; j++ {
				t := s
				t.top = frame{n: n, pos: pKey, i: int32(j), off: 1}
				out = append(out, t)
			}
			return out
		case pKey:
			key := n.props[f.i].key
			if key[f.off] != b {
				return out
			}
			t := s
			t.top.off++
			if int(t.top.off) == len(key) {
				t.top.pos = pColon
			}
			return append(out, t)
		case pColon:
			if b == ':' {
				return set(pValue0)
			}
		case pValue0, pValue1:
			if b == ' ' && f.pos == pValue0 {
				return set(pValue1)
			}
			return push(s, frame{n: n, pos: pAfter, i: f.i}, n.props[f.i].value, b, out)
		case pAfter:
			rest := int(f.i) + 1
			switch b {
			case ',':
				if rest < len(n.props) {
					t := s
					t.top.pos, t.top.i = pNext0, int32(rest)
					return append(out, t)
				}
			case '}':
				if firstRequired(n.props, rest) == len(n.props) {
					return append(out, s.pop())
				}
			}
		}
		return out
	}
	return out
}
