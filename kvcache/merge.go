package kvcache

import "fmt"

// KeepMerged is Keep for methods that merge evicted tokens into kept ones
// instead of dropping them (D2O, KVMerger): it retains only the tokens at
// the given indices (ascending, unique) of one head, frees the blocks as
// Keep does, and then, for every kept token i with values[i] != nil,
// replaces its value by values[i] (HeadDim floats). Keys and positions are
// unchanged. values may be nil (plain Keep) or hold one entry per index.
//
// A head with a quantized (sealed) block is refused with an error and left
// as it was: merged values would be requantized with the block's old scales.
func (s *Seq) KeepMerged(layer, head int, idx []int, values [][]float32) error {
	h := s.list(layer, head)
	for _, b := range h.blocks {
		if b.k.q != nil || b.v.q != nil {
			return fmt.Errorf("kvcache: layer %d head %d: merge needs an unquantized head", layer, head)
		}
	}
	if values != nil && len(values) != len(idx) {
		return fmt.Errorf("kvcache: merge of %d values into %d kept tokens", len(values), len(idx))
	}
	d := s.pool.cfg.HeadDim
	for i, v := range values {
		if v != nil && len(v) != d {
			return fmt.Errorf("kvcache: merged value %d has %d elements, want %d", i, len(v), d)
		}
	}
	if err := s.Keep(layer, head, idx); err != nil {
		return err
	}
	s.overwrite(h, values, false)
	return nil
}

// overwrite replaces token i's value (or key) in h by rows[i] wherever
// rows[i] is not nil, copying a shared block first.
func (s *Seq) overwrite(h *headList, rows [][]float32, key bool) {
	bt := s.pool.cfg.BlockTokens
	for i, x := range rows {
		if x == nil {
			continue
		}
		b := h.blocks[i/bt]
		if s.pool.shared(b) { // Keep's blocks are fresh and private; stay safe if that changes
			b = s.cow(h, i/bt)
		}
		if key {
			b.k.put(i%bt, x)
		} else {
			b.v.put(i%bt, x)
		}
	}
}
