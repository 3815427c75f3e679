//go:build amd64 && !purego

#include "textflag.h"

// AVX2 + FMA attention kernels. cols, the number of columns processed, is a
// multiple of 8 (mix3AVX2: of 32) and at least 8; row strides are in
// elements. The Go wrappers in attn_amd64.go do the remaining columns.

// func scoresAVX2(dst, q, k *float32, ldk, cols, rows int, scale float32)
// dst[j] = scale·Σ_{c<cols} q[c]·k[j·ldk+c] for j < rows, four keys at a time.
TEXT ·scoresAVX2(SB), NOSPLIT, $0-52
	MOVQ         dst+0(FP), BX
	MOVQ         q+8(FP), SI
	MOVQ         k+16(FP), R8
	MOVQ         ldk+24(FP), DX
	SHLQ         $2, DX
	MOVQ         cols+32(FP), CX
	MOVQ         rows+40(FP), R14
	VBROADCASTSS scale+48(FP), Y10
	MOVQ         CX, DI
	SUBQ         $16, DI

sc_group:
	CMPQ   R14, $4
	JLT    sc_single
	LEAQ   (R8)(DX*1), R9
	LEAQ   (R9)(DX*1), R10
	LEAQ   (R10)(DX*1), R11
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ   AX, AX
	CMPQ   DI, $0
	JLT    sc_g8

sc_g16:
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
	CMPQ        AX, DI
	JLE         sc_g16

sc_g8:
	CMPQ        AX, CX
	JGE         sc_gred
	VMOVUPS     (SI)(AX*4), Y8
	VFMADD231PS (R8)(AX*4), Y8, Y0
	VFMADD231PS (R9)(AX*4), Y8, Y1
	VFMADD231PS (R10)(AX*4), Y8, Y2
	VFMADD231PS (R11)(AX*4), Y8, Y3

sc_gred:
	VADDPS       Y4, Y0, Y0
	VADDPS       Y5, Y1, Y1
	VADDPS       Y6, Y2, Y2
	VADDPS       Y7, Y3, Y3
	VHADDPS      Y1, Y0, Y0
	VHADDPS      Y3, Y2, Y2
	VHADDPS      Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VMULPS       X10, X0, X0
	VMOVUPS      X0, (BX)
	ADDQ         $16, BX
	LEAQ         (R11)(DX*1), R8
	SUBQ         $4, R14
	JMP          sc_group

sc_single:
	TESTQ  R14, R14
	JEQ    sc_done
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	XORQ   AX, AX
	CMPQ   DI, $0
	JLT    sc_s8

sc_s16:
	VMOVUPS     (SI)(AX*4), Y8
	VMOVUPS     32(SI)(AX*4), Y9
	VFMADD231PS (R8)(AX*4), Y8, Y0
	VFMADD231PS 32(R8)(AX*4), Y9, Y1
	ADDQ        $16, AX
	CMPQ        AX, DI
	JLE         sc_s16

sc_s8:
	CMPQ        AX, CX
	JGE         sc_sred
	VMOVUPS     (SI)(AX*4), Y8
	VFMADD231PS (R8)(AX*4), Y8, Y0

sc_sred:
	VADDPS       Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VPERMILPS    $0x4e, X0, X1
	VADDPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VADDSS       X1, X0, X0
	VMULSS       X10, X0, X0
	VMOVSS       X0, (BX)
	ADDQ         $4, BX
	ADDQ         DX, R8
	DECQ         R14
	JMP          sc_single

sc_done:
	VZEROUPPER
	RET

// func scoresBF16AVX2(dst, q *float32, k *uint16, ldk, cols, rows int, scale float32)
// scoresAVX2 with bfloat16 keys, widened in registers.
TEXT ·scoresBF16AVX2(SB), NOSPLIT, $0-52
	MOVQ         dst+0(FP), BX
	MOVQ         q+8(FP), SI
	MOVQ         k+16(FP), R8
	MOVQ         ldk+24(FP), DX
	SHLQ         $1, DX
	MOVQ         cols+32(FP), CX
	MOVQ         rows+40(FP), R14
	VBROADCASTSS scale+48(FP), Y10
	MOVQ         CX, DI
	SUBQ         $16, DI

sb_group:
	CMPQ   R14, $4
	JLT    sb_single
	LEAQ   (R8)(DX*1), R9
	LEAQ   (R9)(DX*1), R10
	LEAQ   (R10)(DX*1), R11
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ   AX, AX
	CMPQ   DI, $0
	JLT    sb_g8

