//go:build amd64 && !purego

#include "textflag.h"

// AVX-512 parts of the Fast-mode Q8_0 and Q4_0 products that are not tile
// kernels (those are generated: q8q4_vnni_amd64.s): rearranging activation
// groups for the tiles and quantizing activations.

// Float constants: |x| mask, sign mask, 0.5, 1, 127.
DATA q8q4F<>+0(SB)/4, $0x7fffffff
DATA q8q4F<>+4(SB)/4, $0x80000000
DATA q8q4F<>+8(SB)/4, $0x3f000000
DATA q8q4F<>+12(SB)/4, $0x3f800000
DATA q8q4F<>+16(SB)/4, $0x42fe0000
GLOBL q8q4F<>(SB), RODATA|NOPTR, $20

// Dword indices that repeat each of 4 scales 4 times.
DATA q8q4Rep4<>+0(SB)/4, $0
DATA q8q4Rep4<>+4(SB)/4, $0
DATA q8q4Rep4<>+8(SB)/4, $0
DATA q8q4Rep4<>+12(SB)/4, $0
DATA q8q4Rep4<>+16(SB)/4, $1
DATA q8q4Rep4<>+20(SB)/4, $1
DATA q8q4Rep4<>+24(SB)/4, $1
DATA q8q4Rep4<>+28(SB)/4, $1
DATA q8q4Rep4<>+32(SB)/4, $2
DATA q8q4Rep4<>+36(SB)/4, $2
DATA q8q4Rep4<>+40(SB)/4, $2
DATA q8q4Rep4<>+44(SB)/4, $2
DATA q8q4Rep4<>+48(SB)/4, $3
DATA q8q4Rep4<>+52(SB)/4, $3
DATA q8q4Rep4<>+56(SB)/4, $3
DATA q8q4Rep4<>+60(SB)/4, $3
GLOBL q8q4Rep4<>(SB), RODATA|NOPTR, $64

// func q8q4PrepVNNI(dst *byte, stride int, q *int8, d *float32, s *int32, groups, shift int)
// For each of groups groups of 4 activation blocks (128 values of q, 4
// scales of d, 8 half-block sums of s) writes 256 bytes at dst+g·stride:
// the 4 blocks' first 16 values, their last 16, the scales each repeated 4
// times, and −(s<<shift) with the half-sums of block j in dwords 4j and
// 4j+2 (zeros in 4j+1, 4j+3).
TEXT ·q8q4PrepVNNI(SB), NOSPLIT, $0-56
	MOVQ      dst+0(FP), DI
	MOVQ      stride+8(FP), R8
	MOVQ      q+16(FP), SI
	MOVQ      d+24(FP), DX
	MOVQ      s+32(FP), BX
	MOVQ      groups+40(FP), CX
	MOVQ      shift+48(FP), AX
	VMOVQ     AX, X15
	VMOVDQU32 q8q4Rep4<>(SB), Z14
	VPXORD    Z13, Z13, Z13
	TESTQ     CX, CX
	JEQ       prep_done

prep_loop:
	VMOVDQU32       (SI), Z0
	VSHUFI64X2      $0x88, 64(SI), Z0, Z1
	VSHUFI64X2      $0xdd, 64(SI), Z0, Z2
	VMOVDQU32       Z1, (DI)
	VMOVDQU32       Z2, 64(DI)
	VBROADCASTF32X4 (DX), Z3
	VPERMPS         Z3, Z14, Z3
	VMOVUPS         Z3, 128(DI)
	VPMOVZXDQ       (BX), Z4
	VPSLLD          X15, Z4, Z4
	VPSUBD          Z4, Z13, Z4
	VMOVDQU32       Z4, 192(DI)
	ADDQ            $128, SI
	ADDQ            $16, DX
	ADDQ            $32, BX
	ADDQ            R8, DI
	DECQ            CX
	JNZ             prep_loop

prep_done:
	VZEROUPPER
	RET

// func q8q4QuantizeAVX512(q *int8, d *float32, s *int32, x *float32, blocks int)
// Quantizes blocks consecutive blocks of 32 values of x as
// quantizeActGeneric does: scale max|x|/127, values rounded half away from
// zero (truncate, then step away from zero where the fraction is ≥ 0.5),
// converted like Go's float-to-int8 conversion (a value out of range,
// only from an infinite inverse scale, becomes 0).
TEXT ·q8q4QuantizeAVX512(SB), NOSPLIT, $0-40
	MOVQ   q+0(FP), DI
	MOVQ   d+8(FP), DX
	MOVQ   s+16(FP), BX
	MOVQ   x+24(FP), SI
	MOVQ   blocks+32(FP), CX
	VMOVSS q8q4F<>+16(SB), X14 // 127
	VMOVSS q8q4F<>+12(SB), X13 // 1
	VXORPS X12, X12, X12
	TESTQ  CX, CX
	JEQ    quant_done

