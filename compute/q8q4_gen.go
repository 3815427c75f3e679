//go:build ignore

// q8q4_gen writes the generated parts of the Fast-mode Q8_0 and Q4_0
// kernels: q8q4_vnni_amd64.s and q8q4_avx2_amd64.s, and the Go
// declarations and dispatch tables in q8q4_vnni_kern_amd64.go. Run it with
// `go generate ./compute` after changing it.
//
// VNNI decode tiles (q8q4<type>VNNI<R>x<T>, R ≤ 3 weight rows × T ≤ 4
// tokens) read raw weight rows and activations that q8q4PrepVNNI laid out
// per group of 4 blocks (128 columns) and token in 256 bytes: the 4
// blocks' first halves (64 int8), their second halves, the 4 activation
// scales each repeated 4 times (16 float32) and the offset correction
// −k·(half-block sums) (16 int32). A weight row's group is unpacked the
// same way in registers — lanes 4j…4j+3 of every vector belong to block j
// — once per tile, so one VPDPBUSD per half sums 8 products per lane and
// the float scaling runs once per 128 products.
//
// VNNI prefill tiles (q8q4P8VNNI<R>x<T>, R ≤ 2 × T ≤ 4) read weights and
// activations widened to pairs of groups (see kernel8), 2 lanes per block,
// so the float scaling runs once per 256 products.
//
// AVX2 kernels (q8q4<type>AVX2x<T>) take one weight row × T ≤ 4 tokens.
package main

import (
	"bytes"
	"fmt"
	"go/format"
	"os"
	"strings"
)

const maxR, maxT = 3, 4

type gen struct {
	b    bytes.Buffer
	name string // the function being written
}

func (g *gen) p(format string, args ...any) { fmt.Fprintf(&g.b, format+"\n", args...) }

// rowAddr returns the addressing of weight row r at displacement off.
func rowAddr(r, off int) string {
	switch r {
	case 0:
		return fmt.Sprintf("%d(SI)", off)
	case 1:
		return fmt.Sprintf("%d(SI)(BX*1)", off)
	case 2:
		return fmt.Sprintf("%d(SI)(BX*2)", off)
	}
	return fmt.Sprintf("%d(SI)(R9*1)", off)
}

// yAddr returns the address of y for row r, token i of the tile.
func yAddr(r, i int) string {
	switch i {
	case 0:
		return fmt.Sprintf("%d(DI)", 4*r)
	case 1:
		return fmt.Sprintf("%d(DI)(R8*1)", 4*r)
	case 2:
		return fmt.Sprintf("%d(DI)(R8*2)", 4*r)
	}
	return fmt.Sprintf("%d(DI)(R13*1)", 4*r)
}

// kernName names the decode tile kernel of R rows × T tokens; kind is
// "Q4_0" or "Q8_0".
func kernName(kind string, r, t int) string {
	return fmt.Sprintf("q8q4%sVNNI%dx%d", kind, r, t)
}

// rowPrep loads the group of weight row r into Z(dst), Z(dst+1), Z(dst+2):
// the 4 blocks' unsigned first halves, second halves and scales (each
// repeated 4 times), from the raw row (kind Q4_0 or Q8_0, row addressing
// addr).
func (g *gen) rowPrep(kind string, r int, addr func(r, off int) string, dst int) {
	lo, hi, dw := dst, dst+1, dst+2
	switch kind {
	case "Q8_0":
		g.p("\tVMOVDQU32 %s, X%d", addr(r, 2), lo)
		for j := 1; j < 4; j++ {
			g.p("\tVINSERTI32X4 $%d, %s, Z%d, Z%d", j, addr(r, 34*j+2), lo, lo)
		}
		g.p("\tVMOVDQU32 %s, X%d", addr(r, 18), hi)
		for j := 1; j < 4; j++ {
			g.p("\tVINSERTI32X4 $%d, %s, Z%d, Z%d", j, addr(r, 34*j+18), hi, hi)
		}
		g.p("\tVPXORD.BCST q8q4Bytes<>+4(SB), Z%d, Z%d", lo, lo)
		g.p("\tVPXORD.BCST q8q4Bytes<>+4(SB), Z%d, Z%d", hi, hi)
		g.p("\tVMOVDQU16 %s, Z%d", addr(r, 0), dw)
		g.p("\tVPERMT2W %s, Z31, Z%d", addr(r, 64), dw)
	case "Q4_0":
		g.p("\tVMOVDQU32 %s, X%d", addr(r, 2), lo)
		for j := 1; j < 4; j++ {
			g.p("\tVINSERTI32X4 $%d, %s, Z%d, Z%d", j, addr(r, 18*j+2), lo, lo)
		}
		g.p("\tVPSRLW $4, Z%d, Z%d", lo, hi)
		g.p("\tVPANDD.BCST q8q4Bytes<>+0(SB), Z%d, Z%d", lo, lo)
		g.p("\tVPANDD.BCST q8q4Bytes<>+0(SB), Z%d, Z%d", hi, hi)
		g.p("\tVPERMW %s, Z31, Z%d", addr(r, 0), dw)
	}
	g.p("\tVCVTPH2PS Y%d, Z%d", dw, dw)
}

