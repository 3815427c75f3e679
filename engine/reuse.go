package engine

import (
	"github.com/kvserve/kvserve/blend"
	"github.com/kvserve/kvserve/kvcache/chunk"
)

// Reuse prefills a job's prompt from documents whose KV is cached (package
// blend) instead of computing it: the scheduler hands the prompt to
// Method, which places the documents' cached KV at their positions and
// recomputes what the method recomputes. The prompt's tokens, Prompt's
// concatenated, are the job's Prompt. Such a cache is not exact, so it is
// never kept for prefix reuse.
type Reuse struct {
	Blender *blend.Blender
	Method  blend.Method
	Prompt  blend.Prompt
}

// ChunkCache is a CacheAllocator whose pool also holds a chunk cache of
// documents (kvcache/chunk): kept documents count against the same budget,
// and Reclaim evicts them, least recently used first, once the kept
// prefixes are gone.
type ChunkCache struct {
	CacheAllocator
	Chunks *chunk.Cache
}

// Reclaim frees kept prefixes first, then kept documents.
func (c ChunkCache) Reclaim(bytes int64) int64 {
	freed := c.CacheAllocator.Reclaim(bytes)
	if freed < bytes {
		freed += c.Chunks.Reclaim(bytes - freed)
	}
	return freed
}