quant_loop:
	VMOVUPS       (SI), Z0
	VMOVUPS       64(SI), Z1
	VANDPS.BCST   q8q4F<>+0(SB), Z0, Z2
	VANDPS.BCST   q8q4F<>+0(SB), Z1, Z3
	VMAXPS        Z3, Z2, Z2
	VEXTRACTF32X8 $1, Z2, Y3
	VMAXPS        Y3, Y2, Y2
	VEXTRACTF128  $1, Y2, X3
	VMAXPS        X3, X2, X2
	VPERMILPS     $0x4e, X2, X3
	VMAXPS        X3, X2, X2
	VPERMILPS     $0xb1, X2, X3
	VMAXSS        X3, X2, X2
	VDIVSS        X14, X2, X4 // d = amax/127
	VMOVSS        X4, (DX)
	VDIVSS        X4, X13, X5 // 1/d
	VCMPSS        $4, X12, X4, X6 // d ≠ 0
	VANDPS        X6, X5, X5
	VBROADCASTSS  X5, Z5
	VMULPS        Z5, Z0, Z0
	VMULPS        Z5, Z1, Z1

	VRNDSCALEPS  $0x0b, Z0, Z2
	VSUBPS       Z2, Z0, Z3
	VANDPS.BCST  q8q4F<>+0(SB), Z3, Z3
	VCMPPS.BCST  $0x1d, q8q4F<>+8(SB), Z3, K1
	VANDPS.BCST  q8q4F<>+4(SB), Z0, Z4
	VORPS.BCST   q8q4F<>+12(SB), Z4, Z4
	VADDPS       Z4, Z2, K1, Z2
	VCVTTPS2DQ   Z2, Z2
	VPMOVDB      Z2, X2
	VMOVDQU      X2, (DI)
	VPMOVSXBD    X2, Z2

	VRNDSCALEPS  $0x0b, Z1, Z6
	VSUBPS       Z6, Z1, Z3
	VANDPS.BCST  q8q4F<>+0(SB), Z3, Z3
	VCMPPS.BCST  $0x1d, q8q4F<>+8(SB), Z3, K1
	VANDPS.BCST  q8q4F<>+4(SB), Z1, Z4
	VORPS.BCST   q8q4F<>+12(SB), Z4, Z4
	VADDPS       Z4, Z6, K1, Z6
	VCVTTPS2DQ   Z6, Z6
	VPMOVDB      Z6, X6
	VMOVDQU      X6, 16(DI)
	VPMOVSXBD    X6, Z6

	// Half-block sums: reduce Z2 and Z6 side by side.
	VEXTRACTI32X8 $1, Z2, Y3
	VEXTRACTI32X8 $1, Z6, Y7
	VPADDD        Y3, Y2, Y2
	VPADDD        Y7, Y6, Y6
	VPHADDD       Y6, Y2, Y2 // per lane: a0+a1 a2+a3 b0+b1 b2+b3
	VEXTRACTI128  $1, Y2, X3
	VPADDD        X3, X2, X2
	VPHADDD       X2, X2, X2 // s0 s1 s0 s1
	VMOVQ         X2, (BX)

	ADDQ $128, SI
	ADDQ $32, DI
	ADDQ $4, DX
	ADDQ $8, BX
	DECQ CX
	JNZ  quant_loop

quant_done:
	VZEROUPPER
	RET

// Indices of the widening: even and odd qwords of two tables, each
// 4-repeated scale twice, the non-zero offset dwords.
DATA q8q4QEven<>+0(SB)/8, $0
DATA q8q4QEven<>+8(SB)/8, $2
DATA q8q4QEven<>+16(SB)/8, $4
DATA q8q4QEven<>+24(SB)/8, $6
DATA q8q4QEven<>+32(SB)/8, $8
DATA q8q4QEven<>+40(SB)/8, $10
DATA q8q4QEven<>+48(SB)/8, $12
DATA q8q4QEven<>+56(SB)/8, $14
GLOBL q8q4QEven<>(SB), RODATA|NOPTR, $64

DATA q8q4QOdd<>+0(SB)/8, $1
DATA q8q4QOdd<>+8(SB)/8, $3
DATA q8q4QOdd<>+16(SB)/8, $5
DATA q8q4QOdd<>+24(SB)/8, $7
DATA q8q4QOdd<>+32(SB)/8, $9
DATA q8q4QOdd<>+40(SB)/8, $11
DATA q8q4QOdd<>+48(SB)/8, $13
DATA q8q4QOdd<>+56(SB)/8, $15
GLOBL q8q4QOdd<>(SB), RODATA|NOPTR, $64

