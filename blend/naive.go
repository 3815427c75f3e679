package blend

// Naive concatenates the documents' cached KV, keys re-rotated to their new
// positions, and computes only the tokens that are not in a document. A
// document never sees the documents before it: whatever needs that (a
// chain of definitions across documents) is lost.
type Naive struct{}

// Name returns "naive".
func (Naive) Name() string { return "naive" }

// Prefill reuses every document as cached.
func (Naive) Prefill(b *Blender, salt string, p Prompt) (*Result, error) {
	a, err := b.assemble(salt, p, nil)
	if err != nil {
		return nil, err
	}
	return b.finish(a, a.fresh, nil)
}
