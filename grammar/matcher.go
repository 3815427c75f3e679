package grammar

// maxStates bounds the states a matcher follows at once; an ambiguous
// schema beyond it keeps the first ones.
const maxStates = 64

// Matcher follows one generation through a grammar, token by token. It is
// not safe for concurrent use.
type Matcher struct {
	v      *Vocab
	states []state
	levels [][]state // the walk's state sets, by depth in a token
}

// NewMatcher returns a matcher at the start of the text, over v's tokens.
func (g *Grammar) NewMatcher(v *Vocab) *Matcher {
	return &Matcher{v: v, states: []state{newState(g.root)}}
}

// advance returns the states after byte b from states, deduplicated,
// appended to out.
func advance(states []state, b byte, out []state) []state {
	for _, s := range states {
		n := len(out)
		out = step(s, b, out)
		// Drop states equal to one already there.
		for k := n; k < len(out); k++ {
			for j := 0; j < k; j++ {
				if out[j] == out[k] {
					out = append(out[:k], out[k+1:]...)
					k--
					break
				}
			}
		}
		if len(out) > maxStates {
			out = out[:maxStates]
		}
	}
	return out
}

// AcceptBytes advances over text; false (and no change) if the grammar
// does not allow it.
func (m *Matcher) AcceptBytes(text []byte) bool {
	cur := m.states
	for _, b := range text {
		nxt := advance(cur, b, nil)
		if len(nxt) == 0 {
			return false
		}
		cur = nxt
	}
	m.states = cur
	return true
}

// Accept advances over token id.
func (m *Matcher) Accept(id int) bool {
	if id < 0 || id >= m.v.size || m.v.bytes[id] == nil {
		return false
	}
	return m.AcceptBytes(m.v.bytes[id])
}

// CanEnd reports whether the text so far is a complete sentence.
func (m *Matcher) CanEnd() bool {
	for _, s := range m.states {
		if canEnd(s) {
			return true
		}
	}
	return false
}

// FillMask sets the bits of the tokens that may come next and clears the
// others.
func (m *Matcher) FillMask(mask []uint64) {
	clear(mask)
	list := m.v.all
	// Inside a string, every plain token only adds characters: allow those
	// that fit without walking them.
	if len(m.states) == 1 {
		if f := m.states[0].top; f.n.kind == kString && f.pos == pBody && f.i == 0 {
			room := int32(-1)
			if f.n.max >= 0 {
				room = int32(f.n.max) - f.off
			}
			for _, id := range m.v.plain {
				if room < 0 || m.v.runes[id] <= room {
					mask[id>>6] |= 1 << (id & 63)
				}
			}
			list = m.v.other
		}
	}
	m.walk(list, mask)
}

// walk sets the bits of list's tokens that the states accept, sharing the
// work of common prefixes: the states after a token's first k bytes are
// kept by depth and reused by the next token when it shares those bytes.
func (m *Matcher) walk(list tokList, mask []uint64) {
	if len(m.levels) == 0 {
		m.levels = make([][]state, 1, 64)
	}
	m.levels[0] = append(m.levels[0][:0], m.states...)
	have := 0          // depths 0..have are valid for the current prefix
	dead := int32(1e9) // a prefix of this length is refused
	for k, id := range list.ids {
		l := list.lcp[k]
		if l >= dead {
			continue
		}
		dead = 1e9
		b := m.v.bytes[id]
		d := min(int(l), have)
		ok := true
		for ; d < len(b); d++ {
			if d+1 >= len(m.levels) {
				m.levels = append(m.levels, nil)
			}
			m.levels[d+1] = advance(m.levels[d], b[d], m.levels[d+1][:0])
			if len(m.levels[d+1]) == 0 {
				dead = int32(d + 1)
				ok = false
				break
			}
		}
		have = d
		if ok {
			mask[id>>6] |= 1 << (id & 63)
		}
	}
}
