package kvcache

import "fmt"

// KeepMergedKV is KeepMerged for methods that merge keys as well as values
// (clustering methods such as Chelsea, arXiv:2506.11418, and EMS's class
// centres, arXiv:2412.08521): it retains only the tokens at the given
// indices (ascending, unique) of one head, frees the blocks as Keep does,
// and then replaces kept token i's key by keys[i] and its value by
// values[i] wherever those are not nil. keys and values may each be nil or
// hold one entry (HeadDim floats, or nil for unchanged) per index.
//
// Keys are stored as given. Cached keys are post-RoPE, so a merged key is a
// combination of already-rotated keys and must not be rotated again; the
// kept token keeps its own position, which then only orders the token and
// masks it causally.
//
// A head with a quantized (sealed) block is refused, and a refused call
// leaves the head as it was.
func (s *Seq) KeepMergedKV(layer, head int, idx []int, keys, values [][]float32) error {
	if keys != nil && len(keys) != len(idx) {
		return fmt.Errorf("kvcache: layer %d head %d: merge of %d keys into %d kept tokens", layer, head, len(keys), len(idx))
	}
	d := s.pool.cfg.HeadDim
	for i, k := range keys {
		if k != nil && len(k) != d {
			return fmt.Errorf("kvcache: layer %d head %d: merged key %d has %d elements, want %d", layer, head, i, len(k), d)
		}
	}
	if err := s.KeepMerged(layer, head, idx, values); err != nil {
		return err
	}
	s.overwrite(s.list(layer, head), keys, true)
	return nil
}
