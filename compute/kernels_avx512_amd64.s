//go:build amd64 && !purego

#include "textflag.h"

// AVX-512 (F + BW) matrix kernels: the AVX2 set's GEMM tile and bf16
// GEMV with 16-float registers. Lengths k are multiples of 16.

// func gemm4x4TileAVX512(y *float32, ldy int, w *float32, ldw int, x *float32, ldx, k, ntok int)
// y[t·ldy+r] = Σ_{i<k} w[r·ldw+i]·x[t·ldx+i] for r < 4, t < ntok; ntok is a
// multiple of 4. Each group of 4 tokens keeps its 16 sums in Z0–Z15, sum
// (r, t) in Z(4r+t); weights in Z16–Z19, tokens in Z20–Z23.
TEXT ·gemm4x4TileAVX512(SB), NOSPLIT, $0-64
	MOVQ y+0(FP), BX
	MOVQ ldy+8(FP), DI
	SHLQ $2, DI
	MOVQ w+16(FP), R8
	MOVQ ldw+24(FP), DX
	LEAQ (R8)(DX*4), R9
	LEAQ (R9)(DX*4), R10
	LEAQ (R10)(DX*4), R15
	MOVQ x+32(FP), R11
	MOVQ ldx+40(FP), DX
	SHLQ $2, DX
	MOVQ k+48(FP), CX
	MOVQ ntok+56(FP), R14
	SHRQ $2, R14
	JEQ  t5_done

t5_group:
	LEAQ   (R11)(DX*1), R12
	LEAQ   (R12)(DX*1), R13
	LEAQ   (R13)(DX*1), SI
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	XORQ   AX, AX
	TESTQ  CX, CX
	JEQ    t5_reduce

t5_loop:
	VMOVUPS     (R8)(AX*4), Z16
	VMOVUPS     (R9)(AX*4), Z17
	VMOVUPS     (R10)(AX*4), Z18
	VMOVUPS     (R15)(AX*4), Z19
	VMOVUPS     (R11)(AX*4), Z20
	VFMADD231PS Z20, Z16, Z0
	VFMADD231PS Z20, Z17, Z4
	VFMADD231PS Z20, Z18, Z8
	VFMADD231PS Z20, Z19, Z12
	VMOVUPS     (R12)(AX*4), Z21
	VFMADD231PS Z21, Z16, Z1
	VFMADD231PS Z21, Z17, Z5
	VFMADD231PS Z21, Z18, Z9
	VFMADD231PS Z21, Z19, Z13
	VMOVUPS     (R13)(AX*4), Z22
	VFMADD231PS Z22, Z16, Z2
	VFMADD231PS Z22, Z17, Z6
	VFMADD231PS Z22, Z18, Z10
	VFMADD231PS Z22, Z19, Z14
	VMOVUPS     (SI)(AX*4), Z23
	VFMADD231PS Z23, Z16, Z3
	VFMADD231PS Z23, Z17, Z7
	VFMADD231PS Z23, Z18, Z11
	VFMADD231PS Z23, Z19, Z15
	ADDQ        $16, AX
	CMPQ        AX, CX
	JLT         t5_loop

