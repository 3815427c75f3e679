package kvcache

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"

	"github.com/kvserve/kvserve/compute"
)

// ColdTier is a slower home for keys and values that a step reads only
// now and then (retrieval at decode: Quest, A²ATS, SentenceKV): a region
// of memory outside the pool, or a file on disk. Blocks that Seq.Offload
// moves there keep only their positions in the pool; every read of their
// rows is an explicit fetch (a copy out of the region, or a ReadAt of the
// file), and the tier counts the bytes fetched. A tier only grows: the
// rows of released blocks stay until the tier is closed, so give each
// sequence (or each request) its own. Safe for concurrent reads.
type ColdTier struct {
	mu      sync.RWMutex
	mem     []byte   // the memory region, when file is nil
	file    *os.File // the disk tier
	size    int64
	fetched atomic.Int64
}

// NewColdTier returns an empty tier in a region of memory apart from the
// pool.
func NewColdTier() *ColdTier { return &ColdTier{} }

// NewDiskTier returns an empty tier in a new temporary file under dir
// (the system's temporary directory if dir is empty), removed by Close.
func NewDiskTier(dir string) (*ColdTier, error) {
	f, err := os.CreateTemp(dir, "kvserve-cold-*")
	if err != nil {
		return nil, fmt.Errorf("kvcache: cold tier on disk: %w (pass a writable directory)", err)
	}
	os.Remove(f.Name()) // the open file lives on until Close
	return &ColdTier{file: f}, nil
}

// Close drops what the tier holds. Blocks offloaded to it must not be read
// afterwards.
func (t *ColdTier) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mem = nil
	if t.file != nil {
		err := t.file.Close()
		t.file = nil
		return err
	}
	return nil
}

// Bytes returns the bytes the tier holds.
func (t *ColdTier) Bytes() int64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.size
}

// Fetched returns the bytes read back from the tier so far.
func (t *ColdTier) Fetched() int64 { return t.fetched.Load() }

// put appends b and returns its offset.
func (t *ColdTier) put(b []byte) (int64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	off := t.size
	if t.file != nil {
		if _, err := t.file.WriteAt(b, off); err != nil {
			return 0, fmt.Errorf("kvcache: cold tier: %w", err)
		}
	} else {
		t.mem = append(t.mem, b...)
	}
	t.size += int64(len(b))
	return off, nil
}

// fetch copies len(dst) bytes at off into dst.
func (t *ColdTier) fetch(dst []byte, off int64) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	t.fetched.Add(int64(len(dst)))
	if t.file != nil {
		if _, err := t.file.ReadAt(dst, off); err != nil {
			// A tier that cannot be read back has lost the cache: there is
			// no answer to compute without it.
			panic(fmt.Sprintf("kvcache: cold tier read of %d bytes at %d: %v", len(dst), off, err))
		}
		return
	}
	copy(dst, t.mem[off:off+int64(len(dst))])
}

// coldRows is a block's keys or values held in a ColdTier, in the pool's
// element format (f32 or bf16, little-endian).
type coldRows struct {
	t    *ColdTier
	off  int64
	n, d int
	full Format
}

func (c *coldRows) format() Format { return c.full }

// bytes is what the rows hold in the pool: nothing (they live in the tier).
func (c *coldRows) bytes() int64 { return 0 }

func (c *coldRows) shape() (int, int, Format) { return c.n, c.d, c.full }

func (c *coldRows) rowBytes() int { return c.d * c.full.bytesPerValue() }

func (c *coldRows) get(i int, dst []float32) {
	var buf [stackDim * 4]byte
	rb := c.rowBytes()
	raw := buf[:rb]
	if rb > len(buf) {
		raw = make([]byte, rb)
	}
	c.t.fetch(raw, c.off+int64(i*rb))
	dst = dst[:c.d]
	if c.full == BF16 {
		for j := range dst {
			dst[j] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(raw[2*j:])) << 16)
		}
		return
	}
	for j := range dst {
		dst[j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:]))
	}
}

func (c *coldRows) scores(dst, q []float32, lo, hi int, scale float32) {
	var buf [stackDim]float32
	row := scratch(buf[:], c.d)
	for j := lo; j < hi; j++ {
		c.get(j, row)
		dst[j-lo] = scale * compute.Dot(q[:c.d], row)
	}
}

func (c *coldRows) mix(out, p []float32, lo, hi int) {
	var buf [stackDim]float32
	row := scratch(buf[:], c.d)
	for j := lo; j < hi; j++ {
		c.get(j, row)
		w := p[j-lo]
		for i, x := range row {
			out[i] += w * x
		}
	}
}

// toCold writes the n rows of r (full precision) to t.
func toCold(r *rows, n, d int, full Format, t *ColdTier) (*coldRows, error) {
	eb := full.bytesPerValue()
	raw := make([]byte, n*d*eb)
	if r.b16 != nil {
		for i, x := range r.b16[:n*d] {
			binary.LittleEndian.PutUint16(raw[2*i:], x)
		}
	} else {
		for i, x := range r.f32[:n*d] {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
		}
	}
	off, err := t.put(raw)
	if err != nil {
		return nil, err
	}
	return &coldRows{t: t, off: off, n: n, d: d, full: full}, nil
}

// Offload moves the keys and values of one layer × KV head's full blocks
// whose tokens all lie in [from, to) (indices of the head's View) to t,
// leaving their positions in the pool: StoredBytes falls by their rows,
// and reading them (View.Key, Scores, Mix) fetches from t. Blocks not in
// plain f32 or bf16 rows (quantized, pruned, merged with a score bias,
// read from another layer) stay where they are, as do blocks already
// offloaded. It returns the tokens moved.
func (s *Seq) Offload(layer, head, from, to int, t *ColdTier) (int, error) {
	h := s.list(layer, head)
	if h.shared != nil {
		return 0, nil
	}
	bt, d := s.pool.cfg.BlockTokens, s.pool.cfg.HeadDim
	from, to = max(from, 0), min(to, h.n)
	moved := 0
	for bi := (from + bt - 1) / bt; (bi+1)*bt <= to; bi++ {
		b := h.blocks[bi]
		if b.n != bt || b.bias != nil || sealedBlock(b) {
			continue
		}
		full := s.pool.cfg.Format
		k, err := toCold(&b.k, bt, d, full, t)
		if err != nil {
			return moved, err
		}
		v, err := toCold(&b.v, bt, d, full, t)
		if err != nil {
			return moved, err
		}
		vr := rows{x: v}
		s.sealStores(h, bi, rows{x: k}, &vr)
		moved += bt
	}
	return moved, nil
}

// Offloaded reports whether token j's keys and values live in a ColdTier.
func (v View) Offloaded(j int) bool {
	_, ok := v.h.blocks[j/v.bt].k.x.(*coldRows)
	return ok
}

// Bias returns the score bias of token j (zero unless a press gave the
// token one; see KeepWithExtra), which attention adds to q·k.
func (v View) Bias(j int) float32 {
	if v.h.shared != nil {
		return 0
	}
	b := v.h.blocks[j/v.bt]
	if b.bias == nil {
		return 0
	}
	return b.bias[j%v.bt]
}
