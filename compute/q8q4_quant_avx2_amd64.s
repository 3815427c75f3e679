//go:build amd64 && !purego

#include "textflag.h"

// Float constants: |x| mask, sign mask, 0.5, 1, 127; then 0x80000000 (the
// conversion's out-of-range value).
DATA q8q4QF<>+0(SB)/4, $0x7fffffff
DATA q8q4QF<>+4(SB)/4, $0x80000000
DATA q8q4QF<>+8(SB)/4, $0x3f000000
DATA q8q4QF<>+12(SB)/4, $0x3f800000
DATA q8q4QF<>+16(SB)/4, $0x42fe0000
GLOBL q8q4QF<>(SB), RODATA|NOPTR, $20

// Dword order that undoes VPACKSS*'s per-lane interleaving.
DATA q8q4PackIdx<>+0(SB)/4, $0
DATA q8q4PackIdx<>+4(SB)/4, $4
DATA q8q4PackIdx<>+8(SB)/4, $1
DATA q8q4PackIdx<>+12(SB)/4, $5
DATA q8q4PackIdx<>+16(SB)/4, $2
DATA q8q4PackIdx<>+20(SB)/4, $6
DATA q8q4PackIdx<>+24(SB)/4, $3
DATA q8q4PackIdx<>+28(SB)/4, $7
GLOBL q8q4PackIdx<>(SB), RODATA|NOPTR, $32

// ROUNDAWAY rounds the 8 floats of x half away from zero in place: t =
// trunc(x); where |x−t| ≥ 0.5, t += copysign(1, x). Then converts to int32,
// with the conversion's out-of-range value 0x80000000 (from infinities
// and NaNs) made 0 as Go's float-to-int8 conversion makes it.
#define ROUNDAWAY(x, t, u) \
	VROUNDPS   $3, x, t            \
	VSUBPS     t, x, u             \
	VANDPS     Y15, u, u           \
	VCMPPS     $0x1d, Y14, u, u    \
	VANDPS     Y13, x, x           \
	VORPS      Y12, x, x           \
	VANDPS     u, x, x             \
	VADDPS     x, t, t             \
	VCVTTPS2DQ t, x                \
	VPCMPEQD   Y13, x, u           \
	VPANDN     x, u, x

// func q8q4QuantizeAVX2(q *int8, d *float32, s *int32, x *float32, blocks int)
// The AVX2 version of q8q4QuantizeAVX512: the same results bit for bit.
TEXT ·q8q4QuantizeAVX2(SB), NOSPLIT, $0-40
	MOVQ         q+0(FP), DI
	MOVQ         d+8(FP), DX
	MOVQ         s+16(FP), BX
	MOVQ         x+24(FP), SI
	MOVQ         blocks+32(FP), CX
	VBROADCASTSS q8q4QF<>+0(SB), Y15 // |x| mask
	VBROADCASTSS q8q4QF<>+8(SB), Y14 // 0.5
	VBROADCASTSS q8q4QF<>+4(SB), Y13 // sign mask, also 0x80000000
	VBROADCASTSS q8q4QF<>+12(SB), Y12 // 1
	VMOVDQU      q8q4PackIdx<>(SB), Y11
	VMOVSS       q8q4QF<>+16(SB), X10 // 127
	VXORPS       X9, X9, X9
	TESTQ        CX, CX
	JEQ          quant2_done

quant2_loop:
	VMOVUPS      (SI), Y0
	VMOVUPS      32(SI), Y1
	VMOVUPS      64(SI), Y2
	VMOVUPS      96(SI), Y3
	VANDPS       Y15, Y0, Y4
	VANDPS       Y15, Y1, Y5
	VANDPS       Y15, Y2, Y6
	VANDPS       Y15, Y3, Y7
	VMAXPS       Y5, Y4, Y4
	VMAXPS       Y7, Y6, Y6
	VMAXPS       Y6, Y4, Y4
	VEXTRACTF128 $1, Y4, X5
	VMAXPS       X5, X4, X4
	VPERMILPS    $0x4e, X4, X5
	VMAXPS       X5, X4, X4
	VPERMILPS    $0xb1, X4, X5
	VMAXSS       X5, X4, X4
	VDIVSS       X10, X4, X4 // d = amax/127
	VMOVSS       X4, (DX)
	VMOVSS       q8q4QF<>+12(SB), X5
	VDIVSS       X4, X5, X5 // 1/d
	VCMPSS       $4, X9, X4, X6 // d ≠ 0
	VANDPS       X6, X5, X5
	VBROADCASTSS X5, Y5
	VMULPS       Y5, Y0, Y0
	VMULPS       Y5, Y1, Y1
	VMULPS       Y5, Y2, Y2
	VMULPS       Y5, Y3, Y3
	ROUNDAWAY(Y0, Y4, Y6)
	ROUNDAWAY(Y1, Y4, Y6)
	ROUNDAWAY(Y2, Y4, Y6)
	ROUNDAWAY(Y3, Y4, Y6)

	// Values: pack to int8 in order.
	VPACKSSDW Y1, Y0, Y4
	VPACKSSDW Y3, Y2, Y5
	VPACKSSWB Y5, Y4, Y4
	VPERMD    Y4, Y11, Y4
	VMOVDQU   Y4, (DI)

	// Half-block sums.
	VPADDD       Y1, Y0, Y0
	VPADDD       Y3, Y2, Y2
	VPHADDD      Y2, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPADDD       X1, X0, X0
	VPHADDD      X0, X0, X0
	VMOVQ        X0, (BX)

	ADDQ $128, SI
	ADDQ $32, DI
	ADDQ $4, DX
	ADDQ $8, BX
	DECQ CX
	JNZ  quant2_loop

quant2_done:
	VZEROUPPER
	RET