sb_g16:
	VMOVUPS     (SI)(AX*4), Y8
	VMOVUPS     32(SI)(AX*4), Y9
	VPMOVZXWD   (R8)(AX*2), Y11
	VPMOVZXWD   16(R8)(AX*2), Y12
	VPMOVZXWD   (R9)(AX*2), Y13
	VPMOVZXWD   16(R9)(AX*2), Y14
	VPSLLD      $16, Y11, Y11
	VPSLLD      $16, Y12, Y12
	VPSLLD      $16, Y13, Y13
	VPSLLD      $16, Y14, Y14
	VFMADD231PS Y11, Y8, Y0
	VFMADD231PS Y12, Y9, Y4
	VFMADD231PS Y13, Y8, Y1
	VFMADD231PS Y14, Y9, Y5
	VPMOVZXWD   (R10)(AX*2), Y11
	VPMOVZXWD   16(R10)(AX*2), Y12
	VPMOVZXWD   (R11)(AX*2), Y13
	VPMOVZXWD   16(R11)(AX*2), Y14
	VPSLLD      $16, Y11, Y11
	VPSLLD      $16, Y12, Y12
	VPSLLD      $16, Y13, Y13
	VPSLLD      $16, Y14, Y14
	VFMADD231PS Y11, Y8, Y2
	VFMADD231PS Y12, Y9, Y6
	VFMADD231PS Y13, Y8, Y3
	VFMADD231PS Y14, Y9, Y7
	ADDQ        $16, AX
	CMPQ        AX, DI
	JLE         sb_g16

sb_g8:
	CMPQ        AX, CX
	JGE         sb_gred
	VMOVUPS     (SI)(AX*4), Y8
	VPMOVZXWD   (R8)(AX*2), Y11
	VPMOVZXWD   (R9)(AX*2), Y12
	VPMOVZXWD   (R10)(AX*2), Y13
	VPMOVZXWD   (R11)(AX*2), Y14
	VPSLLD      $16, Y11, Y11
	VPSLLD      $16, Y12, Y12
	VPSLLD      $16, Y13, Y13
	VPSLLD      $16, Y14, Y14
	VFMADD231PS Y11, Y8, Y0
	VFMADD231PS Y12, Y8, Y1
	VFMADD231PS Y13, Y8, Y2
	VFMADD231PS Y14, Y8, Y3

sb_gred:
	VADDPS       Y4, Y0, Y0
	VADDPS       Y5, Y1, Y1
	VADDPS       Y6, Y2, Y2
	VADDPS       Y7, Y3, Y3
	VHADDPS      Y1, Y0, Y0
	VHADDPS      Y3, Y2, Y2
	VHADDPS      Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VMULPS       X10, X0, X0
	VMOVUPS      X0, (BX)
	ADDQ         $16, BX
	LEAQ         (R11)(DX*1), R8
	SUBQ         $4, R14
	JMP          sb_group

sb_single:
	TESTQ  R14, R14
	JEQ    sb_done
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	XORQ   AX, AX
	CMPQ   DI, $0
	JLT    sb_s8

sb_s16:
	VPMOVZXWD   (R8)(AX*2), Y11
	VPMOVZXWD   16(R8)(AX*2), Y12
	VPSLLD      $16, Y11, Y11
	VPSLLD      $16, Y12, Y12
	VFMADD231PS (SI)(AX*4), Y11, Y0
	VFMADD231PS 32(SI)(AX*4), Y12, Y1
	ADDQ        $16, AX
	CMPQ        AX, DI
	JLE         sb_s16

sb_s8:
	CMPQ        AX, CX
	JGE         sb_sred
	VPMOVZXWD   (R8)(AX*2), Y11
	VPSLLD      $16, Y11, Y11
	VFMADD231PS (SI)(AX*4), Y11, Y0

sb_sred:
	VADDPS       Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VPERMILPS    $0x4e, X0, X1
	VADDPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VADDSS       X1, X0, X0
	VMULSS       X10, X0, X0
	VMOVSS       X0, (BX)
	ADDQ         $4, BX
	ADDQ         DX, R8
	DECQ         R14
	JMP          sb_single

sb_done:
	VZEROUPPER
	RET

