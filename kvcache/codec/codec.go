// Package codec encodes a run of KV-cache tokens — every layer and KV head
// of a sequence over a span of positions — as bytes for a slower tier
// (disk, Redis, the network), and decodes them back.
//
// Levels:
//
//   - bf16: keys and values as bfloat16, nothing else (the baseline).
//   - int8, int4: KIVI's layout (arXiv:2402.02750) written out as is: keys
//     quantized per channel over groups of 32 tokens, values per token over
//     groups of 32 channels, bf16 minimum and step per group, codes packed.
//     The same widths kvserve's int8/int4 blocks hold.
//   - cg1 … cg4: CacheGen-style (Liu et al., "CacheGen: KV Cache Compression
//     and Streaming for Fast Large Language Model Serving", SIGCOMM 2024,
//     arXiv:2310.07240), finest to coarsest. Tokens form groups of
//     AnchorGroup; the first of each group is the anchor, stored in 8 bits
//     per channel. The others are stored as deltas against their group's
//     (decoded) anchor, which neighbouring tokens keep small, quantized
//     with one step per channel: the delta's root mean square in that
//     channel times a factor that grows with depth (CacheGen finds the
//     shallow layers more sensitive to loss, so they get finer steps).
//     The delta codes are entropy coded with rANS, one frequency table per
//     layer and per keys/values (CacheGen models each channel and layer;
//     per-channel steps already bring the channels to one scale, so one
//     table per layer loses little and costs less to send).
//
// Choices where the paper leaves room: a group of 16 tokens; steps of
// base·(0.5 + l/(L−1)) delta RMS for layer l of L, with base 0.25, 0.5,
// 1 and 2 for cg1 … cg4; codes clipped to ±127; parameters in bf16.
package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// AnchorGroup is the tokens per CacheGen group: one anchor and the tokens
// stored as deltas against it.
const AnchorGroup = 16

// Chunk is the keys and values of Tokens consecutive positions, starting at
// Start, of every layer and KV head. K and V are laid out
// [layer][head][token][dim].
type Chunk struct {
	Layers, Heads, Dim, Tokens int
	Start                      int
	K, V                       []float32
}

// NewChunk returns a zeroed chunk of the given shape.
func NewChunk(layers, heads, dim, tokens, start int) *Chunk {
	n := layers * heads * tokens * dim
	return &Chunk{Layers: layers, Heads: heads, Dim: dim, Tokens: tokens, Start: start, K: make([]float32, n), V: make([]float32, n)}
}

// Row returns token t of layer l, head h: its key and value, each Dim long,
// aliasing the chunk.
func (c *Chunk) Row(l, h, t int) (k, v []float32) {
	o := ((l*c.Heads+h)*c.Tokens + t) * c.Dim
	return c.K[o : o+c.Dim], c.V[o : o+c.Dim]
}

// Level is how a chunk is encoded.
type Level struct {
	id   uint8
	name string
	kind int     // kindBF16, kindKIVI, kindCacheGen
	bits int     // KIVI code width
	base float64 // CacheGen step factor
}

const (
	kindBF16 = iota
	kindKIVI
	kindCacheGen
)

var levels = []Level{
	{1, "bf16", kindBF16, 16, 0},
	{2, "int8", kindKIVI, 8, 0},
	{3, "int4", kindKIVI, 4, 0},
	{4, "cg1", kindCacheGen, 0, 0.25},
	{5, "cg2", kindCacheGen, 0, 0.5},
	{6, "cg3", kindCacheGen, 0, 1},
	{7, "cg4", kindCacheGen, 0, 2},
}

// Levels returns every level, the plain ones first, then CacheGen's from
// finest to coarsest.
func Levels() []Level { return slices.Clone(levels) }

// String returns the level's name, as ParseLevel reads it.
func (l Level) String() string { return l.name }

// ParseLevel reads a level name: bf16, int8, int4, cg1, cg2, cg3 or cg4.
func ParseLevel(s string) (Level, error) {
	for _, l := range levels {
		if l.name == s {
			return l, nil
		}
	}
	names := make([]string, len(levels))
	for i, l := range levels {
		names[i] = l.name
	}
	return Level{}, fmt.Errorf("codec: unknown level %q (one of %s)", s, strings.Join(names, ", "))
}

var magic = [4]byte{'K', 'V', 'C', '1'}

// Limits on what Decode accepts, so that a corrupt header cannot ask for
// a huge allocation.
const (
	maxDim    = 1 << 12
	maxLayers = 1 << 10
	maxHeads  = 1 << 10
	maxValues = 1 << 28
)

