//go:build ignore

// q8q4_gen writes q8q4_avx512_amd64.s and q8q4_kern_amd64.go: the AVX-512
// VNNI tile kernels of the Fast-mode Q8_0 and Q4_0 matrix products, one
// function per tile shape (1–4 weight rows × 1–4 tokens). Run it with
// `go generate ./compute` after changing it.
//
// A tile kernel reads activations that q8q4PrepVNNI rearranged (see
// q8q4_avx512_amd64.go): for each group of 4 blocks (128 columns) and
// token, 256 bytes — the 4 blocks' first halves (64 int8), their second
// halves, the 4 activation scales each repeated 4 times (16 float32) and
// the offset correction −k·(half-block sums) (16 int32). A weight row's
// group is rearranged the same way in registers: lanes 4j…4j+3 of every
// vector belong to block j, so one VPDPBUSD per half sums 8 products per
// lane, and the float scaling then runs once per 128 products.
package main

import (
	"bytes"
	"fmt"
	"go/format"
	"os"
)

const maxR, maxT = 4, 4

type gen struct{ b bytes.Buffer }

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

func kernName(q8 bool, r, t int) string {
	if q8 {
		return fmt.Sprintf("q8q4Q8_0VNNI%dx%d", r, t)
	}
	return fmt.Sprintf("q8q4Q4_0VNNI%dx%d", r, t)
}

// kernel writes one tile kernel:
//
//	func(y *float32, ldy int, w *byte, rb int, tp *byte, groups, tiles int)
//
// y[(k·T+i)·ldy+r] = Σ over groups of row r of w (row stride rb bytes)
// against token i of tile k, for r < R, i < T, k < tiles; the tiles of tp
// follow each other, each groups·T·256 bytes.
func (g *gen) kernel(q8 bool, R, T int) {
	name := kernName(q8, R, T)
	gb := 72
	if q8 {
		gb = 136
	}
	lo := func(r int) int { return 3 * r }
	hi := func(r int) int { return 3*r + 1 }
	dw := func(r int) int { return 3*r + 2 }
	acc := func(r, i int) int { return 3*R + r*T + i }
	g.p("// func %s(y *float32, ldy int, w *byte, rb int, tp *byte, groups, tiles int)", name)
	g.p("TEXT ·%s(SB), NOSPLIT, $0-56", name)
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
	if q8 {
		g.p("\tVMOVDQU32 q8q4IdxQ8<>(SB), Z31")
	} else {
		g.p("\tVMOVDQU32 q8q4IdxQ4<>(SB), Z31")
	}
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
		if q8 {
			g.p("\tVMOVDQU32 %s, X%d", rowAddr(r, 2), lo(r))
			for j := 1; j < 4; j++ {
				g.p("\tVINSERTI32X4 $%d, %s, Z%d, Z%d", j, rowAddr(r, 34*j+2), lo(r), lo(r))
			}
			g.p("\tVMOVDQU32 %s, X%d", rowAddr(r, 18), hi(r))
			for j := 1; j < 4; j++ {
				g.p("\tVINSERTI32X4 $%d, %s, Z%d, Z%d", j, rowAddr(r, 34*j+18), hi(r), hi(r))
			}
			g.p("\tVPXORD.BCST q8q4Bytes<>+4(SB), Z%d, Z%d", lo(r), lo(r))
			g.p("\tVPXORD.BCST q8q4Bytes<>+4(SB), Z%d, Z%d", hi(r), hi(r))
			g.p("\tVMOVDQU16 %s, Z%d", rowAddr(r, 0), dw(r))
			g.p("\tVPERMT2W %s, Z31, Z%d", rowAddr(r, 64), dw(r))
		} else {
			g.p("\tVMOVDQU32 %s, X%d", rowAddr(r, 2), lo(r))
			for j := 1; j < 4; j++ {
				g.p("\tVINSERTI32X4 $%d, %s, Z%d, Z%d", j, rowAddr(r, 18*j+2), lo(r), lo(r))
			}
			g.p("\tVPSRLW $4, Z%d, Z%d", lo(r), hi(r))
			g.p("\tVPANDD.BCST q8q4Bytes<>+0(SB), Z%d, Z%d", lo(r), lo(r))
			g.p("\tVPANDD.BCST q8q4Bytes<>+0(SB), Z%d, Z%d", hi(r), hi(r))
			g.p("\tVPERMW %s, Z31, Z%d", rowAddr(r, 0), dw(r))
		}
		g.p("\tVCVTPH2PS Y%d, Z%d", dw(r), dw(r))
	}
	tmp := []int{28, 29, 30}
	k := 0
	for i := range T {
		for r := range R {
			z := tmp[k%len(tmp)]
			k++
			g.p("\tVMOVDQU32 %d(DX), Z%d", 256*i+192, z)
			g.p("\tVPDPBUSD %d(DX), Z%d, Z%d", 256*i, lo(r), z)
			g.p("\tVPDPBUSD %d(DX), Z%d, Z%d", 256*i+64, hi(r), z)
			g.p("\tVCVTDQ2PS Z%d, Z%d", z, z)
			g.p("\tVMULPS Z%d, Z%d, Z%d", dw(r), z, z)
			g.p("\tVFMADD231PS %d(DX), Z%d, Z%d", 256*i+128, z, acc(r, i))
		}
	}
	g.p("\tADDQ $%d, SI", gb)
	g.p("\tADDQ $%d, DX", 256*T)
	g.p("\tDECQ CX")
	g.p("\tJNZ %s_group", name)
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
			g.p("\tVMOVSS X28, %s", yAddr(r, i))
		}
	}
	switch T {
	case 3:
		g.p("\tADDQ R13, DI")
	default:
		g.p("\tLEAQ (DI)(R8*%d), DI", T)
	}
	g.p("\tDECQ R11")
	g.p("\tJNZ %s_tile", name)
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
	for _, q8 := range []bool{false, true} {
		for R := 1; R <= maxR; R++ {
			for T := 1; T <= maxT; T++ {
				s.kernel(q8, R, T)
			}
		}
	}
	if err := os.WriteFile("q8q4_vnni_amd64.s", s.b.Bytes(), 0o644); err != nil {
		panic(err)
	}

	var d bytes.Buffer
	fmt.Fprintln(&d, "// Code generated by q8q4_gen.go; DO NOT EDIT.")
	fmt.Fprintln(&d)
	fmt.Fprintln(&d, "//go:build amd64 && !purego")
	fmt.Fprintln(&d)
	fmt.Fprintln(&d, "package compute")
	fmt.Fprintln(&d)
	for _, q8 := range []bool{false, true} {
		for R := 1; R <= maxR; R++ {
			for T := 1; T <= maxT; T++ {
				fmt.Fprintln(&d, "//go:noescape")
				fmt.Fprintf(&d, "func %s(y *float32, ldy int, w *byte, rb int, tp *byte, groups, tiles int)\n\n", kernName(q8, R, T))
			}
		}
	}
	for _, q8 := range []bool{false, true} {
		v := "q8q4Q4_0Tiles"
		if q8 {
			v = "q8q4Q8_0Tiles"
		}
		fmt.Fprintf(&d, "// %s[R-1][T-1] is the kernel of tiles of R rows × T tokens.\n", v)
		fmt.Fprintf(&d, "var %s = [%d][%d]q8q4TileFunc{\n", v, maxR, maxT)
		for R := 1; R <= maxR; R++ {
			fmt.Fprint(&d, "{")
			for T := 1; T <= maxT; T++ {
				fmt.Fprintf(&d, "%s, ", kernName(q8, R, T))
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