// func scores3AVX2(dst *float32, ldd int, q *float32, ldq int, k *float32, ldk, cols, rows int, scale float32)
// dst[i·ldd+j] = scale·Σ_{c<cols} q[i·ldq+c]·k[j·ldk+c] for i < 3, j < rows;
// rows is a multiple of 4. Each tile of 3 queries × 4 keys keeps its 12
// sums in Y0–Y11 (Y[4i+j]); the queries' columns are loaded into Y12–Y14
// once per step and each key's into Y15.
TEXT ·scores3AVX2(SB), NOSPLIT, $0-68
	MOVQ dst+0(FP), BX
	MOVQ ldd+8(FP), DI
	SHLQ $2, DI
	MOVQ q+16(FP), R8
	MOVQ ldq+24(FP), DX
	LEAQ (R8)(DX*4), R9
	LEAQ (R9)(DX*4), R10
	MOVQ k+32(FP), R11
	MOVQ ldk+40(FP), DX
	SHLQ $2, DX
	MOVQ cols+48(FP), CX
	MOVQ rows+56(FP), R14
	SHRQ $2, R14
	JEQ  s3_done

s3_group:
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

s3_loop:
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
	JLT         s3_loop

	// Query i's four key sums end up in X0, X4, X8 for i = 0, 1, 2.
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
	VBROADCASTSS scale+64(FP), X12
	VMULPS       X12, X0, X0
	VMULPS       X12, X4, X4
	VMULPS       X12, X8, X8
	VMOVUPS      X0, (BX)
	VMOVUPS      X4, (BX)(DI*1)
	VMOVUPS      X8, (BX)(DI*2)
	ADDQ         $16, BX
	LEAQ         (SI)(DX*1), R11
	DECQ         R14
	JNE          s3_group

s3_done:
	VZEROUPPER
	RET

// func mixAVX2(out, p, v *float32, ldv, cols, rows int)
// out[c] += Σ_{j<rows} p[j]·v[j·ldv+c] for c < cols; rows ≥ 1. Columns go in
// strips of 64 (eight accumulators), then 32 (two rows at a time), then 8
// (four rows at a time).
TEXT ·mixAVX2(SB), NOSPLIT, $0-48
	MOVQ out+0(FP), DI
	MOVQ p+8(FP), R8
	MOVQ v+16(FP), R9
	MOVQ ldv+24(FP), DX
	SHLQ $2, DX
	MOVQ cols+32(FP), CX
	MOVQ rows+40(FP), R10
	MOVQ R10, R11
	SUBQ $4, R11           // last start of four rows
	MOVQ R10, R12
	SUBQ $2, R12           // last start of two rows

mx_strip64:
	CMPQ    CX, $64
	JLT     mx_strip32
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS 64(DI), Y2
	VMOVUPS 96(DI), Y3
	VMOVUPS 128(DI), Y4
	VMOVUPS 160(DI), Y5
	VMOVUPS 192(DI), Y6
	VMOVUPS 224(DI), Y7
	MOVQ    R9, SI
	XORQ    AX, AX

mx_row64:
	VBROADCASTSS (R8)(AX*4), Y8
	VFMADD231PS  (SI), Y8, Y0
	VFMADD231PS  32(SI), Y8, Y1
	VFMADD231PS  64(SI), Y8, Y2
	VFMADD231PS  96(SI), Y8, Y3
	VFMADD231PS  128(SI), Y8, Y4
	VFMADD231PS  160(SI), Y8, Y5
	VFMADD231PS  192(SI), Y8, Y6
	VFMADD231PS  224(SI), Y8, Y7
	ADDQ         DX, SI
	INCQ         AX
	CMPQ         AX, R10
	JLT          mx_row64
	VMOVUPS      Y0, (DI)
	VMOVUPS      Y1, 32(DI)
	VMOVUPS      Y2, 64(DI)
	VMOVUPS      Y3, 96(DI)
	VMOVUPS      Y4, 128(DI)
	VMOVUPS      Y5, 160(DI)
	VMOVUPS      Y6, 192(DI)
	VMOVUPS      Y7, 224(DI)
	ADDQ         $256, DI
	ADDQ         $256, R9
	SUBQ         $64, CX
	JMP          mx_strip64

mx_strip32:
	CMPQ    CX, $32
	JLT     mx_strip8
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS 64(DI), Y2
	VMOVUPS 96(DI), Y3
	VXORPS  Y4, Y4, Y4
	VXORPS  Y5, Y5, Y5
	VXORPS  Y6, Y6, Y6
	VXORPS  Y7, Y7, Y7
	MOVQ    R9, SI
	XORQ    AX, AX
	CMPQ    R12, $0
	JLT     mx_row32_1