// loadIdx loads the scale index vector of kind into Z31.
func (g *gen) loadIdx(kind string) {
	switch kind {
	case "Q4_0":
		g.p("\tVMOVDQU32 q8q4IdxQ4<>(SB), Z31")
	case "Q8_0":
		g.p("\tVMOVDQU32 q8q4IdxQ8<>(SB), Z31")
	}
}

// kernel writes one tile kernel:
//
//	func(y *float32, ldy int, w *byte, rb int, tp *byte, groups, tiles int)
//
// y[(k·T+i)·ldy+r] = Σ over groups of weight row r (at w+r·rb) against
// token i of tile k, for r < R, i < T, k < tiles; the tiles of tp follow
// each other, each groups·T·256 bytes.
func (g *gen) kernel(kind string, R, T int) {
	name := kernName(kind, R, T)
	gb := map[string]int{"Q4_0": 72, "Q8_0": 136}[kind]
	row := func(r int) int { return 3 * r }
	const alo, ahi, da, ini = 3 * maxR, 3*maxR + 1, 3*maxR + 2, 3*maxR + 3
	acc := func(r, i int) int { return 3*maxR + 4 + r*T + i }
	if acc(R-1, T-1) >= 28 {
		panic("too many registers")
	}
	g.p("// func %s(y *float32, ldy int, w *byte, rb int, tp *byte, groups, tiles, rtiles int)", name)
	g.p("TEXT ·%s(SB), NOSPLIT, $0-64", name)
	g.p("\tMOVQ y+0(FP), DI")
	g.p("\tMOVQ ldy+8(FP), R8")
	g.p("\tSHLQ $2, R8")
	g.p("\tLEAQ (R8)(R8*2), R13")
	g.p("\tMOVQ w+16(FP), R12")
	g.p("\tMOVQ rb+24(FP), BX")
	g.p("\tLEAQ (BX)(BX*2), R9")
	g.p("\tMOVQ tp+32(FP), DX")
	g.p("\tMOVQ groups+40(FP), R10")
	g.p("\tMOVQ tiles+48(FP), R11")
	g.loadIdx(kind)
	g.p("%s_rtile:", name)
	g.p("%s_tile:", name)
	g.p("\tMOVQ R12, SI")
	g.p("\tMOVQ R10, CX")
	for r := range R {
		for i := range T {
			g.p("\tVPXORD Z%d, Z%d, Z%d", acc(r, i), acc(r, i), acc(r, i))
		}
	}
	g.p("%s_group:", name)
	// Ask for the same group of the rows two tiles ahead, into L2: the
	// tile loop jumps between rows, which the hardware prefetchers follow
	// poorly (as in the K-quant kernels). Prefetches past the matrix never
	// fault.
	g.p("\tLEAQ (SI)(R9*2), AX")
	for r := range R {
		for off := 0; off < gb; off += 64 {
			g.p("\tPREFETCHT1 %s", strings.Replace(rowAddr(r, off), "SI", "AX", 1))
		}
	}
	for r := range R {
		g.rowPrep(kind, r, rowAddr, row(r))
	}
	tmp := []int{28, 29, 30}
	k := 0
	for i := range T {
		g.p("\tVMOVDQU32 %d(DX), Z%d", 256*i, alo)
		g.p("\tVMOVDQU32 %d(DX), Z%d", 256*i+64, ahi)
		g.p("\tVMOVUPS %d(DX), Z%d", 256*i+128, da)
		g.p("\tVMOVDQU32 %d(DX), Z%d", 256*i+192, ini)
		for r := range R {
			z := tmp[k%len(tmp)]
			k++
			g.p("\tVMOVDQA32 Z%d, Z%d", ini, z)
			g.p("\tVPDPBUSD Z%d, Z%d, Z%d", alo, row(r), z)
			g.p("\tVPDPBUSD Z%d, Z%d, Z%d", ahi, row(r)+1, z)
			g.p("\tVCVTDQ2PS Z%d, Z%d", z, z)
			g.p("\tVMULPS Z%d, Z%d, Z%d", row(r)+2, z, z)
			g.p("\tVFMADD231PS Z%d, Z%d, Z%d", da, z, acc(r, i))
		}
	}
	g.p("\tADDQ $%d, SI", gb)
	g.p("\tADDQ $%d, DX", 256*T)
	g.p("\tDECQ CX")
	g.p("\tJNZ %s_group", name)
	g.reduceStore(R, T, acc, false)
	g.p("\tDECQ R11")
	g.p("\tJNZ %s_tile", name)
	// Next tile of R rows: the same tokens.
	g.p("\tADDQ $%d, y+0(FP)", 4*R)
	g.p("\tMOVQ y+0(FP), DI")
	g.p("\tMOVQ tp+32(FP), DX")
	g.p("\tMOVQ tiles+48(FP), R11")
	switch R {
	case 1:
		g.p("\tADDQ BX, R12")
	case 2:
		g.p("\tLEAQ (R12)(BX*2), R12")
	case 3:
		g.p("\tADDQ R9, R12")
	}
	g.p("\tDECQ rtiles+56(FP)")
	g.p("\tJNZ %s_rtile", name)
	g.p("\tVZEROUPPER")
	g.p("\tRET")
	g.p("")
}

