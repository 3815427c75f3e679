//go:build amd64 && !purego

#include "textflag.h"

// Q4_K and Q6_K against int8 activations with AVX2 (VPMADDUBSW), one
// weight row and one token at a time: each 32-element chunk of a block,
// unpacked in its natural order, meets the activations as they lie; a tree
// of horizontal adds then leaves each sub-block's sum in a lane of its own,
// and the scales apply per block as float vectors.

DATA kq2nib<>+0(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA kq2nib<>+8(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA kq2nib<>+16(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA kq2nib<>+24(SB)/8, $0x0f0f0f0f0f0f0f0f
GLOBL kq2nib<>(SB), RODATA|NOPTR, $32

DATA kq230<>+0(SB)/8, $0x3030303030303030
DATA kq230<>+8(SB)/8, $0x3030303030303030
DATA kq230<>+16(SB)/8, $0x3030303030303030
DATA kq230<>+24(SB)/8, $0x3030303030303030
GLOBL kq230<>(SB), RODATA|NOPTR, $32

DATA kq2ones<>+0(SB)/8, $0x0001000100010001
DATA kq2ones<>+8(SB)/8, $0x0001000100010001
DATA kq2ones<>+16(SB)/8, $0x0001000100010001
DATA kq2ones<>+24(SB)/8, $0x0001000100010001
GLOBL kq2ones<>(SB), RODATA|NOPTR, $32

// Even then odd lanes: the order of the Q6_K sub-block sums.
DATA kq2eo<>+0(SB)/4, $0
DATA kq2eo<>+4(SB)/4, $2
DATA kq2eo<>+8(SB)/4, $4
DATA kq2eo<>+12(SB)/4, $6
DATA kq2eo<>+16(SB)/4, $1
DATA kq2eo<>+20(SB)/4, $3
DATA kq2eo<>+24(SB)/4, $5
DATA kq2eo<>+28(SB)/4, $7
GLOBL kq2eo<>(SB), RODATA|NOPTR, $32

// Activation scale of each of those lanes, for the first and second half.
DATA kq2ad<>+0(SB)/4, $0
DATA kq2ad<>+4(SB)/4, $1
DATA kq2ad<>+8(SB)/4, $2
DATA kq2ad<>+12(SB)/4, $3
DATA kq2ad<>+16(SB)/4, $0
DATA kq2ad<>+20(SB)/4, $1
DATA kq2ad<>+24(SB)/4, $2
DATA kq2ad<>+28(SB)/4, $3
DATA kq2ad<>+32(SB)/4, $4
DATA kq2ad<>+36(SB)/4, $5
DATA kq2ad<>+40(SB)/4, $6
DATA kq2ad<>+44(SB)/4, $7
DATA kq2ad<>+48(SB)/4, $4
DATA kq2ad<>+52(SB)/4, $5
DATA kq2ad<>+56(SB)/4, $6
DATA kq2ad<>+60(SB)/4, $7
GLOBL kq2ad<>(SB), RODATA|NOPTR, $64

// HSUM8(Y15 → (dst)) stores the sum of Y15's eight floats.
#define HSUM8(dst) \
	VEXTRACTF128 $1, Y15, X14 \
	VADDPS       X14, X15, X15 \
	VHADDPS      X15, X15, X15 \
	VHADDPS      X15, X15, X15 \
	VMOVSS       X15, dst

// func q4kMatAVX2(y *float32, ldy int, w *byte, rb, rows int, q *int8, d *float32, s *int32, cols, ntok int)
// y[t·ldy+r] = Σ_i w_r[i]·x_t[i]. Per block: sub-block s (32 elements)
// is the low (s even) or high nibbles of qs[32·(s/2):]; its products go
// through VPMADDUBSW into 16 int16 lanes M_s, and three rounds of VPHADDW
// (sums stay below 2^15: 16 products of at most 15·128) and a widening add
// leave sub-block s's sum in lane s.
TEXT ·q4kMatAVX2(SB), NOSPLIT, $0-80
	MOVQ y+0(FP), DI
	MOVQ w+16(FP), SI
	MOVQ rows+32(FP), CX
	VMOVDQU kq2nib<>(SB), Y13

q4k2_row:
	MOVQ DI, R9
	MOVQ q+40(FP), R10
	MOVQ d+48(FP), R11
	MOVQ s+56(FP), R12
	MOVQ ntok+72(FP), R8

q4k2_tok:
	VXORPS Y15, Y15, Y15
	MOVQ   SI, R13
	MOVQ   cols+64(FP), DX
	SHRQ   $8, DX

q4k2_blk:
	// Scales sc[0..7] in Y0 (times d), mins m[0..7] in Y1 (times dmin).
	// sc[0..3] = u0&63, m[0..3] = u1&63, sc[4..7] = u2&15 | (u0>>6)<<4,
	// m[4..7] = u2>>4 | (u1>>6)<<4 for the scale words u0, u1, u2.
	MOVL  4(R13), AX
	MOVL  8(R13), BX
	ANDL  $0x3f3f3f3f, AX
	MOVL  12(R13), R14
	ANDL  $0x0f0f0f0f, R14
	MOVL  4(R13), R15
	SHRL  $6, R15
	ANDL  $0x03030303, R15
	SHLL  $4, R15
	ORL   R14, R15
	SHLQ  $32, R15
	ORQ   R15, AX
	MOVL  12(R13), R14
	SHRL  $4, R14
	ANDL  $0x0f0f0f0f, R14
	MOVL  BX, R15
	SHRL  $6, R15
	ANDL  $0x03030303, R15
	SHLL  $4, R15
	ORL   R14, R15
	ANDL  $0x3f3f3f3f, BX
	SHLQ  $32, R15
	ORQ   R15, BX
	VMOVQ AX, X0
	VPMOVZXBD X0, Y0
	VCVTDQ2PS Y0, Y0
	VMOVQ BX, X1
	VPMOVZXBD X1, Y1
	VCVTDQ2PS Y1, Y1
	MOVL  (R13), AX
	VMOVD AX, X2
	VCVTPH2PS X2, X2
	VBROADCASTSS X2, Y3
	VMULPS Y3, Y0, Y0
	VMOVSHDUP X2, X2
	VBROADCASTSS X2, Y3
	VMULPS Y3, Y1, Y1

	// M_0 … M_7 in Y2 … Y9.
	VMOVDQU    16(R13), Y10
	VPAND      Y13, Y10, Y11
	VPMADDUBSW (R10), Y11, Y2
	VPSRLW     $4, Y10, Y10
	VPAND      Y13, Y10, Y10
	VPMADDUBSW 32(R10), Y10, Y3
	VMOVDQU    48(R13), Y10
	VPAND      Y13, Y10, Y11
	VPMADDUBSW 64(R10), Y11, Y4
	VPSRLW     $4, Y10, Y10
	VPAND      Y13, Y10, Y10
	VPMADDUBSW 96(R10), Y10, Y5
	VMOVDQU    80(R13), Y10
	VPAND      Y13, Y10, Y11
	VPMADDUBSW 128(R10), Y11, Y6
	VPSRLW     $4, Y10, Y10
	VPAND      Y13, Y10, Y10
	VPMADDUBSW 160(R10), Y10, Y7
	VMOVDQU    112(R13), Y10
	VPAND      Y13, Y10, Y11
	VPMADDUBSW 192(R10), Y11, Y8
	VPSRLW     $4, Y10, Y10
	VPAND      Y13, Y10, Y10
	VPMADDUBSW 224(R10), Y10, Y9
	VPHADDW    Y3, Y2, Y2
	VPHADDW    Y5, Y4, Y4
	VPHADDW    Y7, Y6, Y6
	VPHADDW    Y9, Y8, Y8
	VPHADDW    Y4, Y2, Y2
	VPHADDW    Y8, Y6, Y6
	VPHADDW    Y6, Y2, Y2
	VEXTRACTI128 $1, Y2, X3
	VPMOVSXWD  X2, Y2
	VPMOVSXWD  X3, Y3
	VPADDD     Y3, Y2, Y2
	VCVTDQ2PS  Y2, Y2
	VMULPS     Y0, Y2, Y2
	VFMADD231PS (R11), Y2, Y15

	// Mins: a_d·(Σq of each 32) against dmin·m.
	VMOVDQU   (R12), Y4
	VPHADDD   32(R12), Y4, Y4
	VPERMQ    $0xd8, Y4, Y4
	VCVTDQ2PS Y4, Y4
	VMULPS    (R11), Y4, Y4
	VFNMADD231PS Y4, Y1, Y15

	ADDQ $144, R13
	ADDQ $256, R10
	ADDQ $32, R11
	ADDQ $64, R12
	DECQ DX
	JNZ  q4k2_blk

	HSUM8((R9))
	MOVQ ldy+8(FP), AX
	LEAQ (R9)(AX*4), R9
	DECQ R8
	JNZ  q4k2_tok

	ADDQ rb+24(FP), SI
	ADDQ $4, DI
	DECQ CX
	JNZ  q4k2_row
	VZEROUPPER
	RET

// Q6K2CHUNKS(off) leaves, for the half of a Q6_K block whose ql start at
// off(R13), the sums of its eight sub-blocks of 16 in Y2: lanes 0–3 the
// even ones, 4–7 the odd ones. Activations at R10 + 2·off (128 per half).
// Each 32-element quarter q is one activation block: its codes (low or
// high nibbles of La or Lb, and bit pair q of qh) meet the activations in
// VPMADDUBSW and VPMADDWD, and two rounds of VPHADDD sum each 16.
#define Q6K2HALF(off, aoff, hoff) \
	VMOVDQU    off(R13), Y4 \
	VMOVDQU    off+32(R13), Y5 \
	VMOVDQU    hoff(R13), Y6 \
	VPAND      Y13, Y4, Y7 \
	VPSLLW     $4, Y6, Y8 \
	VPAND      Y12, Y8, Y8 \
	VPOR       Y8, Y7, Y7 \
	VPMADDUBSW aoff(R10), Y7, Y7 \
	VPMADDWD   kq2ones<>(SB), Y7, Y2 \
	VPAND      Y13, Y5, Y7 \
	VPSLLW     $2, Y6, Y8 \
	VPAND      Y12, Y8, Y8 \
	VPOR       Y8, Y7, Y7 \
	VPMADDUBSW aoff+32(R10), Y7, Y7 \
	VPMADDWD   kq2ones<>(SB), Y7, Y7 \
	VPHADDD    Y7, Y2, Y2 \
	VPSRLW     $4, Y4, Y7 \
	VPAND      Y13, Y7, Y7 \
	VPAND      Y12, Y6, Y8 \
	VPOR       Y8, Y7, Y7 \
	VPMADDUBSW aoff+64(R10), Y7, Y7 \
	VPMADDWD   kq2ones<>(SB), Y7, Y3 \
	VPSRLW     $4, Y5, Y7 \
	VPAND      Y13, Y7, Y7 \
	VPSRLW     $2, Y6, Y8 \
	VPAND      Y12, Y8, Y8 \
	VPOR       Y8, Y7, Y7 \
	VPMADDUBSW aoff+96(R10), Y7, Y7 \
	VPMADDWD   kq2ones<>(SB), Y7, Y7 \
	VPHADDD    Y7, Y3, Y3 \
	VPHADDD    Y3, Y2, Y2

// func q6kMatAVX2(y *float32, ldy int, w *byte, rb, rows int, q *int8, d *float32, s *int32, cols, ntok int)
TEXT ·q6kMatAVX2(SB), NOSPLIT, $0-80
	MOVQ y+0(FP), DI
	MOVQ w+16(FP), SI
	MOVQ rows+32(FP), CX
	VMOVDQU kq2nib<>(SB), Y13
	VMOVDQU kq230<>(SB), Y12
	VMOVDQU kq2eo<>(SB), Y11

q6k2_row:
	MOVQ DI, R9
	MOVQ q+40(FP), R10
	MOVQ d+48(FP), R11
	MOVQ s+56(FP), R12
	MOVQ ntok+72(FP), R8

q6k2_tok:
	VXORPS Y15, Y15, Y15
	MOVQ   SI, R13
	MOVQ   cols+64(FP), DX
	SHRQ   $8, DX

q6k2_blk:
	// d·sc of sub-blocks 0,2,4,6,1,3,5,7 in Y0 and 8,10,…,15 in Y1.
	MOVWLZX   208(R13), AX
	VMOVD     AX, X2
	VCVTPH2PS X2, X2
	VBROADCASTSS X2, Y3
	VPMOVSXBD 192(R13), Y0
	VPERMD    Y0, Y11, Y0
	VCVTDQ2PS Y0, Y0
	VMULPS    Y3, Y0, Y0
	VPMOVSXBD 200(R13), Y1
	VPERMD    Y1, Y11, Y1
	VCVTDQ2PS Y1, Y1
	VMULPS    Y3, Y1, Y1

	Q6K2HALF(0, 0, 128)
	VPERMD     (R12), Y11, Y9
	VPSLLD     $5, Y9, Y9
	VPSUBD     Y9, Y2, Y2
	VCVTDQ2PS  Y2, Y2
	VMULPS     Y0, Y2, Y2
	VMOVDQU    kq2ad<>(SB), Y10
	VPERMPS    (R11), Y10, Y10
	VFMADD231PS Y10, Y2, Y15

	Q6K2HALF(64, 128, 160)
	VPERMD     32(R12), Y11, Y9
	VPSLLD     $5, Y9, Y9
	VPSUBD     Y9, Y2, Y2
	VCVTDQ2PS  Y2, Y2
	VMULPS     Y1, Y2, Y2
	VMOVDQU    kq2ad<>+32(SB), Y10
	VPERMPS    (R11), Y10, Y10
	VFMADD231PS Y10, Y2, Y15

	ADDQ $210, R13
	ADDQ $256, R10
	ADDQ $32, R11
	ADDQ $64, R12
	DECQ DX
	JNZ  q6k2_blk

	HSUM8((R9))
	MOVQ ldy+8(FP), AX
	LEAQ (R9)(AX*4), R9
	DECQ R8
	JNZ  q6k2_tok

	ADDQ rb+24(FP), SI
	ADDQ $4, DI
	DECQ CX
	JNZ  q6k2_row
	VZEROUPPER
	RET
