//go:build amd64 && !purego

#include "textflag.h"
#include "bf16_evex_amd64.h"

// Fast-numerics kernels for bfloat16 weights on AVX512_BF16: VDPBF16PS
// multiplies 32 bf16 weights by 32 bf16 activations and adds each pair of
// products into one of 16 float32 sums. Row lengths k are any positive
// number: the last k mod 32 elements are loaded under the mask K1 with
// zeroing (VMOVDQU16.Z), which touches no memory past the rows.
// VDPBF16PS_Z(d, s1, s2) is VDPBF16PS zmm(d), zmm(s1), zmm(s2) in Intel
// order: Z(d) += Z(s1)·Z(s2) pairwise (see bf16_evex_amd64.h).

// func dpbf16Tile4x4AVX512(y *float32, ldy int, w *uint16, ldw int, x *uint16, ldx, kmain int, tail uint32, ntok, acc int)
// y[t·ldy+r] = Σ_{i<k} w[r·ldw+i]·x[t·ldx+i] for r < 4, t < ntok (a
// multiple of 4), where k = kmain (a multiple of 32) plus the number of
// bits set in tail (the low ones); with acc ≠ 0 the sums are added to y
// instead. Each group of 4 tokens keeps its 16 sums in Z0–Z15, sum (r, t)
// in Z(4r+t); weights in Z16–Z19, tokens in Z20–Z23.
TEXT ·dpbf16Tile4x4AVX512(SB), NOSPLIT, $0-80
	MOVQ  y+0(FP), BX
	MOVQ  ldy+8(FP), DI
	SHLQ  $2, DI
	MOVQ  w+16(FP), R8
	MOVQ  ldw+24(FP), DX
	LEAQ  (R8)(DX*2), R9
	LEAQ  (R9)(DX*2), R10
	LEAQ  (R10)(DX*2), R15
	MOVQ  x+32(FP), R11
	MOVQ  ldx+40(FP), DX
	SHLQ  $1, DX
	MOVQ  kmain+48(FP), CX
	MOVL  tail+56(FP), AX
	KMOVD AX, K1
	MOVQ  ntok+64(FP), R14
	SHRQ  $2, R14
	JEQ   d4_done

d4_group:
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
	JEQ    d4_tail

d4_loop:
	VMOVDQU16 (R8)(AX*2), Z16
	VMOVDQU16 (R9)(AX*2), Z17
	VMOVDQU16 (R10)(AX*2), Z18
	VMOVDQU16 (R15)(AX*2), Z19
	VMOVDQU16 (R11)(AX*2), Z20
	VDPBF16PS_Z(0, 16, 20) // VDPBF16PS Z20, Z16, Z0
	VDPBF16PS_Z(4, 17, 20) // VDPBF16PS Z20, Z17, Z4
	VDPBF16PS_Z(8, 18, 20) // VDPBF16PS Z20, Z18, Z8
	VDPBF16PS_Z(12, 19, 20) // VDPBF16PS Z20, Z19, Z12
	VMOVDQU16 (R12)(AX*2), Z21
	VDPBF16PS_Z(1, 16, 21) // VDPBF16PS Z21, Z16, Z1
	VDPBF16PS_Z(5, 17, 21) // VDPBF16PS Z21, Z17, Z5
	VDPBF16PS_Z(9, 18, 21) // VDPBF16PS Z21, Z18, Z9
	VDPBF16PS_Z(13, 19, 21) // VDPBF16PS Z21, Z19, Z13
	VMOVDQU16 (R13)(AX*2), Z22
	VDPBF16PS_Z(2, 16, 22) // VDPBF16PS Z22, Z16, Z2
	VDPBF16PS_Z(6, 17, 22) // VDPBF16PS Z22, Z17, Z6
	VDPBF16PS_Z(10, 18, 22) // VDPBF16PS Z22, Z18, Z10
	VDPBF16PS_Z(14, 19, 22) // VDPBF16PS Z22, Z19, Z14
	VMOVDQU16 (SI)(AX*2), Z23
	VDPBF16PS_Z(3, 16, 23) // VDPBF16PS Z23, Z16, Z3
	VDPBF16PS_Z(7, 17, 23) // VDPBF16PS Z23, Z17, Z7
	VDPBF16PS_Z(11, 18, 23) // VDPBF16PS Z23, Z18, Z11
	VDPBF16PS_Z(15, 19, 23) // VDPBF16PS Z23, Z19, Z15
	ADDQ $32, AX
	CMPQ AX, CX
	JLT  d4_loop