// prepW writes q8q4PrepW<kind>: for groups groups of one raw weight row
// at w, 192 bytes at dst+g·stride (the unsigned halves and the scales of
// rowPrep).
//
//	func(dst *byte, stride int, w *byte, groups int)
func (g *gen) prepW(kind string) {
	name := "q8q4PrepW" + kind
	gb := map[string]int{"Q4_0": 72, "Q8_0": 136}[kind]
	g.p("// func %s(dst *byte, stride int, w *byte, groups int)", name)
	g.p("TEXT ·%s(SB), NOSPLIT, $0-32", name)
	g.p("\tMOVQ dst+0(FP), DI")
	g.p("\tMOVQ stride+8(FP), R8")
	g.p("\tMOVQ w+16(FP), SI")
	g.p("\tMOVQ groups+24(FP), CX")
	g.loadIdx(kind)
	g.p("\tTESTQ CX, CX")
	g.p("\tJEQ %s_done", name)
	g.p("%s_loop:", name)
	g.rowPrep(kind, 0, rowAddr, 0)
	g.p("\tVMOVDQU32 Z0, (DI)")
	g.p("\tVMOVDQU32 Z1, 64(DI)")
	g.p("\tVMOVUPS Z2, 128(DI)")
	g.p("\tADDQ $%d, SI", gb)
	g.p("\tADDQ R8, DI")
	g.p("\tDECQ CX")
	g.p("\tJNZ %s_loop", name)
	g.p("%s_done:", name)
	g.p("\tVZEROUPPER")
	g.p("\tRET")
	g.p("")
}

var kinds = []string{"Q4_0", "Q8_0"}

// Pairs of groups (8 blocks, 256 columns) in the widened layout of the
// prefill kernels: lanes 2j, 2j+1 of every vector belong to block j, so
// four VPDPBUSDs (parts p = 0…3: values 8p…8p+7 of each block) sum 16
// products per lane before one float scaling per 256 products. A token's
// pair takes 384 bytes (4 parts, the scales each repeated twice, the
// offset corrections), a weight row's 320 (4 parts, the scales).
const maxR8, maxT8 = 2, 4