t5_reduce:
	// Fold each sum's upper 256 bits onto its lower half, then reduce
	// as the AVX2 tile does: row r's four token sums end up in X(4r).
	VEXTRACTF64X4 $1, Z0, Y16
	VEXTRACTF64X4 $1, Z1, Y17
	VEXTRACTF64X4 $1, Z2, Y18
	VEXTRACTF64X4 $1, Z3, Y19
	VEXTRACTF64X4 $1, Z4, Y20
	VEXTRACTF64X4 $1, Z5, Y21
	VEXTRACTF64X4 $1, Z6, Y22
	VEXTRACTF64X4 $1, Z7, Y23
	VEXTRACTF64X4 $1, Z8, Y24
	VEXTRACTF64X4 $1, Z9, Y25
	VEXTRACTF64X4 $1, Z10, Y26
	VEXTRACTF64X4 $1, Z11, Y27
	VEXTRACTF64X4 $1, Z12, Y28
	VEXTRACTF64X4 $1, Z13, Y29
	VEXTRACTF64X4 $1, Z14, Y30
	VEXTRACTF64X4 $1, Z15, Y31
	VADDPS        Y16, Y0, Y0
	VADDPS        Y17, Y1, Y1
	VADDPS        Y18, Y2, Y2
	VADDPS        Y19, Y3, Y3
	VADDPS        Y20, Y4, Y4
	VADDPS        Y21, Y5, Y5
	VADDPS        Y22, Y6, Y6
	VADDPS        Y23, Y7, Y7
	VADDPS        Y24, Y8, Y8
	VADDPS        Y25, Y9, Y9
	VADDPS        Y26, Y10, Y10
	VADDPS        Y27, Y11, Y11
	VADDPS        Y28, Y12, Y12
	VADDPS        Y29, Y13, Y13
	VADDPS        Y30, Y14, Y14
	VADDPS        Y31, Y15, Y15
	VHADDPS       Y1, Y0, Y0
	VHADDPS       Y3, Y2, Y2
	VHADDPS       Y2, Y0, Y0
	VEXTRACTF128  $1, Y0, X1
	VADDPS        X1, X0, X0
	VHADDPS       Y5, Y4, Y4
	VHADDPS       Y7, Y6, Y6
	VHADDPS       Y6, Y4, Y4
	VEXTRACTF128  $1, Y4, X5
	VADDPS        X5, X4, X4
	VHADDPS       Y9, Y8, Y8
	VHADDPS       Y11, Y10, Y10
	VHADDPS       Y10, Y8, Y8
	VEXTRACTF128  $1, Y8, X9
	VADDPS        X9, X8, X8
	VHADDPS       Y13, Y12, Y12
	VHADDPS       Y15, Y14, Y14
	VHADDPS       Y14, Y12, Y12
	VEXTRACTF128  $1, Y12, X13
	VADDPS        X13, X12, X12
	LEAQ          (BX)(DI*2), R12
	LEAQ          (R12)(DI*1), R13
	VMOVSS        X0, (BX)
	VMOVSS        X4, 4(BX)
	VMOVSS        X8, 8(BX)
	VMOVSS        X12, 12(BX)
	VEXTRACTPS    $1, X0, (BX)(DI*1)
	VEXTRACTPS    $1, X4, 4(BX)(DI*1)
	VEXTRACTPS    $1, X8, 8(BX)(DI*1)
	VEXTRACTPS    $1, X12, 12(BX)(DI*1)
	VEXTRACTPS    $2, X0, (R12)
	VEXTRACTPS    $2, X4, 4(R12)
	VEXTRACTPS    $2, X8, 8(R12)
	VEXTRACTPS    $2, X12, 12(R12)
	VEXTRACTPS    $3, X0, (R13)
	VEXTRACTPS    $3, X4, 4(R13)
	VEXTRACTPS    $3, X8, 8(R13)
	VEXTRACTPS    $3, X12, 12(R13)
	LEAQ          (R11)(DX*4), R11
	LEAQ          (BX)(DI*4), BX
	DECQ          R14
	JNE           t5_group

t5_done:
	VZEROUPPER
	RET

// func dotBF16RowsAVX512(d *float32, w *uint16, ldw int, x *float32, k, rows int)
// d[r] = Σ_{i<k} bf16(w[r·ldw+i])·x[i] for r < rows, k a multiple of 16:
// each row widened 16 weights at a time in registers, four sums in flight.
TEXT ·dotBF16RowsAVX512(SB), NOSPLIT, $0-48
	MOVQ  d+0(FP), BX
	MOVQ  w+8(FP), SI
	MOVQ  ldw+16(FP), R9
	SHLQ  $1, R9
	MOVQ  x+24(FP), DI
	MOVQ  k+32(FP), CX
	MOVQ  rows+40(FP), R8
	TESTQ R8, R8
	JEQ   b5_done
	MOVQ  CX, DX
	SUBQ  $64, DX

b5_row:
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	XORQ   AX, AX
	CMPQ   DX, $0
	JLT    b5_tail

b5_loop64:
	PREFETCHT0  2048(SI)(AX*2)
	VPMOVZXWD   (SI)(AX*2), Z4
	VPMOVZXWD   32(SI)(AX*2), Z5
	VPMOVZXWD   64(SI)(AX*2), Z6
	VPMOVZXWD   96(SI)(AX*2), Z7
	VPSLLD      $16, Z4, Z4
	VPSLLD      $16, Z5, Z5
	VPSLLD      $16, Z6, Z6
	VPSLLD      $16, Z7, Z7
	VFMADD231PS (DI)(AX*4), Z4, Z0
	VFMADD231PS 64(DI)(AX*4), Z5, Z1
	VFMADD231PS 128(DI)(AX*4), Z6, Z2
	VFMADD231PS 192(DI)(AX*4), Z7, Z3
	ADDQ        $64, AX
	CMPQ        AX, DX
	JLE         b5_loop64

b5_tail:
	CMPQ AX, CX
	JGE  b5_reduce

b5_loop16:
	VPMOVZXWD   (SI)(AX*2), Z4
	VPSLLD      $16, Z4, Z4
	VFMADD231PS (DI)(AX*4), Z4, Z0
	ADDQ        $16, AX
	CMPQ        AX, CX
	JLT         b5_loop16

b5_reduce:
	VADDPS        Z1, Z0, Z0
	VADDPS        Z3, Z2, Z2
	VADDPS        Z2, Z0, Z0
	VEXTRACTF64X4 $1, Z0, Y1
	VADDPS        Y1, Y0, Y0
	VEXTRACTF128  $1, Y0, X1
	VADDPS        X1, X0, X0
	VPERMILPS     $0x4e, X0, X1
	VADDPS        X1, X0, X0
	VPERMILPS     $0xb1, X0, X1
	VADDSS        X1, X0, X0
	MOVSS         X0, (BX)
	ADDQ          $4, BX
	ADDQ          R9, SI
	DECQ          R8
	JNE           b5_row

b5_done:
	VZEROUPPER
	RET
