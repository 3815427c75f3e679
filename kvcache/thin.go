package kvcache

import (
	"fmt"

	"github.com/kvserve/kvserve/compute"
)

// Key-channel pruning for ThinK (Xu et al., "ThinK: Thinner Key Cache by
// Query-Driven Pruning", ICLR 2025, arXiv:2407.21018).
//
// A pruned block stores, for its keys, only the kept channels of every
// token (in the pool's element format, f32 or bf16) and the list of kept
// channel indices (uint16 each, counted in the block's bytes); its values
// and positions are unchanged. q·k over a pruned key is computed over the
// kept channels only, which equals q·k̃ where k̃ is the key with its
// pruned channels set to zero — what ThinK's (and kvpress's) masked keys
// compute. Widening a pruned block (an Append into it after Truncate, or
// Keep) restores full-width rows with zeros in the pruned channels.

// thinRows is one block's keys with only some channels kept.
type thinRows struct {
	full Format   // the pool format, also the element format of f32/b16
	n, d int      // rows and the full row length
	keep []uint16 // kept channels, ascending
	f32  []float32
	b16  []uint16 // n × len(keep), row-major; exactly one of f32, b16 set
}

func (t *thinRows) format() Format { return t.full }

func (t *thinRows) bytes() int64 {
	return 4*int64(len(t.f32)) + 2*int64(len(t.b16)) + 2*int64(len(t.keep))
}

func (t *thinRows) shape() (int, int, Format) { return t.n, t.d, t.full }

// get widens row i into dst: zeros in the pruned channels.
func (t *thinRows) get(i int, dst []float32) {
	dst = dst[:t.d]
	clear(dst)
	k := len(t.keep)
	var buf [stackDim]float32
	row := scratch(buf[:], k)
	t.row(i, row)
	for c, ch := range t.keep {
		dst[ch] = row[c]
	}
}

// row widens the kept channels of row i into dst (len(keep) floats).
func (t *thinRows) row(i int, dst []float32) {
	k := len(t.keep)
	if t.b16 != nil {
		compute.BF16ToF32(dst[:k], t.b16[i*k:(i+1)*k])
		return
	}
	copy(dst[:k], t.f32[i*k:(i+1)*k])
}

// scores gathers the query's kept channels once and scores the packed
// rows with the plain kernels.
func (t *thinRows) scores(dst, q []float32, lo, hi int, scale float32) {
	k := len(t.keep)
	var buf [stackDim]float32
	qk := scratch(buf[:], k)
	for c, ch := range t.keep {
		qk[c] = q[ch]
	}
	if t.b16 != nil {
		compute.ScoresBF16(dst, qk, t.b16[lo*k:hi*k], hi-lo, scale)
		return
	}
	compute.Scores(dst, qk, t.f32[lo*k:hi*k], hi-lo, scale)
}

// mix adds the weighted kept channels to out (keys are not mixed by
// attention; this serves readers that treat keys and values alike).
func (t *thinRows) mix(out, p []float32, lo, hi int) {
	k := len(t.keep)
	var buf [stackDim]float32
	acc := scratch(buf[:], k)
	clear(acc)
	if t.b16 != nil {
		compute.MixRowsBF16(acc, p, t.b16[lo*k:hi*k], hi-lo)
	} else {
		compute.MixRows(acc, p, t.f32[lo*k:hi*k], hi-lo)
	}
	for c, ch := range t.keep {
		out[ch] += acc[c]
	}
}

// thin packs the kept channels of the n rows of src.
func thin(src *rows, full Format, n, d int, keep []uint16) *thinRows {
	k := len(keep)
	t := &thinRows{full: full, n: n, d: d, keep: keep}
	var buf [stackDim]float32
	x := scratch(buf[:], d)
	var packed []float32
	if full == BF16 {
		t.b16 = make([]uint16, n*k)
		packed = make([]float32, k)
	} else {
		t.f32 = make([]float32, n*k)
	}
	for i := range n {
		src.get(i, x)
		dst := packed
		if t.f32 != nil {
			dst = t.f32[i*k : (i+1)*k]
		}
		for c, ch := range keep {
			dst[c] = x[ch]
		}
		if t.b16 != nil {
			compute.F32ToBF16(t.b16[i*k:(i+1)*k], dst) // exact: x came from bf16
		}
	}
	return t
}

// PruneKeyChannels keeps only the given key channels (ascending, unique,
// within [0, HeadDim)) of one layer × KV head, in every full block that
// lies wholly before the last recent tokens, and frees the pruned
// channels' bytes for real (ThinK, arXiv:2407.21018). The newest tokens —
// at least recent of them, whole blocks — keep every channel, as ThinK
// keeps its most recent keys unpruned. Blocks already sealed (quantized,
// pruned) are left as they are, so a second call changes only blocks that
// have aged out of the window since. Values are untouched.
func (s *Seq) PruneKeyChannels(layer, head int, keep []int, recent int) error {
	d := s.pool.cfg.HeadDim
	for i, c := range keep {
		if c < 0 || c >= d || (i > 0 && c <= keep[i-1]) {
			return fmt.Errorf("kvcache: layer %d head %d: kept key channel %d at %d: channels must be ascending within [0, %d)", layer, head, c, i, d)
		}
	}
	if recent < 0 {
		return fmt.Errorf("kvcache: layer %d head %d: negative recent window %d", layer, head, recent)
	}
	if len(keep) == d {
		return nil
	}
	ch := make([]uint16, len(keep))
	for i, c := range keep {
		ch[i] = uint16(c)
	}
	h := s.list(layer, head)
	bt, full := s.pool.cfg.BlockTokens, s.pool.cfg.Format
	for bi := range max(0, h.n-recent) / bt {
		b := h.blocks[bi]
		if sealedBlock(b) || b.n != bt {
			continue
		}
		// Each block holds its own copy of the channel list, so that its
		// bytes are its own whatever happens to the other blocks.
		k := rows{x: thin(&b.k, full, bt, d, append([]uint16(nil), ch...))}
		s.sealStores(h, bi, k, nil)
	}
	return nil
}