d4_tail:
	KORTESTD K1, K1
	JEQ      d4_reduce
	VMOVDQU16.Z (R8)(AX*2), K1, Z16
	VMOVDQU16.Z (R9)(AX*2), K1, Z17
	VMOVDQU16.Z (R10)(AX*2), K1, Z18
	VMOVDQU16.Z (R15)(AX*2), K1, Z19
	VMOVDQU16.Z (R11)(AX*2), K1, Z20
	VDPBF16PS_Z(0, 16, 20) // VDPBF16PS Z20, Z16, Z0
	VDPBF16PS_Z(4, 17, 20) // VDPBF16PS Z20, Z17, Z4
	VDPBF16PS_Z(8, 18, 20) // VDPBF16PS Z20, Z18, Z8
	VDPBF16PS_Z(12, 19, 20) // VDPBF16PS Z20, Z19, Z12
	VMOVDQU16.Z (R12)(AX*2), K1, Z21
	VDPBF16PS_Z(1, 16, 21) // VDPBF16PS Z21, Z16, Z1
	VDPBF16PS_Z(5, 17, 21) // VDPBF16PS Z21, Z17, Z5
	VDPBF16PS_Z(9, 18, 21) // VDPBF16PS Z21, Z18, Z9
	VDPBF16PS_Z(13, 19, 21) // VDPBF16PS Z21, Z19, Z13
	VMOVDQU16.Z (R13)(AX*2), K1, Z22
	VDPBF16PS_Z(2, 16, 22) // VDPBF16PS Z22, Z16, Z2
	VDPBF16PS_Z(6, 17, 22) // VDPBF16PS Z22, Z17, Z6
	VDPBF16PS_Z(10, 18, 22) // VDPBF16PS Z22, Z18, Z10
	VDPBF16PS_Z(14, 19, 22) // VDPBF16PS Z22, Z19, Z14
	VMOVDQU16.Z (SI)(AX*2), K1, Z23
	VDPBF16PS_Z(3, 16, 23) // VDPBF16PS Z23, Z16, Z3
	VDPBF16PS_Z(7, 17, 23) // VDPBF16PS Z23, Z17, Z7
	VDPBF16PS_Z(11, 18, 23) // VDPBF16PS Z23, Z18, Z11
	VDPBF16PS_Z(15, 19, 23) // VDPBF16PS Z23, Z19, Z15

d4_reduce:
	// Fold each sum's upper 256 bits onto its lower half, then reduce
	// as the fp32 tiles do: row r's four token sums end up in X(4r).
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
	CMPQ          acc+72(FP), $0
	JEQ           d4_store
	VMOVSS        (BX), X16
	VINSERTPS     $0x10, (BX)(DI*1), X16, X16
	VINSERTPS     $0x20, (R12), X16, X16
	VINSERTPS     $0x30, (R13), X16, X16
	VADDPS        X16, X0, X0
	VMOVSS        4(BX), X16
	VINSERTPS     $0x10, 4(BX)(DI*1), X16, X16
	VINSERTPS     $0x20, 4(R12), X16, X16
	VINSERTPS     $0x30, 4(R13), X16, X16
	VADDPS        X16, X4, X4
	VMOVSS        8(BX), X16
	VINSERTPS     $0x10, 8(BX)(DI*1), X16, X16
	VINSERTPS     $0x20, 8(R12), X16, X16
	VINSERTPS     $0x30, 8(R13), X16, X16
	VADDPS        X16, X8, X8
	VMOVSS        12(BX), X16
	VINSERTPS     $0x10, 12(BX)(DI*1), X16, X16
	VINSERTPS     $0x20, 12(R12), X16, X16
	VINSERTPS     $0x30, 12(R13), X16, X16
	VADDPS        X16, X12, X12

d4_store:
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
	JNE           d4_group

d4_done:
	VZEROUPPER
	RET

