//go:build amd64 && !purego

#include "textflag.h"

// AVX2 + FMA kernels. Every length passed in is a multiple of 8 (the Go
// wrappers in kernels_amd64.go do the remainder), and may be 0.

// func dotAVX2(a, b *float32, n int) float32
TEXT ·dotAVX2(SB), NOSPLIT, $0-28
	MOVQ   a+0(FP), SI
	MOVQ   b+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	XORQ   AX, AX
	MOVQ   CX, DX
	SUBQ   $32, DX
	JLT    dot_tail

dot_loop32:
	VMOVUPS     (SI)(AX*4), Y4
	VMOVUPS     32(SI)(AX*4), Y5
	VMOVUPS     64(SI)(AX*4), Y6
	VMOVUPS     96(SI)(AX*4), Y7
	VFMADD231PS (DI)(AX*4), Y4, Y0
	VFMADD231PS 32(DI)(AX*4), Y5, Y1
	VFMADD231PS 64(DI)(AX*4), Y6, Y2
	VFMADD231PS 96(DI)(AX*4), Y7, Y3
	ADDQ        $32, AX
	CMPQ        AX, DX
	JLE         dot_loop32

dot_tail:
	CMPQ AX, CX
	JGE  dot_reduce

dot_loop8:
	VMOVUPS     (SI)(AX*4), Y4
	VFMADD231PS (DI)(AX*4), Y4, Y0
	ADDQ        $8, AX
	CMPQ        AX, CX
	JLT         dot_loop8

dot_reduce:
	VADDPS       Y1, Y0, Y0
	VADDPS       Y3, Y2, Y2
	VADDPS       Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VPERMILPS    $0x4e, X0, X1
	VADDPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VADDSS       X1, X0, X0
	VZEROUPPER
	MOVSS        X0, ret+24(FP)
	RET

// func dot4AVX2(d *[4]float32, w, x *float32, ldx, k int)
// d[j] = Σ_{i<k} w[i]·x[j·ldx+i] for j < 4.
TEXT ·dot4AVX2(SB), NOSPLIT, $0-40
	MOVQ   d+0(FP), BX
	MOVQ   w+8(FP), SI
	MOVQ   x+16(FP), R8
	MOVQ   ldx+24(FP), DX
	MOVQ   k+32(FP), CX
	LEAQ   (R8)(DX*4), R9
	LEAQ   (R9)(DX*4), R10
	LEAQ   (R10)(DX*4), R11
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ   AX, AX
	MOVQ   CX, DX
	SUBQ   $16, DX
	JLT    dot4_tail

dot4_loop16:
	VMOVUPS     (SI)(AX*4), Y8
	VMOVUPS     32(SI)(AX*4), Y9
	VFMADD231PS (R8)(AX*4), Y8, Y0
	VFMADD231PS 32(R8)(AX*4), Y9, Y4
	VFMADD231PS (R9)(AX*4), Y8, Y1
	VFMADD231PS 32(R9)(AX*4), Y9, Y5
	VFMADD231PS (R10)(AX*4), Y8, Y2
	VFMADD231PS 32(R10)(AX*4), Y9, Y6
	VFMADD231PS (R11)(AX*4), Y8, Y3
	VFMADD231PS 32(R11)(AX*4), Y9, Y7
	ADDQ        $16, AX
	CMPQ        AX, DX
	JLE         dot4_loop16

dot4_tail:
	CMPQ AX, CX
	JGE  dot4_reduce
	VMOVUPS     (SI)(AX*4), Y8
	VFMADD231PS (R8)(AX*4), Y8, Y0
	VFMADD231PS (R9)(AX*4), Y8, Y1
	VFMADD231PS (R10)(AX*4), Y8, Y2
	VFMADD231PS (R11)(AX*4), Y8, Y3

dot4_reduce:
	VADDPS       Y4, Y0, Y0
	VADDPS       Y5, Y1, Y1
	VADDPS       Y6, Y2, Y2
	VADDPS       Y7, Y3, Y3
	VHADDPS      Y1, Y0, Y0
	VHADDPS      Y3, Y2, Y2
	VHADDPS      Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VMOVUPS      X0, (BX)
	VZEROUPPER
	RET

// func gemm3x4TileAVX2(y *float32, ldy int, w *float32, ldw int, x *float32, ldx, k, ntok int)
// y[t·ldy+r] = Σ_{i<k} w[r·ldw+i]·x[t·ldx+i] for r < 3, t < ntok; ntok is a
// multiple of 4. Each group of 4 tokens keeps its 12 sums in Y0–Y11.
TEXT ·gemm3x4TileAVX2(SB), NOSPLIT, $0-64
	MOVQ y+0(FP), BX
	MOVQ ldy+8(FP), DI
	SHLQ $2, DI
	MOVQ w+16(FP), R8
	MOVQ ldw+24(FP), DX
	LEAQ (R8)(DX*4), R9
	LEAQ (R9)(DX*4), R10
	MOVQ x+32(FP), R11
	MOVQ ldx+40(FP), DX
	SHLQ $2, DX
	MOVQ k+48(FP), CX
	MOVQ ntok+56(FP), R14
	SHRQ $2, R14
	JEQ  tile_done

