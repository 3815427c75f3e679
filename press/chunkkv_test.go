package press

import (
	"slices"
	"testing"
)

func TestChunksKeepWholeChunks(t *testing.T) {
	// 10 tokens in chunks of 3: [0 1 2] [3 4 5] [6 7 8] [9], chunk means
	// 1, 5, 3 and 0.5. Budget ⌊10·0.5⌋ = 5: the best chunk fits (3), the
	// next two would overflow, the short last one fits (4).
	s := []float32{1, 1, 1, 5, 4, 6, 3, 3, 3, 0.5}
	got := Chunks{Size: 3}.Select([][]float32{s, s}, 0, 1, 0.5)
	want := []int{3, 4, 5, 9}
	for g := range got {
		if !slices.Equal(got[g], want) {
			t.Errorf("head %d kept %v, want %v", g, got[g], want)
		}
	}
}

func TestChunksSumOverHeads(t *testing.T) {
	// Head 0 likes chunk 0 a little, head 1 likes chunk 1 a lot: the sum
	// picks chunk 1, for both heads.
	a := []float32{2, 2, 1, 1}
	b := []float32{0, 0, 5, 5}
	got := Chunks{Size: 2}.Select([][]float32{a, b}, 0, 1, 0.5)
	if !slices.Equal(got[0], []int{2, 3}) || !slices.Equal(got[1], []int{2, 3}) {
		t.Errorf("kept %v, want chunk [2 3] in both heads", got)
	}
	// Heads of different lengths choose each from its own scores.
	got = Chunks{Size: 2}.Select([][]float32{a, {9, 9, 0, 0, 0, 0}}, 0, 1, 0.5)
	if !slices.Equal(got[0], []int{0, 1}) || !slices.Equal(got[1], []int{0, 1}) {
		t.Errorf("kept %v, want [0 1] in both heads", got)
	}
}

func TestChunkKVOverKeyDiff(t *testing.T) {
	// Keys along e0 dominate the mean; the distinct keys sit in chunk
	// [20, 40): chunkkv keeps exactly that chunk at ratio 0.5 of 40.
	e := func(i int) []float32 { k := make([]float32, 4); k[i] = 1; return k }
	keys := make([][]float32, 40)
	for j := range keys {
		keys[j] = e(0)
		if j >= 20 {
			keys[j] = e(1 + j%3)
		}
	}
	got := kept(t, "chunkkv", handState(keys), 0.5)
	if len(got) != 20 || got[0] != 20 || got[19] != 39 {
		t.Errorf("kept %v, want the chunk [20, 40)", got)
	}
}