mx_row32_2:
	VBROADCASTSS (R8)(AX*4), Y8
	VBROADCASTSS 4(R8)(AX*4), Y9
	VFMADD231PS  (SI), Y8, Y0
	VFMADD231PS  32(SI), Y8, Y1
	VFMADD231PS  64(SI), Y8, Y2
	VFMADD231PS  96(SI), Y8, Y3
	VFMADD231PS  (SI)(DX*1), Y9, Y4
	VFMADD231PS  32(SI)(DX*1), Y9, Y5
	VFMADD231PS  64(SI)(DX*1), Y9, Y6
	VFMADD231PS  96(SI)(DX*1), Y9, Y7
	LEAQ         (SI)(DX*2), SI
	ADDQ         $2, AX
	CMPQ         AX, R12
	JLE          mx_row32_2

mx_row32_1:
	CMPQ         AX, R10
	JGE          mx_red32
	VBROADCASTSS (R8)(AX*4), Y8
	VFMADD231PS  (SI), Y8, Y0
	VFMADD231PS  32(SI), Y8, Y1
	VFMADD231PS  64(SI), Y8, Y2
	VFMADD231PS  96(SI), Y8, Y3

mx_red32:
	VADDPS  Y4, Y0, Y0
	VADDPS  Y5, Y1, Y1
	VADDPS  Y6, Y2, Y2
	VADDPS  Y7, Y3, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ    $128, DI
	ADDQ    $128, R9
	SUBQ    $32, CX

mx_strip8:
	CMPQ    CX, $8
	JLT     mx_done
	VMOVUPS (DI), Y0
	VXORPS  Y1, Y1, Y1
	VXORPS  Y2, Y2, Y2
	VXORPS  Y3, Y3, Y3
	MOVQ    R9, SI
	XORQ    AX, AX
	CMPQ    R11, $0
	JLT     mx_row8_1

mx_row8_4:
	VBROADCASTSS (R8)(AX*4), Y8
	VBROADCASTSS 4(R8)(AX*4), Y9
	VBROADCASTSS 8(R8)(AX*4), Y10
	VBROADCASTSS 12(R8)(AX*4), Y11
	LEAQ         (SI)(DX*2), R13
	VFMADD231PS  (SI), Y8, Y0
	VFMADD231PS  (SI)(DX*1), Y9, Y1
	VFMADD231PS  (R13), Y10, Y2
	VFMADD231PS  (R13)(DX*1), Y11, Y3
	LEAQ         (SI)(DX*4), SI
	ADDQ         $4, AX
	CMPQ         AX, R11
	JLE          mx_row8_4

mx_row8_1:
	CMPQ         AX, R10
	JGE          mx_red8
	VBROADCASTSS (R8)(AX*4), Y8
	VFMADD231PS  (SI), Y8, Y0
	ADDQ         DX, SI
	INCQ         AX
	JMP          mx_row8_1

mx_red8:
	VADDPS  Y1, Y0, Y0
	VADDPS  Y3, Y2, Y2
	VADDPS  Y2, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, DI
	ADDQ    $32, R9
	SUBQ    $8, CX
	JMP     mx_strip8

mx_done:
	VZEROUPPER
	RET

// func mixBF16AVX2(out, p *float32, v *uint16, ldv, cols, rows int)
// mixAVX2 with bfloat16 values, widened in registers; strips of 64 and 8.
TEXT ·mixBF16AVX2(SB), NOSPLIT, $0-48
	MOVQ out+0(FP), DI
	MOVQ p+8(FP), R8
	MOVQ v+16(FP), R9
	MOVQ ldv+24(FP), DX
	SHLQ $1, DX
	MOVQ cols+32(FP), CX
	MOVQ rows+40(FP), R10
	MOVQ R10, R11
	SUBQ $4, R11

mb_strip64:
	CMPQ    CX, $64
	JLT     mb_strip8
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS 64(DI), Y2
	VMOVUPS 96(DI), Y3
	VMOVUPS 128(DI), Y4
	VMOVUPS 160(DI), Y5
	VMOVUPS 192(DI), Y6
	VMOVUPS 224(DI), Y7
	MOVQ    R9, SI
	XORQ    AX, AX

