// Go's assembler does not know the AVX512_BF16 instructions, so they are
// spelled out as bytes here. Register arguments are numbers 0–31 (zmm
// registers); the macros compute the EVEX prefix bits from them.
//
// VDPBF16PS zmm(d), zmm(s1), zmm(s2) (Intel operand order):
// for each of the 16 float32 lanes i of Z(d),
//     Z(d)[i] += s1.bf16[2i+1]·s2.bf16[2i+1] + s1.bf16[2i]·s2.bf16[2i]
// with bf16 denormal inputs read as zero, float32 results flushed to zero
// and rounding to nearest even whatever MXCSR says.
// Encoding EVEX.512.F3.0F38.W0 52 /r:
//   62, P0 = ¬d₃ ¬s2₄ ¬s2₃ ¬d₄ 0 0 1 0, P1 = 0 ¬s1₃..₀ 1 1 0,
//   P2 = 0 1 0 0 ¬s1₄ 0 0 0, 52, ModRM = 11 d₂..₀ s2₂..₀.
// Checked against GNU as: vdpbf16ps zmm0, zmm16, zmm20 is
// 62 b2 7e 40 52 c4; zmm3, zmm2, zmm1 is 62 f2 6e 48 52 d9; zmm31, zmm8,
// zmm9 is 62 42 3e 48 52 f9; zmm9, zmm24, zmm7 is 62 72 3e 40 52 cf.
#define VDPBF16PS_Z(d, s1, s2) \
	BYTE $0x62; \
	BYTE $(((1-(((d)>>3)&1))<<7) | ((1-(((s2)>>4)&1))<<6) | ((1-(((s2)>>3)&1))<<5) | ((1-(((d)>>4)&1))<<4) | 2); \
	BYTE $(((15-((s1)&15))<<3) | 6); \
	BYTE $(0x40 | ((1-(((s1)>>4)&1))<<3)); \
	BYTE $0x52; \
	BYTE $(0xC0 | (((d)&7)<<3) | ((s2)&7))
