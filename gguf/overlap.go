package gguf

import (
	"fmt"
	"slices"
)

// checkOverlap reports two tensors whose data share bytes. Each tensor's
// bytes are in the file (Parse checks that first); a file whose tensors
// overlap is corrupt or made to be — loading it would give one weight the
// bytes of another, and the model garbage.
func checkOverlap(f *File) error {
	byStart := slices.Clone(f.Tensors)
	slices.SortStableFunc(byStart, func(a, b *Tensor) int {
		switch {
		case a.Offset < b.Offset:
			return -1
		case a.Offset > b.Offset:
			return 1
		}
		return 0
	})
	var prev *Tensor
	for _, t := range byStart {
		if len(t.Data) == 0 {
			continue
		}
		if prev != nil && t.Offset < prev.Offset+uint64(len(prev.Data)) {
			return fmt.Errorf("tensor %q: its data (bytes %d to %d of the data section) overlaps tensor %q's (bytes %d to %d): corrupt file",
				t.Name, t.Offset, t.Offset+uint64(len(t.Data)), prev.Name, prev.Offset, prev.Offset+uint64(len(prev.Data)))
		}
		prev = t
	}
	return nil
}