// kernel8 writes q8q4P8VNNI<R>x<T>: the tile kernel of kernel over widened
// pairs (groups counts pairs; R·320 weight bytes and T·384 token bytes
// per pair); rb ≠ 0 adds the sums to y instead of storing them.
func (g *gen) kernel8(R, T int) {
	name := fmt.Sprintf("q8q4P8VNNI%dx%d", R, T)
	g.name = name
	wr := func(r, p int) int { return 5*r + p } // p = 4: scales
	const tok = 5 * maxR8                       // Z10…Z15: 4 parts, scales, offsets
	acc := func(r, i int) int { return tok + 6 + r*T + i }
	g.p("// func %s(y *float32, ldy int, w *byte, rb int, tp *byte, groups, tiles int)", name)
	g.p("TEXT ·%s(SB), NOSPLIT, $0-56", name)
	g.p("\tMOVQ y+0(FP), DI")
	g.p("\tMOVQ ldy+8(FP), R8")
	g.p("\tSHLQ $2, R8")
	g.p("\tLEAQ (R8)(R8*2), R13")
	g.p("\tMOVQ w+16(FP), R12")
	g.p("\tMOVQ rb+24(FP), BX")
	g.p("\tMOVQ tp+32(FP), DX")
	g.p("\tMOVQ groups+40(FP), R10")
	g.p("\tMOVQ tiles+48(FP), R11")
	g.p("%s_tile:", name)
	g.p("\tMOVQ R12, SI")
	g.p("\tMOVQ R10, CX")
	for r := range R {
		for i := range T {
			g.p("\tVPXORD Z%d, Z%d, Z%d", acc(r, i), acc(r, i), acc(r, i))
		}
	}
	g.p("%s_group:", name)
	for r := range R {
		for p := range 5 {
			g.p("\tVMOVDQU32 %d(SI), Z%d", 320*r+64*p, wr(r, p))
		}
	}
	tmp := []int{28, 29, 30}
	k := 0
	for i := range T {
		for p := range 6 {
			g.p("\tVMOVDQU32 %d(DX), Z%d", 384*i+64*p, tok+p)
		}
		for r := range R {
			z := tmp[k%len(tmp)]
			k++
			g.p("\tVMOVDQA32 Z%d, Z%d", tok+5, z)
			for p := range 4 {
				g.p("\tVPDPBUSD Z%d, Z%d, Z%d", tok+p, wr(r, p), z)
			}
			g.p("\tVCVTDQ2PS Z%d, Z%d", z, z)
			g.p("\tVMULPS Z%d, Z%d, Z%d", wr(r, 4), z, z)
			g.p("\tVFMADD231PS Z%d, Z%d, Z%d", tok+4, z, acc(r, i))
		}
	}
	g.p("\tADDQ $%d, SI", 320*R)
	g.p("\tADDQ $%d, DX", 384*T)
	g.p("\tDECQ CX")
	g.p("\tJNZ %s_group", name)
	g.reduceStore(R, T, acc, true)
	g.p("\tDECQ R11")
	g.p("\tJNZ %s_tile", name)
	g.p("\tVZEROUPPER")
	g.p("\tRET")
	g.p("")
}

// reduceStore sums each accumulator's lanes into y and advances DI past
// the tile's T tokens.
// With add (the P8 kernels, BX ≠ 0 at run time) the sums are added to y.
func (g *gen) reduceStore(R, T int, acc func(r, i int) int, add bool) {
	for r := range R {
		for i := range T {
			a := acc(r, i)
			g.p("\tVEXTRACTF32X8 $1, Z%d, Y28", a)
			g.p("\tVADDPS Y28, Y%d, Y28", a)
			g.p("\tVEXTRACTF32X4 $1, Y28, X29")
			g.p("\tVADDPS X29, X28, X28")
			g.p("\tVPERMILPS $0x4e, X28, X29")
			g.p("\tVADDPS X29, X28, X28")
			g.p("\tVPERMILPS $0xb1, X28, X29")
			g.p("\tVADDSS X29, X28, X28")
			if add {
				lbl := fmt.Sprintf("%s_st%d_%d", g.name, r, i)
				g.p("\tTESTQ BX, BX")
				g.p("\tJEQ %s", lbl)
				g.p("\tVADDSS %s, X28, X28", yAddr(r, i))
				g.p("%s:", lbl)
			}
			g.p("\tVMOVSS X28, %s", yAddr(r, i))
		}
	}
	switch T {
	case 3:
		g.p("\tADDQ R13, DI")
	default:
		g.p("\tLEAQ (DI)(R8*%d), DI", T)
	}
}