mb_row64:
	VBROADCASTSS (R8)(AX*4), Y8
	VPMOVZXWD    (SI), Y9
	VPMOVZXWD    16(SI), Y10
	VPMOVZXWD    32(SI), Y11
	VPMOVZXWD    48(SI), Y12
	VPSLLD       $16, Y9, Y9
	VPSLLD       $16, Y10, Y10
	VPSLLD       $16, Y11, Y11
	VPSLLD       $16, Y12, Y12
	VFMADD231PS  Y9, Y8, Y0
	VFMADD231PS  Y10, Y8, Y1
	VFMADD231PS  Y11, Y8, Y2
	VFMADD231PS  Y12, Y8, Y3
	VPMOVZXWD    64(SI), Y9
	VPMOVZXWD    80(SI), Y10
	VPMOVZXWD    96(SI), Y11
	VPMOVZXWD    112(SI), Y12
	VPSLLD       $16, Y9, Y9
	VPSLLD       $16, Y10, Y10
	VPSLLD       $16, Y11, Y11
	VPSLLD       $16, Y12, Y12
	VFMADD231PS  Y9, Y8, Y4
	VFMADD231PS  Y10, Y8, Y5
	VFMADD231PS  Y11, Y8, Y6
	VFMADD231PS  Y12, Y8, Y7
	ADDQ         DX, SI
	INCQ         AX
	CMPQ         AX, R10
	JLT          mb_row64
	VMOVUPS      Y0, (DI)
	VMOVUPS      Y1, 32(DI)
	VMOVUPS      Y2, 64(DI)
	VMOVUPS      Y3, 96(DI)
	VMOVUPS      Y4, 128(DI)
	VMOVUPS      Y5, 160(DI)
	VMOVUPS      Y6, 192(DI)
	VMOVUPS      Y7, 224(DI)
	ADDQ         $256, DI
	ADDQ         $128, R9
	SUBQ         $64, CX
	JMP          mb_strip64

mb_strip8:
	CMPQ    CX, $8
	JLT     mb_done
	VMOVUPS (DI), Y0
	VXORPS  Y1, Y1, Y1
	VXORPS  Y2, Y2, Y2
	VXORPS  Y3, Y3, Y3
	MOVQ    R9, SI
	XORQ    AX, AX
	CMPQ    R11, $0
	JLT     mb_row8_1

mb_row8_4:
	VBROADCASTSS (R8)(AX*4), Y8
	VBROADCASTSS 4(R8)(AX*4), Y9
	VBROADCASTSS 8(R8)(AX*4), Y10
	VBROADCASTSS 12(R8)(AX*4), Y11
	LEAQ         (SI)(DX*2), R13
	VPMOVZXWD    (SI), Y12
	VPMOVZXWD    (SI)(DX*1), Y13
	VPMOVZXWD    (R13), Y14
	VPMOVZXWD    (R13)(DX*1), Y15
	VPSLLD       $16, Y12, Y12
	VPSLLD       $16, Y13, Y13
	VPSLLD       $16, Y14, Y14
	VPSLLD       $16, Y15, Y15
	VFMADD231PS  Y12, Y8, Y0
	VFMADD231PS  Y13, Y9, Y1
	VFMADD231PS  Y14, Y10, Y2
	VFMADD231PS  Y15, Y11, Y3
	LEAQ         (SI)(DX*4), SI
	ADDQ         $4, AX
	CMPQ         AX, R11
	JLE          mb_row8_4

mb_row8_1:
	CMPQ         AX, R10
	JGE          mb_red8
	VBROADCASTSS (R8)(AX*4), Y8
	VPMOVZXWD    (SI), Y12
	VPSLLD       $16, Y12, Y12
	VFMADD231PS  Y12, Y8, Y0
	ADDQ         DX, SI
	INCQ         AX
	JMP          mb_row8_1

mb_red8:
	VADDPS  Y1, Y0, Y0
	VADDPS  Y3, Y2, Y2
	VADDPS  Y2, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, DI
	ADDQ    $16, R9
	SUBQ    $8, CX
	JMP     mb_strip8

mb_done:
	VZEROUPPER
	RET