tile_group:
	LEAQ   (R11)(DX*1), R12
	LEAQ   (R12)(DX*1), R13
	LEAQ   (R13)(DX*1), SI
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	XORQ   AX, AX
	TESTQ  CX, CX
	JEQ    tile_reduce

tile_loop:
	VMOVUPS     (R8)(AX*4), Y12
	VMOVUPS     (R9)(AX*4), Y13
	VMOVUPS     (R10)(AX*4), Y14
	VMOVUPS     (R11)(AX*4), Y15
	VFMADD231PS Y15, Y12, Y0
	VFMADD231PS Y15, Y13, Y4
	VFMADD231PS Y15, Y14, Y8
	VMOVUPS     (R12)(AX*4), Y15
	VFMADD231PS Y15, Y12, Y1
	VFMADD231PS Y15, Y13, Y5
	VFMADD231PS Y15, Y14, Y9
	VMOVUPS     (R13)(AX*4), Y15
	VFMADD231PS Y15, Y12, Y2
	VFMADD231PS Y15, Y13, Y6
	VFMADD231PS Y15, Y14, Y10
	VMOVUPS     (SI)(AX*4), Y15
	VFMADD231PS Y15, Y12, Y3
	VFMADD231PS Y15, Y13, Y7
	VFMADD231PS Y15, Y14, Y11
	ADDQ        $8, AX
	CMPQ        AX, CX
	JLT         tile_loop

tile_reduce:
	// Row r's four token sums end up in X0, X4, X8 for r = 0, 1, 2.
	VHADDPS      Y1, Y0, Y0
	VHADDPS      Y3, Y2, Y2
	VHADDPS      Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VHADDPS      Y5, Y4, Y4
	VHADDPS      Y7, Y6, Y6
	VHADDPS      Y6, Y4, Y4
	VEXTRACTF128 $1, Y4, X5
	VADDPS       X5, X4, X4
	VHADDPS      Y9, Y8, Y8
	VHADDPS      Y11, Y10, Y10
	VHADDPS      Y10, Y8, Y8
	VEXTRACTF128 $1, Y8, X9
	VADDPS       X9, X8, X8
	LEAQ         (BX)(DI*2), R12
	LEAQ         (R12)(DI*1), R13
	VMOVSS       X0, (BX)
	VMOVSS       X4, 4(BX)
	VMOVSS       X8, 8(BX)
	VEXTRACTPS   $1, X0, (BX)(DI*1)
	VEXTRACTPS   $1, X4, 4(BX)(DI*1)
	VEXTRACTPS   $1, X8, 8(BX)(DI*1)
	VEXTRACTPS   $2, X0, (R12)
	VEXTRACTPS   $2, X4, 4(R12)
	VEXTRACTPS   $2, X8, 8(R12)
	VEXTRACTPS   $3, X0, (R13)
	VEXTRACTPS   $3, X4, 4(R13)
	VEXTRACTPS   $3, X8, 8(R13)
	LEAQ         (R11)(DX*4), R11
	LEAQ         (BX)(DI*4), BX
	DECQ         R14
	JNE          tile_group

tile_done:
	VZEROUPPER
	RET

// func axpyAVX2(y, x *float32, a float32, n int)
// y[i] += a·x[i] for i < n.
TEXT ·axpyAVX2(SB), NOSPLIT, $0-32
	MOVQ         y+0(FP), DI
	MOVQ         x+8(FP), SI
	VBROADCASTSS a+16(FP), Y0
	MOVQ         n+24(FP), CX
	XORQ         AX, AX
	MOVQ         CX, DX
	SUBQ         $32, DX
	JLT          axpy_tail

axpy_loop32:
	VMOVUPS     (DI)(AX*4), Y1
	VMOVUPS     32(DI)(AX*4), Y2
	VMOVUPS     64(DI)(AX*4), Y3
	VMOVUPS     96(DI)(AX*4), Y4
	VFMADD231PS (SI)(AX*4), Y0, Y1
	VFMADD231PS 32(SI)(AX*4), Y0, Y2
	VFMADD231PS 64(SI)(AX*4), Y0, Y3
	VFMADD231PS 96(SI)(AX*4), Y0, Y4
	VMOVUPS     Y1, (DI)(AX*4)
	VMOVUPS     Y2, 32(DI)(AX*4)
	VMOVUPS     Y3, 64(DI)(AX*4)
	VMOVUPS     Y4, 96(DI)(AX*4)
	ADDQ        $32, AX
	CMPQ        AX, DX
	JLE         axpy_loop32

