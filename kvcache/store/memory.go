package store

import (
	"container/list"
	"context"
	"sync"
)

// Memory is a tier in host memory: a map with least-recently-used
// eviction under a byte cap.
type Memory struct {
	cap int64

	mu    sync.Mutex
	items map[string]*list.Element
	order *list.List // front: most recently used
	size  int64
}

type memItem struct {
	key string
	val []byte
}

// NewMemory returns a memory tier holding at most capBytes of values
// (0: no cap).
func NewMemory(capBytes int64) *Memory {
	return &Memory{cap: capBytes, items: map[string]*list.Element{}, order: list.New()}
}

// Name returns "memory".
func (m *Memory) Name() string { return "memory" }

// Get returns a copy of the value under key.
func (m *Memory) Get(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.items[key]
	if e == nil {
		return nil, ErrNotFound
	}
	m.order.MoveToFront(e)
	return append([]byte(nil), e.Value.(*memItem).val...), nil
}

// Has reports whether key is held.
func (m *Memory) Has(_ context.Context, key string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.items[key] != nil, nil
}

// Put stores a copy of val, evicting the least recently used values beyond
// the cap. A value larger than the cap is not kept.
func (m *Memory) Put(_ context.Context, key string, val []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.removeLocked(key)
	if m.cap > 0 && int64(len(val)) > m.cap {
		return nil
	}
	m.items[key] = m.order.PushFront(&memItem{key: key, val: append([]byte(nil), val...)})
	m.size += int64(len(val))
	for m.cap > 0 && m.size > m.cap {
		m.removeLocked(m.order.Back().Value.(*memItem).key)
	}
	return nil
}

// Delete removes key.
func (m *Memory) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.removeLocked(key)
	return nil
}

func (m *Memory) removeLocked(key string) {
	if e := m.items[key]; e != nil {
		m.size -= int64(len(e.Value.(*memItem).val))
		m.order.Remove(e)
		delete(m.items, key)
	}
}

// Size returns the bytes held.
func (m *Memory) Size() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.size
}

// Close does nothing.
func (m *Memory) Close() error { return nil }