// avx2Kernel writes q8q4<kind>AVX2x<T>, the AVX2 kernel of one weight row
// × T tokens over nb blocks:
//
//	func(y *float32, ldy int, w *byte, aq *int8, ad *float32, cols, nb int)
//
// y[i·ldy] = Σ_b d_b·e_{i,b}·Σ_j w_bj·a_ij for i < T, where token i's
// values are at aq+i·cols and its scales at ad+i·cols/32·4. Weights are
// made signed (Q4_0: q−8), their magnitudes the unsigned operand of
// VPMADDUBSW and the activations, given the weights' signs, the signed
// one (no pair can saturate: 2·128·127 < 2¹⁵).
func (g *gen) avx2Kernel(kind string, T int) {
	name := fmt.Sprintf("q8q4%sAVX2x%d", kind, T)
	bb := map[string]int{"Q4_0": 18, "Q8_0": 34}[kind]
	tok := func(base, ld, ld3 string, i int) string {
		switch i {
		case 0:
			return fmt.Sprintf("(%s)", base)
		case 1:
			return fmt.Sprintf("(%s)(%s*1)", base, ld)
		case 2:
			return fmt.Sprintf("(%s)(%s*2)", base, ld)
		}
		return fmt.Sprintf("(%s)(%s*1)", base, ld3)
	}
	g.p("// func %s(y *float32, ldy int, w *byte, aq *int8, ad *float32, cols, nb int)", name)
	g.p("TEXT ·%s(SB), NOSPLIT, $0-56", name)
	g.p("\tMOVQ w+16(FP), SI")
	g.p("\tMOVQ aq+24(FP), DI")
	g.p("\tMOVQ ad+32(FP), DX")
	g.p("\tMOVQ cols+40(FP), R8")
	g.p("\tLEAQ (R8)(R8*2), R9")
	g.p("\tMOVQ R8, R10")
	g.p("\tSHRQ $3, R10")
	g.p("\tLEAQ (R10)(R10*2), R11")
	g.p("\tMOVQ nb+48(FP), CX")
	g.p("\tVPCMPEQW Y15, Y15, Y15")
	g.p("\tVPSRLW $15, Y15, Y15") // 16-bit ones
	if kind == "Q4_0" {
		g.p("\tVPBROADCASTB q8q4Bytes<>+0(SB), Y14")
		g.p("\tVPBROADCASTB q8q4Bytes<>+8(SB), Y13")
	}
	for i := range T {
		g.p("\tVXORPS Y%d, Y%d, Y%d", i, i, i)
	}
	g.p("%s_loop:", name)
	if kind == "Q8_0" {
		g.p("\tVMOVDQU 2(SI), Y4")
	} else {
		g.p("\tVMOVDQU 2(SI), X4")
		g.p("\tVPSRLW $4, X4, X5")
		g.p("\tVINSERTI128 $1, X5, Y4, Y4")
		g.p("\tVPAND Y14, Y4, Y4")
		g.p("\tVPSUBB Y13, Y4, Y4")
	}
	g.p("\tVPSIGNB Y4, Y4, Y5")
	g.p("\tMOVWLZX (SI), AX")
	g.p("\tVMOVD AX, X6")
	g.p("\tVCVTPH2PS X6, X6")
	g.p("\tVBROADCASTSS X6, Y6")
	for i := range T {
		g.p("\tVMOVDQU %s, Y7", tok("DI", "R8", "R9", i))
		g.p("\tVPSIGNB Y4, Y7, Y7")
		g.p("\tVPMADDUBSW Y7, Y5, Y7")
		g.p("\tVPMADDWD Y15, Y7, Y7")
		g.p("\tVCVTDQ2PS Y7, Y7")
		g.p("\tVBROADCASTSS %s, Y8", tok("DX", "R10", "R11", i))
		g.p("\tVMULPS Y6, Y8, Y8")
		g.p("\tVFMADD231PS Y8, Y7, Y%d", i)
	}
	g.p("\tADDQ $%d, SI", bb)
	g.p("\tADDQ $32, DI")
	g.p("\tADDQ $4, DX")
	g.p("\tDECQ CX")
	g.p("\tJNZ %s_loop", name)
	g.p("\tMOVQ y+0(FP), DI")
	g.p("\tMOVQ ldy+8(FP), R8")
	g.p("\tSHLQ $2, R8")
	g.p("\tLEAQ (R8)(R8*2), R9")
	for i := range T {
		g.p("\tVEXTRACTF128 $1, Y%d, X8", i)
		g.p("\tVADDPS X8, X%d, X8", i)
		g.p("\tVPERMILPS $0x4e, X8, X9")
		g.p("\tVADDPS X9, X8, X8")
		g.p("\tVPERMILPS $0xb1, X8, X9")
		g.p("\tVADDSS X9, X8, X8")
		g.p("\tVMOVSS X8, %s", tok("DI", "R8", "R9", i))
	}
	g.p("\tVZEROUPPER")
	g.p("\tRET")
	g.p("")
}