// func mix3AVX2(out *float32, ldo int, p *float32, ldp int, v *float32, ldv, cols, rows int)
// out[i·ldo+c] += Σ_{j<rows} p[i·ldp+j]·v[j·ldv+c] for i < 3, c < cols; cols
// is a multiple of 32 and rows ≥ 1. Each strip of 32 columns keeps the
// three queries' sums in Y0–Y11 (Y[4i+c]); a value row's first three
// vectors are loaded into Y12–Y14 and shared, its fourth read by the FMAs.
TEXT ·mix3AVX2(SB), NOSPLIT, $0-64
	MOVQ out+0(FP), BX
	MOVQ ldo+8(FP), DI
	SHLQ $2, DI
	MOVQ p+16(FP), R8
	MOVQ ldp+24(FP), DX
	LEAQ (R8)(DX*4), R9
	LEAQ (R9)(DX*4), R10
	MOVQ v+32(FP), R11
	MOVQ ldv+40(FP), DX
	SHLQ $2, DX
	MOVQ cols+48(FP), CX
	MOVQ rows+56(FP), R12

m3_strip:
	CMPQ    CX, $32
	JLT     m3_done
	VMOVUPS (BX), Y0
	VMOVUPS 32(BX), Y1
	VMOVUPS 64(BX), Y2
	VMOVUPS 96(BX), Y3
	VMOVUPS (BX)(DI*1), Y4
	VMOVUPS 32(BX)(DI*1), Y5
	VMOVUPS 64(BX)(DI*1), Y6
	VMOVUPS 96(BX)(DI*1), Y7
	VMOVUPS (BX)(DI*2), Y8
	VMOVUPS 32(BX)(DI*2), Y9
	VMOVUPS 64(BX)(DI*2), Y10
	VMOVUPS 96(BX)(DI*2), Y11
	MOVQ    R11, SI
	XORQ    AX, AX

m3_row:
	VMOVUPS      (SI), Y12
	VMOVUPS      32(SI), Y13
	VMOVUPS      64(SI), Y14
	VBROADCASTSS (R8)(AX*4), Y15
	VFMADD231PS  Y12, Y15, Y0
	VFMADD231PS  Y13, Y15, Y1
	VFMADD231PS  Y14, Y15, Y2
	VFMADD231PS  96(SI), Y15, Y3
	VBROADCASTSS (R9)(AX*4), Y15
	VFMADD231PS  Y12, Y15, Y4
	VFMADD231PS  Y13, Y15, Y5
	VFMADD231PS  Y14, Y15, Y6
	VFMADD231PS  96(SI), Y15, Y7
	VBROADCASTSS (R10)(AX*4), Y15
	VFMADD231PS  Y12, Y15, Y8
	VFMADD231PS  Y13, Y15, Y9
	VFMADD231PS  Y14, Y15, Y10
	VFMADD231PS  96(SI), Y15, Y11
	ADDQ         DX, SI
	INCQ         AX
	CMPQ         AX, R12
	JLT          m3_row
	VMOVUPS      Y0, (BX)
	VMOVUPS      Y1, 32(BX)
	VMOVUPS      Y2, 64(BX)
	VMOVUPS      Y3, 96(BX)
	VMOVUPS      Y4, (BX)(DI*1)
	VMOVUPS      Y5, 32(BX)(DI*1)
	VMOVUPS      Y6, 64(BX)(DI*1)
	VMOVUPS      Y7, 96(BX)(DI*1)
	VMOVUPS      Y8, (BX)(DI*2)
	VMOVUPS      Y9, 32(BX)(DI*2)
	VMOVUPS      Y10, 64(BX)(DI*2)
	VMOVUPS      Y11, 96(BX)(DI*2)
	ADDQ         $128, BX
	ADDQ         $128, R11
	SUBQ         $32, CX
	JMP          m3_strip

m3_done:
	VZEROUPPER
	RET

// TRANSPOSE4x8 stores the 8 × 4 tile held as four columns a, b, c, d (8
// queries each, for 4 consecutive keys) as 8 rows of 4 floats: row i goes
// to (R14), then R14 advances by DI. a–d and t0–t3 are clobbered.
#define TRANSPOSE4x8(a, b, c, d, t0, t1, t2, t3) \
	VUNPCKLPS    b, a, t0 \
	VUNPCKHPS    b, a, t1 \
	VUNPCKLPS    d, c, a \
	VUNPCKHPS    d, c, b \
	VSHUFPS      $0x44, a, t0, t2 \
	VSHUFPS      $0xEE, a, t0, t3 \
	VSHUFPS      $0x44, b, t1, c \
	VSHUFPS      $0xEE, b, t1, d \
	VEXTRACTF128 $0, t2, (R14) \
	ADDQ         DI, R14 \
	VEXTRACTF128 $0, t3, (R14) \
	ADDQ         DI, R14 \
	VEXTRACTF128 $0, c, (R14) \
	ADDQ         DI, R14 \
	VEXTRACTF128 $0, d, (R14) \
	ADDQ         DI, R14 \
	VEXTRACTF128 $1, t2, (R14) \
	ADDQ         DI, R14 \
	VEXTRACTF128 $1, t3, (R14) \
	ADDQ         DI, R14 \
	VEXTRACTF128 $1, c, (R14) \
	ADDQ         DI, R14 \
	VEXTRACTF128 $1, d, (R14) \
	ADDQ         DI, R14

