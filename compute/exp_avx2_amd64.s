//go:build amd64 && !purego

#include "textflag.h"

// AVX2 + FMA exp, max and scale kernels. Lengths are multiples of 8 and
// may be 0 (max: at least 8).

// Scalars broadcast into registers at entry: see exp.go for the method.
DATA expconst<>+0(SB)/4, $0x3fb8aa3b  // log2(e)
DATA expconst<>+4(SB)/4, $0xbf318000  // -ln2 high part (0.693359375)
DATA expconst<>+8(SB)/4, $0x395e8083  // -ln2 low part (+2.12194440e-4)
DATA expconst<>+12(SB)/4, $0x3f800000 // 1.0, also 127<<23
DATA expconst<>+16(SB)/4, $0x42b1999a // 88.8: clamp above
DATA expconst<>+20(SB)/4, $0xc2d00000 // -104: clamp below
GLOBL expconst<>(SB), RODATA|NOPTR, $24

// The polynomial's coefficients as vectors, for memory operands.
#define EXPC(off, bits) \
	DATA exppoly<>+(off)(SB)/4, $bits \
	DATA exppoly<>+(off+4)(SB)/4, $bits \
	DATA exppoly<>+(off+8)(SB)/4, $bits \
	DATA exppoly<>+(off+12)(SB)/4, $bits \
	DATA exppoly<>+(off+16)(SB)/4, $bits \
	DATA exppoly<>+(off+20)(SB)/4, $bits \
	DATA exppoly<>+(off+24)(SB)/4, $bits \
	DATA exppoly<>+(off+28)(SB)/4, $bits

EXPC(0, 0x3efffffe)   // c2
EXPC(32, 0x3e2aaa49)  // c3
EXPC(64, 0x3d2aac79)  // c4
EXPC(96, 0x3c091cf1)  // c5
EXPC(128, 0x3ab5121a) // c6
GLOBL exppoly<>(SB), RODATA|NOPTR, $160

// EXP8 sets p = exp(x) for the 8 floats in x, clobbering x, n and t. Y2–Y7
// hold log2(e), −ln2 (high, low), 1.0 and the clamps. x is clamped with x
// as the second source so that a NaN passes through; n = round(x·log2e),
// to nearest even; r = x − n·ln2, the first product exact; p(r) by
// Horner's rule; then p·2^n1·2^n2 with n1 = n>>1 and n2 = n − n1, both in
// [−75, 64] for n ∈ [−150, 128], so that the first product is exact and
// the second the one rounding, to a subnormal if need be.
#define EXP8(x, n, p, t) \
	VMINPS      x, Y6, x \
	VMAXPS      x, Y7, x \
	VMULPS      Y2, x, n \
	VROUNDPS    $0, n, n \
	VFMADD231PS Y3, n, x \
	VFMADD231PS Y4, n, x \
	VMOVUPS     exppoly<>+128(SB), p \
	VFMADD213PS exppoly<>+96(SB), x, p \
	VFMADD213PS exppoly<>+64(SB), x, p \
	VFMADD213PS exppoly<>+32(SB), x, p \
	VFMADD213PS exppoly<>+0(SB), x, p \
	VFMADD213PS Y5, x, p \
	VFMADD213PS Y5, x, p \
	VCVTPS2DQ   n, n \
	VPSRAD      $1, n, t \
	VPSUBD      t, n, n \
	VPSLLD      $23, t, t \
	VPSLLD      $23, n, n \
	VPADDD      Y5, t, t \
	VPADDD      Y5, n, n \
	VMULPS      t, p, p \
	VMULPS      n, p, p

// func expSumAVX2(dst, src *float32, n int, m float32) float32
// dst[i] = exp(src[i] − m) for i < n; returns the sum of dst. Two vectors
// per step, in independent registers.
TEXT ·expSumAVX2(SB), NOSPLIT, $0-36
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS m+24(FP), Y0
	VXORPS       Y1, Y1, Y1
	VBROADCASTSS expconst<>+0(SB), Y2
	VBROADCASTSS expconst<>+4(SB), Y3
	VBROADCASTSS expconst<>+8(SB), Y4
	VBROADCASTSS expconst<>+12(SB), Y5
	VBROADCASTSS expconst<>+16(SB), Y6
	VBROADCASTSS expconst<>+20(SB), Y7
	XORQ         AX, AX
	MOVQ         CX, DX
	SUBQ         $16, DX
	JLT          exp_tail

exp_loop16:
	VMOVUPS (SI)(AX*4), Y8
	VMOVUPS 32(SI)(AX*4), Y12
	VSUBPS  Y0, Y8, Y8
	VSUBPS  Y0, Y12, Y12
	EXP8(Y8, Y9, Y10, Y11)
	EXP8(Y12, Y13, Y14, Y15)
	VADDPS  Y10, Y1, Y1
	VADDPS  Y14, Y1, Y1
	VMOVUPS Y10, (DI)(AX*4)
	VMOVUPS Y14, 32(DI)(AX*4)
	ADDQ    $16, AX
	CMPQ    AX, DX
	JLE     exp_loop16