// Encode returns the bytes of c at level l.
func Encode(c *Chunk, l Level) []byte {
	out := append([]byte(nil), magic[:]...)
	out = append(out, l.id)
	for _, v := range []int{c.Layers, c.Heads, c.Dim, c.Tokens, c.Start} {
		out = appendUvarint(out, uint64(v))
	}
	per := c.Heads * c.Tokens * c.Dim
	for layer := range c.Layers {
		for kind, src := range [2][]float32{c.K, c.V} {
			x := src[layer*per : (layer+1)*per]
			switch l.kind {
			case kindBF16:
				for _, f := range x {
					out = binary.LittleEndian.AppendUint16(out, toBF16(f))
				}
			case kindKIVI:
				for h := range c.Heads {
					out = encodeKIVI(out, x[h*c.Tokens*c.Dim:(h+1)*c.Tokens*c.Dim], c.Tokens, c.Dim, l.bits, kind == 0)
				}
			case kindCacheGen:
				out = encodeCacheGen(out, x, c.Heads, c.Tokens, c.Dim, stepFactor(l.base, layer, c.Layers))
			}
		}
	}
	return out
}

// Decode returns the chunk that Encode wrote into b, and its level. Bytes
// that Encode did not write give an error, never a panic.
func Decode(b []byte) (*Chunk, Level, error) {
	if len(b) < 5 || [4]byte(b[:4]) != magic {
		return nil, Level{}, errors.New("codec: not an encoded KV chunk (bad magic)")
	}
	var l Level
	for _, x := range levels {
		if x.id == b[4] {
			l = x
		}
	}
	if l.id == 0 {
		return nil, Level{}, fmt.Errorf("codec: unknown level id %d", b[4])
	}
	r := &reader{b: b[5:]}
	var dims [5]int
	for i := range dims {
		v, err := r.uvarint()
		if err != nil {
			return nil, l, fmt.Errorf("codec: header: %w", err)
		}
		if v > math.MaxInt32 {
			return nil, l, errors.New("codec: header value out of range")
		}
		dims[i] = int(v)
	}
	layers, heads, dim, tokens := dims[0], dims[1], dims[2], dims[3]
	if layers > maxLayers || heads > maxHeads || dim > maxDim || tokens > maxValues ||
		int64(layers)*int64(heads)*int64(dim)*int64(tokens) > maxValues {
		return nil, l, fmt.Errorf("codec: implausible shape %d layers × %d heads × %d dims × %d tokens", layers, heads, dim, tokens)
	}
	c := NewChunk(layers, heads, dim, tokens, dims[4])
	per := heads * tokens * dim
	for layer := range layers {
		for kind, dst := range [2][]float32{c.K, c.V} {
			x := dst[layer*per : (layer+1)*per]
			var err error
			switch l.kind {
			case kindBF16:
				var raw []byte
				if raw, err = r.bytes(uint64(2 * per)); err == nil {
					for i := range x {
						x[i] = fromBF16(binary.LittleEndian.Uint16(raw[2*i:]))
					}
				}
			case kindKIVI:
				for h := range heads {
					if err = decodeKIVI(r, x[h*tokens*dim:(h+1)*tokens*dim], tokens, dim, l.bits, kind == 0); err != nil {
						break
					}
				}
			case kindCacheGen:
				err = decodeCacheGen(r, x, heads, tokens, dim)
			}
			if err != nil {
				return nil, l, fmt.Errorf("codec: layer %d %s: %w", layer, [2]string{"keys", "values"}[kind], err)
			}
		}
	}
	if len(r.b) != 0 {
		return nil, l, fmt.Errorf("codec: %d bytes after the last layer", len(r.b))
	}
	return c, l, nil
}

// stepFactor is CacheGen's step, in delta RMS, for a layer: finer in the
// shallow layers.
func stepFactor(base float64, layer, layers int) float32 {
	f := 0.5
	if layers > 1 {
		f += float64(layer) / float64(layers-1)
	}
	return float32(base * f)
}

// groupSize is KIVI's group: 32 tokens for keys, 32 channels for values.
const groupSize = 32