DATA q8q4DRep2<>+0(SB)/4, $0
DATA q8q4DRep2<>+4(SB)/4, $0
DATA q8q4DRep2<>+8(SB)/4, $4
DATA q8q4DRep2<>+12(SB)/4, $4
DATA q8q4DRep2<>+16(SB)/4, $8
DATA q8q4DRep2<>+20(SB)/4, $8
DATA q8q4DRep2<>+24(SB)/4, $12
DATA q8q4DRep2<>+28(SB)/4, $12
DATA q8q4DRep2<>+32(SB)/4, $16
DATA q8q4DRep2<>+36(SB)/4, $16
DATA q8q4DRep2<>+40(SB)/4, $20
DATA q8q4DRep2<>+44(SB)/4, $20
DATA q8q4DRep2<>+48(SB)/4, $24
DATA q8q4DRep2<>+52(SB)/4, $24
DATA q8q4DRep2<>+56(SB)/4, $28
DATA q8q4DRep2<>+60(SB)/4, $28
GLOBL q8q4DRep2<>(SB), RODATA|NOPTR, $64

DATA q8q4DEven<>+0(SB)/4, $0
DATA q8q4DEven<>+4(SB)/4, $2
DATA q8q4DEven<>+8(SB)/4, $4
DATA q8q4DEven<>+12(SB)/4, $6
DATA q8q4DEven<>+16(SB)/4, $8
DATA q8q4DEven<>+20(SB)/4, $10
DATA q8q4DEven<>+24(SB)/4, $12
DATA q8q4DEven<>+28(SB)/4, $14
DATA q8q4DEven<>+32(SB)/4, $16
DATA q8q4DEven<>+36(SB)/4, $18
DATA q8q4DEven<>+40(SB)/4, $20
DATA q8q4DEven<>+44(SB)/4, $22
DATA q8q4DEven<>+48(SB)/4, $24
DATA q8q4DEven<>+52(SB)/4, $26
DATA q8q4DEven<>+56(SB)/4, $28
DATA q8q4DEven<>+60(SB)/4, $30
GLOBL q8q4DEven<>(SB), RODATA|NOPTR, $64

// func q8q4Widen8(dst *byte, dstride int, src *byte, pairs int, token bool)
// Widens pairs of consecutive 4-block records at src (token records of 256
// bytes from q8q4PrepVNNI, or weight records of 192 from q8q4PrepW*) into
// the pair layout of the q8q4P8 kernels at dst+m·dstride: the 4 parts
// (values 8p…8p+7 of each of the 8 blocks in qword j), the scales with
// block j in dwords 2j, 2j+1, and for tokens the offsets likewise.
TEXT ·q8q4Widen8(SB), NOSPLIT, $0-33
	MOVQ      dst+0(FP), DI
	MOVQ      dstride+8(FP), R8
	MOVQ      src+16(FP), SI
	MOVQ      pairs+24(FP), CX
	MOVBLZX   token+32(FP), AX
	VMOVDQU64 q8q4QEven<>(SB), Z20
	VMOVDQU64 q8q4QOdd<>(SB), Z21
	VMOVDQU32 q8q4DRep2<>(SB), Z22
	VMOVDQU32 q8q4DEven<>(SB), Z23
	MOVQ      $192, BX
	TESTQ     AX, AX
	JEQ       widen_start
	MOVQ      $256, BX

widen_start:
	TESTQ CX, CX
	JEQ   widen_done

widen_loop:
	VMOVDQU64  (SI), Z0
	VMOVDQU64  (SI), Z1
	VPERMT2Q   (SI)(BX*1), Z20, Z0
	VPERMT2Q   (SI)(BX*1), Z21, Z1
	VMOVDQU64  64(SI), Z2
	VMOVDQU64  64(SI), Z3
	VPERMT2Q   64(SI)(BX*1), Z20, Z2
	VPERMT2Q   64(SI)(BX*1), Z21, Z3
	VMOVUPS    128(SI), Z4
	VPERMT2PS  128(SI)(BX*1), Z22, Z4
	VMOVDQU64  Z0, (DI)
	VMOVDQU64  Z1, 64(DI)
	VMOVDQU64  Z2, 128(DI)
	VMOVDQU64  Z3, 192(DI)
	VMOVUPS    Z4, 256(DI)
	TESTQ      AX, AX
	JEQ        widen_next
	VMOVDQU32  192(SI), Z5
	VPERMT2D   192(SI)(BX*1), Z23, Z5
	VMOVDQU32  Z5, 320(DI)

widen_next:
	LEAQ (SI)(BX*2), SI
	ADDQ R8, DI
	DECQ CX
	JNZ  widen_loop

widen_done:
	VZEROUPPER
	RET
