package kvcache

// BlockData is the raw storage of one block of a View, for attention
// kernels that read many keys at once. Exactly one of K and K16 is set (and
// likewise V and V16): K and V for f32 blocks, K16 and V16 for bf16 blocks
// (the top halves of float32s). Each holds N rows of HeadDim values,
// sliced to exactly N·HeadDim elements. The slices alias the cache: they
// are read-only and valid until the sequence next changes.
type BlockData struct {
	K, V     []float32
	K16, V16 []uint16
	// Pos holds the original positions of the N tokens, ascending.
	Pos []int32
	// N is the number of tokens in the block.
	N int
	// Start is the index in the View of the block's first token.
	Start int
}

// Blocks returns the number of blocks holding the view's tokens.
func (v View) Blocks() int { return (v.h.n + v.bt - 1) / v.bt }

// BlockTokens returns the most tokens a block holds; block i starts at
// token i·BlockTokens.
func (v View) BlockTokens() int { return v.bt }

// Block returns the raw storage of block i (i < Blocks()). It reports
// false when the block is not stored as plain f32 or bf16 rows (a
// quantized format, say); callers then read the view through Scores and
// Mix instead.
func (v View) Block(i int) (BlockData, bool) {
	if i < 0 || i >= v.Blocks() || v.h.shared != nil { // shared: read through Scores and Mix
		return BlockData{}, false
	}
	b := v.h.blocks[i]
	if b.bias != nil { // weighted tokens: read through Scores, which adds the bias
		return BlockData{}, false
	}
	n := min(v.bt, v.h.n-i*v.bt)
	full := v.bt * v.d
	bd := BlockData{Pos: b.pos[:n], N: n, Start: i * v.bt}
	switch {
	case len(b.k.f32) == full && len(b.v.f32) == full && b.k.b16 == nil && b.v.b16 == nil:
		bd.K, bd.V = b.k.f32[:n*v.d], b.v.f32[:n*v.d]
	case len(b.k.b16) == full && len(b.v.b16) == full && b.k.f32 == nil && b.v.f32 == nil:
		bd.K16, bd.V16 = b.k.b16[:n*v.d], b.v.b16[:n*v.d]
	default:
		return BlockData{}, false
	}
	return bd, true
}

// Plain reports whether every block of the view is stored as plain f32 or
// bf16 rows, so that Block returns true for each.
func (v View) Plain() bool {
	for i := range v.Blocks() {
		if _, ok := v.Block(i); !ok {
			return false
		}
	}
	return true
}
