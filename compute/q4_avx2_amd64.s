//go:build amd64 && !purego

#include "textflag.h"

// AVX2 + FMA Q4 kernels. A block is a float32 scale s, a float32 offset m
// and 16 bytes of codes (byte j: element j low nibble, element j+16 high
// nibble), 24 bytes; nb counts blocks.
//
// Q4CODES expands the codes of the block at off(SI) into float32 in four
// registers: elements 0–7, 8–15, 16–23, 24–31. Y15 holds 15 in every lane.
#define Q4CODES(off, a, b, c, d) \
	VPMOVZXBD (off+8)(SI), a  \
	VPMOVZXBD (off+16)(SI), b \
	VPSRLD    $4, a, c        \
	VPSRLD    $4, b, d        \
	VPAND     Y15, a, a       \
	VPAND     Y15, b, b       \
	VCVTDQ2PS a, a            \
	VCVTDQ2PS b, b            \
	VCVTDQ2PS c, c            \
	VCVTDQ2PS d, d

// func dotQ4RowsAVX2(d *float32, w *byte, x *float32, nb, rows int)
// d[r] = Σ_b Σ_{i<32} (s_b·q_bi + m_b)·x[32b+i] for r < rows, where row r's
// nb blocks follow row r−1's. Each weight is rebuilt in a register with one
// FMA and multiplied into one of four accumulators; two blocks a step.
TEXT ·dotQ4RowsAVX2(SB), NOSPLIT, $0-40
	MOVQ  d+0(FP), BX
	MOVQ  w+8(FP), SI
	MOVQ  x+16(FP), DI
	MOVQ  nb+24(FP), CX
	MOVQ  rows+32(FP), R8
	TESTQ R8, R8
	JEQ   q4d_done
	TESTQ CX, CX
	JEQ   q4d_done
	MOVL         $15, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15

q4d_row:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	MOVQ   DI, DX
	MOVQ   CX, R9
	CMPQ   R9, $2
	JLT    q4d_one

q4d_two:
	PREFETCHT0   768(SI)
	VBROADCASTSS (SI), Y4
	VBROADCASTSS 4(SI), Y5
	Q4CODES(0, Y6, Y7, Y8, Y9)
	VFMADD213PS  Y5, Y4, Y6
	VFMADD213PS  Y5, Y4, Y7
	VFMADD213PS  Y5, Y4, Y8
	VFMADD213PS  Y5, Y4, Y9
	VFMADD231PS  (DX), Y6, Y0
	VFMADD231PS  32(DX), Y7, Y1
	VFMADD231PS  64(DX), Y8, Y2
	VFMADD231PS  96(DX), Y9, Y3
	VBROADCASTSS 24(SI), Y4
	VBROADCASTSS 28(SI), Y5
	Q4CODES(24, Y10, Y11, Y12, Y13)
	VFMADD213PS  Y5, Y4, Y10
	VFMADD213PS  Y5, Y4, Y11
	VFMADD213PS  Y5, Y4, Y12
	VFMADD213PS  Y5, Y4, Y13
	VFMADD231PS  128(DX), Y10, Y0
	VFMADD231PS  160(DX), Y11, Y1
	VFMADD231PS  192(DX), Y12, Y2
	VFMADD231PS  224(DX), Y13, Y3
	ADDQ         $48, SI
	ADDQ         $256, DX
	SUBQ         $2, R9
	CMPQ         R9, $2
	JGE          q4d_two

q4d_one:
	TESTQ        R9, R9
	JEQ          q4d_reduce
	VBROADCASTSS (SI), Y4
	VBROADCASTSS 4(SI), Y5
	Q4CODES(0, Y6, Y7, Y8, Y9)
	VFMADD213PS  Y5, Y4, Y6
	VFMADD213PS  Y5, Y4, Y7
	VFMADD213PS  Y5, Y4, Y8
	VFMADD213PS  Y5, Y4, Y9
	VFMADD231PS  (DX), Y6, Y0
	VFMADD231PS  32(DX), Y7, Y1
	VFMADD231PS  64(DX), Y8, Y2
	VFMADD231PS  96(DX), Y9, Y3
	ADDQ         $24, SI

q4d_reduce:
	VADDPS       Y1, Y0, Y0
	VADDPS       Y3, Y2, Y2
	VADDPS       Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VPERMILPS    $0x4e, X0, X1
	VADDPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VADDSS       X1, X0, X0
	VMOVSS       X0, (BX)
	ADDQ         $4, BX
	DECQ         R8
	JNE          q4d_row

q4d_done:
	VZEROUPPER
	RET

// func q4ToF32AVX2(dst *float32, src *byte, nb int)
// Dequantizes nb blocks: dst[32b+i] = float32(s_b·q_bi) + m_b, a multiply
// then an add, each rounded, as the format defines (not an FMA).
TEXT ·q4ToF32AVX2(SB), NOSPLIT, $0-24
	MOVQ  dst+0(FP), DI
	MOVQ  src+8(FP), SI
	MOVQ  nb+16(FP), CX
	TESTQ CX, CX
	JEQ   q4w_done
	MOVL         $15, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15

q4w_loop:
	VBROADCASTSS (SI), Y4
	VBROADCASTSS 4(SI), Y5
	Q4CODES(0, Y0, Y1, Y2, Y3)
	VMULPS       Y4, Y0, Y0
	VMULPS       Y4, Y1, Y1
	VMULPS       Y4, Y2, Y2
	VMULPS       Y4, Y3, Y3
	VADDPS       Y5, Y0, Y0
	VADDPS       Y5, Y1, Y1
	VADDPS       Y5, Y2, Y2
	VADDPS       Y5, Y3, Y3
	VMOVUPS      Y0, (DI)
	VMOVUPS      Y1, 32(DI)
	VMOVUPS      Y2, 64(DI)
	VMOVUPS      Y3, 96(DI)
	ADDQ         $24, SI
	ADDQ         $128, DI
	DECQ         CX
	JNE          q4w_loop

q4w_done:
	VZEROUPPER
	RET
