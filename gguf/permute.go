package gguf

import "fmt"

// llama.cpp's converter (convert_hf_to_gguf.py, LlamaModel.permute) reorders
// the rows of the query and key projections of Llama-family models (llama,
// mistral, …; not qwen2, qwen3 or gemma3, which ggml ropes NeoX-style).
//
// Hugging Face Llama applies RoPE "rotate-half" style: within each head of
// headDim rows it rotates row i together with row i + headDim/2. ggml's
// normal RoPE rotates adjacent rows 2i and 2i+1. So the converter permutes
// each head's rows, in numpy terms, for a weight W of shape [rows, cols]
// (rows = heads·headDim; heads = n_head for attn_q, n_head_kv for attn_k):
//
//	W.reshape(heads, 2, headDim/2, cols).swapaxes(1, 2).reshape(rows, cols)
//
// that is, GGUF row h·headDim + 2i + t holds HF row h·headDim + t·headDim/2 + i
// (t ∈ {0, 1}, i < headDim/2). A q or k bias, where present, is permuted the
// same way (cols = 1). In GGUF terms the weight has Dims [cols, rows].
//
// A forward pass that uses rotate-half RoPE (as model/ does for safetensors
// weights) must undo the permutation with UnpermuteQK; one that uses
// adjacent-pair RoPE can use the GGUF rows as they are.

// UnpermuteQK undoes llama.cpp's query/key row permutation: data holds rows
// rows of cols elements each (row-major, rows = heads·headDim), in GGUF
// order; the result, a new slice, holds them in Hugging Face order. T may be
// float32 (cols = elements per row) or byte for quantized rows (cols = bytes
// per row: the permutation moves whole rows, so blocks are untouched).
func UnpermuteQK[T any](data []T, rows, cols, heads int) ([]T, error) {
	return permuteRows(data, rows, cols, heads, false)
}

// PermuteQK applies llama.cpp's query/key row permutation, the inverse of
// UnpermuteQK: it turns Hugging Face row order into GGUF row order.
func PermuteQK[T any](data []T, rows, cols, heads int) ([]T, error) {
	return permuteRows(data, rows, cols, heads, true)
}

func permuteRows[T any](data []T, rows, cols, heads int, toGGUF bool) ([]T, error) {
	if rows <= 0 || cols <= 0 || heads <= 0 || rows%heads != 0 || rows/heads%2 != 0 {
		return nil, fmt.Errorf("gguf: permute q/k: %d rows do not split into %d heads of an even size (cols %d)", rows, heads, cols)
	}
	if rows > len(data)/cols || rows*cols != len(data) {
		return nil, fmt.Errorf("gguf: permute q/k: %d values, want %d rows × %d cols", len(data), rows, cols)
	}
	hd := rows / heads
	out := make([]T, len(data))
	for h := 0; h < heads; h++ {
		for i := 0; i < hd/2; i++ {
			for t := 0; t < 2; t++ {
				g := h*hd + 2*i + t     // row in GGUF order
				hf := h*hd + t*hd/2 + i // row in Hugging Face order
				src, dst := g, hf
				if toGGUF {
					src, dst = hf, g
				}
				copy(out[dst*cols:(dst+1)*cols], data[src*cols:(src+1)*cols])
			}
		}
	}
	return out, nil
}