axpy_tail:
	CMPQ AX, CX
	JGE  axpy_done

axpy_loop8:
	VMOVUPS     (DI)(AX*4), Y1
	VFMADD231PS (SI)(AX*4), Y0, Y1
	VMOVUPS     Y1, (DI)(AX*4)
	ADDQ        $8, AX
	CMPQ        AX, CX
	JLT         axpy_loop8

axpy_done:
	VZEROUPPER
	RET

// func bf16ToF32AVX2(dst *float32, src *uint16, n int)
TEXT ·bf16ToF32AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	XORQ AX, AX
	MOVQ CX, DX
	SUBQ $32, DX
	JLT  bf_tail

bf_loop32:
	VPMOVZXWD (SI)(AX*2), Y0
	VPMOVZXWD 16(SI)(AX*2), Y1
	VPMOVZXWD 32(SI)(AX*2), Y2
	VPMOVZXWD 48(SI)(AX*2), Y3
	VPSLLD    $16, Y0, Y0
	VPSLLD    $16, Y1, Y1
	VPSLLD    $16, Y2, Y2
	VPSLLD    $16, Y3, Y3
	VMOVUPS   Y0, (DI)(AX*4)
	VMOVUPS   Y1, 32(DI)(AX*4)
	VMOVUPS   Y2, 64(DI)(AX*4)
	VMOVUPS   Y3, 96(DI)(AX*4)
	ADDQ      $32, AX
	CMPQ      AX, DX
	JLE       bf_loop32

bf_tail:
	CMPQ AX, CX
	JGE  bf_done

bf_loop8:
	VPMOVZXWD (SI)(AX*2), Y0
	VPSLLD    $16, Y0, Y0
	VMOVUPS   Y0, (DI)(AX*4)
	ADDQ      $8, AX
	CMPQ      AX, CX
	JLT       bf_loop8

bf_done:
	VZEROUPPER
	RET

// func dotBF16RowsAVX2(d *float32, w *uint16, ldw int, x *float32, k, rows int)
// d[r] = Σ_{i<k} bf16(w[r·ldw+i])·x[i] for r < rows. With ldw = k the rows
// are read as one sequential stream, which the hardware prefetchers follow
// far better than several rows read side by side; a software prefetch 2 KiB
// ahead helps them further.
TEXT ·dotBF16RowsAVX2(SB), NOSPLIT, $0-48
	MOVQ d+0(FP), BX
	MOVQ w+8(FP), SI
	MOVQ ldw+16(FP), R9
	SHLQ $1, R9
	MOVQ x+24(FP), DI
	MOVQ k+32(FP), CX
	MOVQ rows+40(FP), R8
	TESTQ R8, R8
	JEQ   bfr_done
	MOVQ CX, DX
	SUBQ $32, DX

bfr_row:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	XORQ   AX, AX
	CMPQ   DX, $0
	JLT    bfr_tail

bfr_loop32:
	PREFETCHT0  2048(SI)(AX*2)
	VPMOVZXWD   (SI)(AX*2), Y4
	VPMOVZXWD   16(SI)(AX*2), Y5
	VPMOVZXWD   32(SI)(AX*2), Y6
	VPMOVZXWD   48(SI)(AX*2), Y7
	VPSLLD      $16, Y4, Y4
	VPSLLD      $16, Y5, Y5
	VPSLLD      $16, Y6, Y6
	VPSLLD      $16, Y7, Y7
	VFMADD231PS (DI)(AX*4), Y4, Y0
	VFMADD231PS 32(DI)(AX*4), Y5, Y1
	VFMADD231PS 64(DI)(AX*4), Y6, Y2
	VFMADD231PS 96(DI)(AX*4), Y7, Y3
	ADDQ        $32, AX
	CMPQ        AX, DX
	JLE         bfr_loop32

bfr_tail:
	CMPQ AX, CX
	JGE  bfr_reduce

bfr_loop8:
	VPMOVZXWD   (SI)(AX*2), Y4
	VPSLLD      $16, Y4, Y4
	VFMADD231PS (DI)(AX*4), Y4, Y0
	ADDQ        $8, AX
	CMPQ        AX, CX
	JLT         bfr_loop8

bfr_reduce:
	VADDPS       Y1, Y0, Y0
	VADDPS       Y3, Y2, Y2
	VADDPS       Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VPERMILPS    $0x4e, X0, X1
	VADDPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VADDSS       X1, X0, X0
	MOVSS        X0, (BX)
	ADDQ         $4, BX
	ADDQ         R9, SI
	DECQ         R8
	JNE          bfr_row

bfr_done:
	VZEROUPPER
	RET

// func dotBF16RowsPF512AVX2(d *float32, w *uint16, ldw int, x *float32, k, rows int)
// d[r] = Σ_{i<k} bf16(w[r·ldw+i])·x[i] for r < rows. With ldw = k the rows