// func scoresT24AVX2(dst *float32, ldd int, qt, k *float32, ldk, d, rows int, scale float32)
// dst[i·ldd+j] = scale·Σ_{c<d} qt[24c+i]·k[j·ldk+c] for i < 24, j < rows:
// 24 queries, packed transposed in qt, against rows keys, rows a multiple
// of 4 and d ≥ 1. Each tile of 4 keys × 24 queries keeps its sums in
// Y0–Y11 (Y[3j+h]: key j with queries 8h to 8h+7); every step loads one
// column of the queries and broadcasts one element of each key, so no
// horizontal sums are needed, only a transpose of the tile at the end.
TEXT ·scoresT24AVX2(SB), NOSPLIT, $0-60
	MOVQ dst+0(FP), BX
	MOVQ ldd+8(FP), DI
	SHLQ $2, DI
	MOVQ qt+16(FP), R8
	MOVQ k+24(FP), R9
	MOVQ ldk+32(FP), DX
	SHLQ $2, DX
	MOVQ d+40(FP), CX
	MOVQ rows+48(FP), R13
	SHRQ $2, R13
	JEQ  t24_done

t24_group:
	LEAQ   (R9)(DX*1), R10
	LEAQ   (R10)(DX*1), R11
	LEAQ   (R11)(DX*1), R12
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
	MOVQ   R8, SI
	XORQ   AX, AX

t24_loop:
	VMOVUPS      (SI), Y12
	VMOVUPS      32(SI), Y13
	VMOVUPS      64(SI), Y14
	VBROADCASTSS (R9)(AX*4), Y15
	VFMADD231PS  Y12, Y15, Y0
	VFMADD231PS  Y13, Y15, Y1
	VFMADD231PS  Y14, Y15, Y2
	VBROADCASTSS (R10)(AX*4), Y15
	VFMADD231PS  Y12, Y15, Y3
	VFMADD231PS  Y13, Y15, Y4
	VFMADD231PS  Y14, Y15, Y5
	VBROADCASTSS (R11)(AX*4), Y15
	VFMADD231PS  Y12, Y15, Y6
	VFMADD231PS  Y13, Y15, Y7
	VFMADD231PS  Y14, Y15, Y8
	VBROADCASTSS (R12)(AX*4), Y15
	VFMADD231PS  Y12, Y15, Y9
	VFMADD231PS  Y13, Y15, Y10
	VFMADD231PS  Y14, Y15, Y11
	ADDQ         $96, SI
	INCQ         AX
	CMPQ         AX, CX
	JLT          t24_loop

	VBROADCASTSS scale+56(FP), Y15
	VMULPS       Y15, Y0, Y0
	VMULPS       Y15, Y1, Y1
	VMULPS       Y15, Y2, Y2
	VMULPS       Y15, Y3, Y3
	VMULPS       Y15, Y4, Y4
	VMULPS       Y15, Y5, Y5
	VMULPS       Y15, Y6, Y6
	VMULPS       Y15, Y7, Y7
	VMULPS       Y15, Y8, Y8
	VMULPS       Y15, Y9, Y9
	VMULPS       Y15, Y10, Y10
	VMULPS       Y15, Y11, Y11
	MOVQ         BX, R14
	TRANSPOSE4x8(Y0, Y3, Y6, Y9, Y12, Y13, Y14, Y15)
	TRANSPOSE4x8(Y1, Y4, Y7, Y10, Y12, Y13, Y14, Y15)
	TRANSPOSE4x8(Y2, Y5, Y8, Y11, Y12, Y13, Y14, Y15)
	ADDQ         $16, BX
	LEAQ         (R12)(DX*1), R9
	DECQ         R13
	JNE          t24_group

t24_done:
	VZEROUPPER
	RET
