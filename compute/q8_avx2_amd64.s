//go:build amd64 && !purego

#include "textflag.h"

// AVX2 + FMA + F16C Q8_0 kernels. A block is a half-precision scale and 32
// int8 values, 34 bytes; nb counts blocks.

// func dotQ8RowsAVX2(d *float32, w *byte, x *float32, nb, rows int)
// d[r] = Σ_b scale_b·Σ_{i<32} int8(w_rb[i])·x[32b+i] for r < rows, where row
// r's nb blocks follow row r−1's. Two blocks per step, each summed in its
// own register before its scale is applied, into two accumulators.
TEXT ·dotQ8RowsAVX2(SB), NOSPLIT, $0-40
	MOVQ  d+0(FP), BX
	MOVQ  w+8(FP), SI
	MOVQ  x+16(FP), DI
	MOVQ  nb+24(FP), CX
	MOVQ  rows+32(FP), R8
	TESTQ R8, R8
	JEQ   q8d_done
	TESTQ CX, CX
	JEQ   q8d_done

q8d_row:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	MOVQ   DI, DX
	MOVQ   CX, R9
	CMPQ   R9, $2
	JLT    q8d_one

q8d_two:
	PREFETCHT0   1024(SI)
	VPBROADCASTW (SI), X8
	VCVTPH2PS    X8, Y8
	VPMOVSXBD    2(SI), Y2
	VPMOVSXBD    10(SI), Y3
	VPMOVSXBD    18(SI), Y4
	VPMOVSXBD    26(SI), Y5
	VCVTDQ2PS    Y2, Y2
	VCVTDQ2PS    Y3, Y3
	VCVTDQ2PS    Y4, Y4
	VCVTDQ2PS    Y5, Y5
	VMULPS       (DX), Y2, Y2
	VMULPS       32(DX), Y3, Y3
	VFMADD231PS  64(DX), Y4, Y2
	VFMADD231PS  96(DX), Y5, Y3
	VADDPS       Y3, Y2, Y2
	VFMADD231PS  Y2, Y8, Y0
	VPBROADCASTW 34(SI), X9
	VCVTPH2PS    X9, Y9
	VPMOVSXBD    36(SI), Y10
	VPMOVSXBD    44(SI), Y11
	VPMOVSXBD    52(SI), Y12
	VPMOVSXBD    60(SI), Y13
	VCVTDQ2PS    Y10, Y10
	VCVTDQ2PS    Y11, Y11
	VCVTDQ2PS    Y12, Y12
	VCVTDQ2PS    Y13, Y13
	VMULPS       128(DX), Y10, Y10
	VMULPS       160(DX), Y11, Y11
	VFMADD231PS  192(DX), Y12, Y10
	VFMADD231PS  224(DX), Y13, Y11
	VADDPS       Y11, Y10, Y10
	VFMADD231PS  Y10, Y9, Y1
	ADDQ         $68, SI
	ADDQ         $256, DX
	SUBQ         $2, R9
	CMPQ         R9, $2
	JGE          q8d_two

q8d_one:
	TESTQ        R9, R9
	JEQ          q8d_reduce
	VPBROADCASTW (SI), X8
	VCVTPH2PS    X8, Y8
	VPMOVSXBD    2(SI), Y2
	VPMOVSXBD    10(SI), Y3
	VPMOVSXBD    18(SI), Y4
	VPMOVSXBD    26(SI), Y5
	VCVTDQ2PS    Y2, Y2
	VCVTDQ2PS    Y3, Y3
	VCVTDQ2PS    Y4, Y4
	VCVTDQ2PS    Y5, Y5
	VMULPS       (DX), Y2, Y2
	VMULPS       32(DX), Y3, Y3
	VFMADD231PS  64(DX), Y4, Y2
	VFMADD231PS  96(DX), Y5, Y3
	VADDPS       Y3, Y2, Y2
	VFMADD231PS  Y2, Y8, Y0
	ADDQ         $34, SI

q8d_reduce:
	VADDPS       Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VPERMILPS    $0x4e, X0, X1
	VADDPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VADDSS       X1, X0, X0
	VMOVSS       X0, (BX)
	ADDQ         $4, BX
	DECQ         R8
	JNE          q8d_row

q8d_done:
	VZEROUPPER
	RET

// func q8ToF32AVX2(dst *float32, src *byte, nb int)
// Dequantizes nb blocks: dst[32b+i] = scale_b·int8(q_b[i]), exactly.
TEXT ·q8ToF32AVX2(SB), NOSPLIT, $0-24
	MOVQ  dst+0(FP), DI
	MOVQ  src+8(FP), SI
	MOVQ  nb+16(FP), CX
	TESTQ CX, CX
	JEQ   q8w_done

q8w_loop:
	VPBROADCASTW (SI), X8
	VCVTPH2PS    X8, Y8
	VPMOVSXBD    2(SI), Y0
	VPMOVSXBD    10(SI), Y1
	VPMOVSXBD    18(SI), Y2
	VPMOVSXBD    26(SI), Y3
	VCVTDQ2PS    Y0, Y0
	VCVTDQ2PS    Y1, Y1
	VCVTDQ2PS    Y2, Y2
	VCVTDQ2PS    Y3, Y3
	VMULPS       Y8, Y0, Y0
	VMULPS       Y8, Y1, Y1
	VMULPS       Y8, Y2, Y2
	VMULPS       Y8, Y3, Y3
	VMOVUPS      Y0, (DI)
	VMOVUPS      Y1, 32(DI)
	VMOVUPS      Y2, 64(DI)
	VMOVUPS      Y3, 96(DI)
	ADDQ         $34, SI
	ADDQ         $128, DI
	DECQ         CX
	JNE          q8w_loop

q8w_done:
	VZEROUPPER
	RET