// func dpbf16RowsAVX512(d *float32, w *uint16, ldw int, x *uint16, kmain int, tail uint32, rows int)
// d[r] = Σ_{i<k} w[r·ldw+i]·x[i] for r < rows, k as in the tile: the
// GEMV of one token. One row at a time, so that consecutive rows are one
// sequential stream for the prefetchers: four sums Z0–Z3 over 128 values
// per step (weights Z4–Z7, the token Z8–Z11), then 32 at a time into Z0,
// then the masked tail.
TEXT ·dpbf16RowsAVX512(SB), NOSPLIT, $0-56
	MOVQ  d+0(FP), BX
	MOVQ  w+8(FP), R8
	MOVQ  ldw+16(FP), DX
	SHLQ  $1, DX
	MOVQ  x+24(FP), R11
	MOVQ  kmain+32(FP), CX
	MOVL  tail+40(FP), AX
	KMOVD AX, K1
	MOVQ  rows+48(FP), R14
	MOVQ  CX, R13
	SUBQ  $128, R13 // last start of a whole 128-value step

r_row:
	TESTQ  R14, R14
	JEQ    r_done
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	XORQ   AX, AX
	CMPQ   R13, $0
	JLT    r_loop32

r_loop128:
	PREFETCHT0 2048(R8)(AX*2)
	PREFETCHT0 2112(R8)(AX*2)
	PREFETCHT0 2176(R8)(AX*2)
	PREFETCHT0 2240(R8)(AX*2)
	VMOVDQU16  (R8)(AX*2), Z4
	VMOVDQU16  64(R8)(AX*2), Z5
	VMOVDQU16  128(R8)(AX*2), Z6
	VMOVDQU16  192(R8)(AX*2), Z7
	VMOVDQU16  (R11)(AX*2), Z8
	VMOVDQU16  64(R11)(AX*2), Z9
	VMOVDQU16  128(R11)(AX*2), Z10
	VMOVDQU16  192(R11)(AX*2), Z11
	VDPBF16PS_Z(0, 4, 8)   // VDPBF16PS Z8, Z4, Z0
	VDPBF16PS_Z(1, 5, 9)   // VDPBF16PS Z9, Z5, Z1
	VDPBF16PS_Z(2, 6, 10)  // VDPBF16PS Z10, Z6, Z2
	VDPBF16PS_Z(3, 7, 11)  // VDPBF16PS Z11, Z7, Z3
	ADDQ       $128, AX
	CMPQ       AX, R13
	JLE        r_loop128

r_loop32:
	CMPQ      AX, CX
	JGE       r_tail
	VMOVDQU16 (R8)(AX*2), Z4
	VMOVDQU16 (R11)(AX*2), Z8
	VDPBF16PS_Z(0, 4, 8) // VDPBF16PS Z8, Z4, Z0
	ADDQ      $32, AX
	JMP       r_loop32

r_tail:
	KORTESTD K1, K1
	JEQ      r_reduce
	VMOVDQU16.Z (R8)(AX*2), K1, Z4
	VMOVDQU16.Z (R11)(AX*2), K1, Z8
	VDPBF16PS_Z(1, 4, 8) // VDPBF16PS Z8, Z4, Z1

r_reduce:
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
	VMOVSS        X0, (BX)
	ADDQ          $4, BX
	ADDQ          DX, R8
	DECQ          R14
	JMP           r_row

r_done:
	VZEROUPPER
	RET

// func f32ToBF16AVX512(dst *uint16, src *float32, n int)
// F32ToBF16 for n a positive multiple of 16, bit for bit: b += 0x7fff +
// (b>>16 & 1) and keep the top half (round to nearest even, subnormals
// included: VCVTNEPS2BF16 would flush those to zero), except that a NaN
// keeps its top half with the quiet bit set.
TEXT ·f32ToBF16AVX512(SB), NOSPLIT, $0-24
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	MOVL         $0x7fff, AX
	VPBROADCASTD AX, Z31
	MOVL         $1, AX
	VPBROADCASTD AX, Z30
	MOVL         $0x7fffffff, AX
	VPBROADCASTD AX, Z29
	MOVL         $0x7f800000, AX
	VPBROADCASTD AX, Z28
	MOVL         $0x00400000, AX
	VPBROADCASTD AX, Z27

c_loop:
	VMOVDQU32 (SI), Z0
	VPSRLD    $16, Z0, Z1
	VPANDD    Z30, Z1, Z1
	VPADDD    Z31, Z1, Z1
	VPADDD    Z0, Z1, Z1
	VPANDD    Z29, Z0, Z2
	VPCMPUD   $6, Z28, Z2, K1 // |b| > +Inf: NaN
	VPORD     Z27, Z0, K1, Z1
	VPSRLD    $16, Z1, Z1
	VPMOVDW   Z1, (DI)
	ADDQ      $64, SI
	ADDQ      $32, DI
	SUBQ      $16, CX
	JNE       c_loop
	VZEROUPPER
	RET