// encodeKIVI writes one head's tokens × dim values, keys (perChannel)
// quantized per channel over groups of 32 tokens, values per token over
// groups of 32 channels.
func encodeKIVI(out []byte, x []float32, tokens, dim, bits int, perChannel bool) []byte {
	levels := float32(int(1)<<bits - 1)
	codes := make([]uint8, 0, groupSize*dim)
	emit := func(idx func(i int) int, n int) {
		lo, hi := float32(math.Inf(1)), float32(math.Inf(-1))
		for i := range n {
			v := x[idx(i)]
			lo, hi = min(lo, v), max(hi, v)
		}
		zb := toBF16(lo)
		z := fromBF16(zb)
		sb := toBF16((hi - z) / levels)
		s := fromBF16(sb)
		out = binary.LittleEndian.AppendUint16(out, zb)
		out = binary.LittleEndian.AppendUint16(out, sb)
		for i := range n {
			codes = append(codes, quantCode(x[idx(i)], z, s, levels))
		}
	}
	if perChannel {
		for t0 := 0; t0 < tokens; t0 += groupSize {
			n := min(groupSize, tokens-t0)
			for ch := range dim {
				emit(func(i int) int { return (t0+i)*dim + ch }, n)
			}
		}
	} else {
		for t := range tokens {
			for c0 := 0; c0 < dim; c0 += groupSize {
				emit(func(i int) int { return t*dim + c0 + i }, min(groupSize, dim-c0))
			}
		}
	}
	return packCodes(out, codes, bits)
}

func decodeKIVI(r *reader, x []float32, tokens, dim, bits int, perChannel bool) error {
	type param struct{ z, s float32 }
	var params []param
	var sizes []int
	if perChannel {
		for t0 := 0; t0 < tokens; t0 += groupSize {
			for range dim {
				sizes = append(sizes, min(groupSize, tokens-t0))
			}
		}
	} else {
		for range tokens {
			for c0 := 0; c0 < dim; c0 += groupSize {
				sizes = append(sizes, min(groupSize, dim-c0))
			}
		}
	}
	raw, err := r.bytes(uint64(4 * len(sizes)))
	if err != nil {
		return err
	}
	for i := range sizes {
		params = append(params, param{fromBF16(binary.LittleEndian.Uint16(raw[4*i:])), fromBF16(binary.LittleEndian.Uint16(raw[4*i+2:]))})
	}
	codes, err := unpackCodes(r, tokens*dim, bits)
	if err != nil {
		return err
	}
	k := 0
	g := 0
	if perChannel {
		for t0 := 0; t0 < tokens; t0 += groupSize {
			for ch := range dim {
				p := params[g]
				for i := range sizes[g] {
					x[(t0+i)*dim+ch] = p.z + float32(codes[k])*p.s
					k++
				}
				g++
			}
		}
	} else {
		for t := range tokens {
			for c0 := 0; c0 < dim; c0 += groupSize {
				p := params[g]
				for i := range sizes[g] {
					x[t*dim+c0+i] = p.z + float32(codes[k])*p.s
					k++
				}
				g++
			}
		}
	}
	return nil
}

// quantCode returns the nearest code of x on the grid z + k·s, k in
// [0, levels].
func quantCode(x, z, s, levels float32) uint8 {
	if s <= 0 || math.IsNaN(float64(s)) {
		return 0
	}
	q := float32(math.Round(float64((x - z) / s)))
	return uint8(max(0, min(levels, q)))
}

func packCodes(out []byte, codes []uint8, bits int) []byte {
	if bits == 8 {
		return append(out, codes...)
	}
	var acc uint32
	n := 0
	for _, c := range codes {
		acc |= uint32(c) << n
		n += bits
		for n >= 8 {
			out = append(out, byte(acc))
			acc >>= 8
			n -= 8
		}
	}
	if n > 0 {
		out = append(out, byte(acc))
	}
	return out
}

func unpackCodes(r *reader, count, bits int) ([]uint8, error) {
	raw, err := r.bytes(uint64((count*bits + 7) / 8))
	if err != nil {
		return nil, err
	}
	if bits == 8 {
		return raw, nil
	}
	codes := make([]uint8, count)
	mask := uint32(1)<<bits - 1
	var acc uint32
	n, p := 0, 0
	for i := range codes {
		for n < bits {
			acc |= uint32(raw[p]) << n
			p++
			n += 8
		}
		codes[i] = uint8(acc & mask)
		acc >>= bits
		n -= bits
	}
	return codes, nil
}

// maxDelta is the largest delta code magnitude; zigzagged, codes fit a
// byte.
const maxDelta = 127

