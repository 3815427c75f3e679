package tokenizer

// TokenBytes returns the bytes that token id decodes to on its own (nil
// if id names no token). A byte-level token may hold part of a UTF-8
// character. The slice is the tokenizer's: do not change it.
func (t *Tokenizer) TokenBytes(id int) []byte {
	b, _ := t.tokenBytes(id)
	return b
}