func main() {
	var s gen
	s.p("// Code generated by q8q4_gen.go; DO NOT EDIT.")
	s.p("")
	s.p("//go:build amd64 && !purego")
	s.p("")
	s.p("#include \"textflag.h\"")
	s.p("")
	s.p("// Byte constants, broadcast: 0x0f (Q4_0 nibble mask), 0x80 (Q8_0 sign flip).")
	s.p("DATA q8q4Bytes<>+0(SB)/4, $0x0f0f0f0f")
	s.p("DATA q8q4Bytes<>+4(SB)/4, $0x80808080")
	s.p("GLOBL q8q4Bytes<>(SB), RODATA|NOPTR, $8")
	s.p("")
	// Word indices of the 4 scales of a group, each repeated 4 times.
	for _, c := range []struct {
		name string
		bb   int
	}{{"q8q4IdxQ4", 18}, {"q8q4IdxQ8", 34}} {
		s.p("// The half-precision scales of a group of 4 blocks of %d bytes, word indices.", c.bb)
		for j := range 32 {
			idx := 0
			if j < 16 {
				idx = j / 4 * c.bb / 2
			}
			s.p("DATA %s<>+%d(SB)/2, $%d", c.name, 2*j, idx)
		}
		s.p("GLOBL %s<>(SB), RODATA|NOPTR, $64", c.name)
		s.p("")
	}
	for _, kind := range kinds {
		for R := 1; R <= maxR; R++ {
			for T := 1; T <= maxT; T++ {
				s.kernel(kind, R, T)
			}
		}
	}
	s.prepW("Q4_0")
	s.prepW("Q8_0")
	for R := 1; R <= maxR8; R++ {
		for T := 1; T <= maxT8; T++ {
			s.kernel8(R, T)
		}
	}
	if err := os.WriteFile("q8q4_vnni_amd64.s", s.b.Bytes(), 0o644); err != nil {
		panic(err)
	}

	var a gen
	a.p("// Code generated by q8q4_gen.go; DO NOT EDIT.")
	a.p("")
	a.p("//go:build amd64 && !purego")
	a.p("")
	a.p("#include \"textflag.h\"")
	a.p("")
	a.p("// Byte constants, broadcast: 0x0f (Q4_0 nibble mask), 8 (Q4_0 offset).")
	a.p("DATA q8q4Bytes<>+0(SB)/8, $0x0f0f0f0f0f0f0f0f")
	a.p("DATA q8q4Bytes<>+8(SB)/8, $0x0808080808080808")
	a.p("GLOBL q8q4Bytes<>(SB), RODATA|NOPTR, $16")
	a.p("")
	for _, kind := range []string{"Q4_0", "Q8_0"} {
		for T := 1; T <= 4; T++ {
			a.avx2Kernel(kind, T)
		}
	}
	if err := os.WriteFile("q8q4_avx2_amd64.s", a.b.Bytes(), 0o644); err != nil {
		panic(err)
	}

	var d bytes.Buffer
	fmt.Fprintln(&d, "// Code generated by q8q4_gen.go; DO NOT EDIT.")
	fmt.Fprintln(&d)
	fmt.Fprintln(&d, "//go:build amd64 && !purego")
	fmt.Fprintln(&d)
	fmt.Fprintln(&d, "package compute")
	fmt.Fprintln(&d)
	for _, kind := range kinds {
		for R := 1; R <= maxR; R++ {
			for T := 1; T <= maxT; T++ {
				fmt.Fprintln(&d, "//go:noescape")
				fmt.Fprintf(&d, "func %s(y *float32, ldy int, w *byte, rb int, tp *byte, groups, tiles, rtiles int)\n\n", kernName(kind, R, T))
			}
		}
	}
	for _, kind := range []string{"Q4_0", "Q8_0"} {
		fmt.Fprintln(&d, "//go:noescape")
		fmt.Fprintf(&d, "func q8q4PrepW%s(dst *byte, stride int, w *byte, groups int)\n\n", kind)
		for T := 1; T <= 4; T++ {
			fmt.Fprintln(&d, "//go:noescape")
			fmt.Fprintf(&d, "func q8q4%sAVX2x%d(y *float32, ldy int, w *byte, aq *int8, ad *float32, cols, nb int)\n\n", kind, T)
		}
		fmt.Fprintf(&d, "// q8q4%sAVX2[T-1] is the AVX2 kernel of one row × T tokens.\n", kind)
		fmt.Fprintf(&d, "var q8q4%sAVX2 = [4]q8q4AVX2Func{", kind)
		for T := 1; T <= 4; T++ {
			fmt.Fprintf(&d, "q8q4%sAVX2x%d, ", kind, T)
		}
		fmt.Fprintln(&d, "}")
		fmt.Fprintln(&d)
	}
	for R := 1; R <= maxR8; R++ {
		for T := 1; T <= maxT8; T++ {
			fmt.Fprintln(&d, "//go:noescape")
			fmt.Fprintf(&d, "func q8q4P8VNNI%dx%d(y *float32, ldy int, w *byte, rb int, tp *byte, groups, tiles int)\n\n", R, T)
		}
	}
	fmt.Fprintln(&d, "// q8q4P8Tiles[R-1][T-1] is the widened-pair kernel of R rows × T tokens.")
	fmt.Fprintf(&d, "var q8q4P8Tiles = [%d][%d]q8q4TileFunc{\n", maxR8, maxT8)
	for R := 1; R <= maxR8; R++ {
		fmt.Fprint(&d, "{")
		for T := 1; T <= maxT8; T++ {
			fmt.Fprintf(&d, "q8q4P8VNNI%dx%d, ", R, T)
		}
		fmt.Fprintln(&d, "},")
	}
	fmt.Fprintln(&d, "}")
	fmt.Fprintln(&d)
	for _, kind := range kinds {
		v := "q8q4" + kind + "Tiles"
		fmt.Fprintf(&d, "// %s[R-1][T-1] is the kernel of tiles of R rows × T tokens.\n", v)
		fmt.Fprintf(&d, "var %s = [%d][%d]q8q4DecodeFunc{\n", v, maxR, maxT)
		for R := 1; R <= maxR; R++ {
			fmt.Fprint(&d, "{")
			for T := 1; T <= maxT; T++ {
				fmt.Fprintf(&d, "%s, ", kernName(kind, R, T))
			}
			fmt.Fprintln(&d, "},")
		}
		fmt.Fprintln(&d, "}")
		fmt.Fprintln(&d)
	}
	src, err := format.Source(d.Bytes())
	if err != nil {
		panic(err)
	}
	if err := os.WriteFile("q8q4_vnni_kern_amd64.go", src, 0o644); err != nil {
		panic(err)
	}
}