// encodeCacheGen writes one layer's keys or values, heads × tokens × dim:
// per head and channel the anchors' 8-bit minimum and step and the delta
// step, the anchor codes, then one rANS stream of every head's delta
// codes.
func encodeCacheGen(out []byte, x []float32, heads, tokens, dim int, factor float32) []byte {
	groups := (tokens + AnchorGroup - 1) / AnchorGroup
	syms := make([]uint8, 0, heads*(tokens-groups)*dim)
	anchors := make([]float32, groups) // one channel's decoded anchors
	for h := range heads {
		xh := x[h*tokens*dim : (h+1)*tokens*dim]
		anchorCodes := make([]byte, 0, groups*dim)
		for ch := range dim {
			lo, hi := float32(math.Inf(1)), float32(math.Inf(-1))
			for g := range groups {
				v := xh[g*AnchorGroup*dim+ch]
				lo, hi = min(lo, v), max(hi, v)
			}
			zb := toBF16(lo)
			z := fromBF16(zb)
			sb := toBF16((hi - z) / 255)
			s := fromBF16(sb)
			out = binary.LittleEndian.AppendUint16(out, zb)
			out = binary.LittleEndian.AppendUint16(out, sb)
			var sq float64
			n := 0
			for g := range groups {
				c := quantCode(xh[g*AnchorGroup*dim+ch], z, s, 255)
				anchorCodes = append(anchorCodes, c)
				anchors[g] = z + float32(c)*s
				for t := g*AnchorGroup + 1; t < min(tokens, (g+1)*AnchorGroup); t++ {
					d := float64(xh[t*dim+ch] - anchors[g])
					sq += d * d
					n++
				}
			}
			step := float32(0)
			if n > 0 {
				step = factor * float32(math.Sqrt(sq/float64(n)))
			}
			stb := toBF16(step)
			out = binary.LittleEndian.AppendUint16(out, stb)
			step = fromBF16(stb)
			for g := range groups {
				for t := g*AnchorGroup + 1; t < min(tokens, (g+1)*AnchorGroup); t++ {
					q := 0
					if step > 0 {
						q = int(math.Round(float64((xh[t*dim+ch] - anchors[g]) / step)))
						q = max(-maxDelta, min(maxDelta, q))
					}
					syms = append(syms, zigzag(q))
				}
			}
		}
		out = append(out, anchorCodes...)
	}
	var counts [alphabet]uint64
	for _, s := range syms {
		counts[s]++
	}
	t := newFreqTable(&counts)
	out = t.appendTo(out)
	if len(syms) == 0 {
		return out
	}
	return ransEncode(out, syms, t)
}

func decodeCacheGen(r *reader, x []float32, heads, tokens, dim int) error {
	groups := (tokens + AnchorGroup - 1) / AnchorGroup
	type chParams struct{ z, s, step float32 }
	params := make([]chParams, heads*dim)
	anchorCodes := make([][]byte, heads)
	for h := range heads {
		raw, err := r.bytes(uint64(6 * dim))
		if err != nil {
			return err
		}
		for ch := range dim {
			p := raw[6*ch:]
			params[h*dim+ch] = chParams{fromBF16(binary.LittleEndian.Uint16(p)), fromBF16(binary.LittleEndian.Uint16(p[2:])), fromBF16(binary.LittleEndian.Uint16(p[4:]))}
		}
		if anchorCodes[h], err = r.bytes(uint64(groups * dim)); err != nil {
			return err
		}
	}
	t, err := readFreqTable(r)
	if err != nil {
		return err
	}
	syms := make([]uint8, heads*(tokens-groups)*dim)
	if len(syms) > 0 {
		if err := ransDecode(r, syms, t); err != nil {
			return err
		}
	}
	k := 0
	for h := range heads {
		xh := x[h*tokens*dim : (h+1)*tokens*dim]
		for ch := range dim {
			p := params[h*dim+ch]
			for g := range groups {
				a := p.z + float32(anchorCodes[h][ch*groups+g])*p.s
				xh[g*AnchorGroup*dim+ch] = a
				for t := g*AnchorGroup + 1; t < min(tokens, (g+1)*AnchorGroup); t++ {
					xh[t*dim+ch] = a + float32(unzigzag(syms[k]))*p.step
					k++
				}
			}
		}
	}
	return nil
}

func zigzag(q int) uint8 {
	if q >= 0 {
		return uint8(2 * q)
	}
	return uint8(-2*q - 1)
}

func unzigzag(s uint8) int {
	if s&1 == 0 {
		return int(s / 2)
	}
	return -int(s/2) - 1
}

// toBF16 rounds f to the nearest bfloat16, ties to even.
func toBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

func fromBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

func appendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

// reader reads an encoded chunk front to back.
type reader struct{ b []byte }

func (r *reader) uvarint() (uint64, error) {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		return 0, errors.New("truncated or malformed varint")
	}
	r.b = r.b[n:]
	return v, nil
}

func (r *reader) bytes(n uint64) ([]byte, error) {
	if n > uint64(len(r.b)) {
		return nil, fmt.Errorf("truncated: %d bytes wanted, %d left", n, len(r.b))
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out, nil
}