exp_tail:
	CMPQ    AX, CX
	JGE     exp_reduce
	VMOVUPS (SI)(AX*4), Y8
	VSUBPS  Y0, Y8, Y8
	EXP8(Y8, Y9, Y10, Y11)
	VADDPS  Y10, Y1, Y1
	VMOVUPS Y10, (DI)(AX*4)

exp_reduce:
	VEXTRACTF128 $1, Y1, X0
	VADDPS       X1, X0, X0
	VPERMILPS    $0x4e, X0, X1
	VADDPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VADDSS       X1, X0, X0
	VZEROUPPER
	MOVSS        X0, ret+32(FP)
	RET

// func maxAVX2(x *float32, n int) float32
// Returns the largest of x[:n]; n ≥ 8.
TEXT ·maxAVX2(SB), NOSPLIT, $0-20
	MOVQ    x+0(FP), SI
	MOVQ    n+8(FP), CX
	VMOVUPS (SI), Y0
	VMOVAPS Y0, Y1
	VMOVAPS Y0, Y2
	VMOVAPS Y0, Y3
	MOVQ    $8, AX
	MOVQ    CX, DX
	SUBQ    $32, DX            // last start of 32 floats
	CMPQ    AX, DX
	JGT     max_tail

max_loop32:
	VMAXPS (SI)(AX*4), Y0, Y0
	VMAXPS 32(SI)(AX*4), Y1, Y1
	VMAXPS 64(SI)(AX*4), Y2, Y2
	VMAXPS 96(SI)(AX*4), Y3, Y3
	ADDQ   $32, AX
	CMPQ   AX, DX
	JLE    max_loop32

max_tail:
	CMPQ AX, CX
	JGE  max_reduce

max_loop8:
	VMAXPS (SI)(AX*4), Y0, Y0
	ADDQ   $8, AX
	CMPQ   AX, CX
	JLT    max_loop8

max_reduce:
	VMAXPS       Y1, Y0, Y0
	VMAXPS       Y3, Y2, Y2
	VMAXPS       Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0x4e, X0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VMAXSS       X1, X0, X0
	VZEROUPPER
	MOVSS        X0, ret+16(FP)
	RET

// func scalAVX2(x *float32, a float32, n int)
// x[i] *= a for i < n.
TEXT ·scalAVX2(SB), NOSPLIT, $0-24
	MOVQ         x+0(FP), DI
	VBROADCASTSS a+8(FP), Y0
	MOVQ         n+16(FP), CX
	XORQ         AX, AX
	MOVQ         CX, DX
	SUBQ         $32, DX
	JLT          scal_tail

scal_loop32:
	VMULPS  (DI)(AX*4), Y0, Y1
	VMULPS  32(DI)(AX*4), Y0, Y2
	VMULPS  64(DI)(AX*4), Y0, Y3
	VMULPS  96(DI)(AX*4), Y0, Y4
	VMOVUPS Y1, (DI)(AX*4)
	VMOVUPS Y2, 32(DI)(AX*4)
	VMOVUPS Y3, 64(DI)(AX*4)
	VMOVUPS Y4, 96(DI)(AX*4)
	ADDQ    $32, AX
	CMPQ    AX, DX
	JLE     scal_loop32

scal_tail:
	CMPQ AX, CX
	JGE  scal_done

scal_loop8:
	VMULPS  (DI)(AX*4), Y0, Y1
	VMOVUPS Y1, (DI)(AX*4)
	ADDQ    $8, AX
	CMPQ    AX, CX
	JLT     scal_loop8

scal_done:
	VZEROUPPER
	RET

// func siluMulAVX2(gate, up *float32, n int)
// gate[i] = gate[i] / (1 + exp(−gate[i])) · up[i] for i < n, n a multiple
// of 8 (may be 0), with EXP8's exp.
TEXT ·siluMulAVX2(SB), NOSPLIT, $0-24
	MOVQ         gate+0(FP), DI
	MOVQ         up+8(FP), SI
	MOVQ         n+16(FP), CX
	VXORPS       Y0, Y0, Y0
	VBROADCASTSS expconst<>+0(SB), Y2
	VBROADCASTSS expconst<>+4(SB), Y3
	VBROADCASTSS expconst<>+8(SB), Y4
	VBROADCASTSS expconst<>+12(SB), Y5
	VBROADCASTSS expconst<>+16(SB), Y6
	VBROADCASTSS expconst<>+20(SB), Y7
	XORQ         AX, AX
	CMPQ         CX, $0
	JLE          silu_done

silu_loop:
	VMOVUPS (DI)(AX*4), Y8
	VSUBPS  Y8, Y0, Y9
	EXP8(Y9, Y10, Y11, Y12)
	VADDPS  Y5, Y11, Y11
	VDIVPS  Y11, Y8, Y8
	VMULPS  (SI)(AX*4), Y8, Y8
	VMOVUPS Y8, (DI)(AX*4)
	ADDQ    $8, AX
	CMPQ    AX, CX
	JLT     silu_loop

silu_done:
	VZEROUPPER
	RET
