package tokenizer

// Stream decodes tokens one at a time, as a model generates them. A
// character whose bytes are split across tokens is held back until its last
// byte arrives, so every piece that Push returns is valid UTF-8 and the
// pieces, followed by Flush, add up to Decode of all the ids.
type Stream struct {
	t       *Tokenizer
	pending []byte // bytes of an incomplete character
	n       int    // tokens decoded so far
	out     []byte
}

// NewStream returns a Stream that decodes with t.
func NewStream(t *Tokenizer) *Stream { return &Stream{t: t} }

// Push decodes one more token and returns the text that is now complete,
// possibly "". Ids that name no token are skipped, as Decode does.
// Bytes that can no longer become a valid character come out as U+FFFD.
func (s *Stream) Push(id int) string {
	b, ok := s.t.tokenBytes(id)
	if !ok {
		return ""
	}
	if s.t.joinDecode && s.n > 0 {
		s.pending = append(s.pending, ' ')
	}
	s.n++
	s.pending = append(s.pending, b...)
	var rest int
	s.out, rest = appendValid(s.out[:0], s.pending, false)
	s.pending = s.pending[:copy(s.pending, s.pending[rest:])]
	return string(s.out)
}

// Flush returns what is held back, with U+FFFD for an incomplete
// character, and readies the Stream for a new sequence.
func (s *Stream) Flush() string {
	s.out, _ = appendValid(s.out[:0], s.pending, true)
	s.pending = s.pending[:0]
	s.n = 0
	return string(s.out)
}
