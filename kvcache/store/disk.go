package store

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Disk is a tier in a local directory. Each value is a file named by the
// SHA-256 of its key (content addressing of the chunk hash, whatever
// characters the key holds), under a subdirectory of the name's first two
// hex digits. A value is written to a temporary file in the same
// directory, synced, and renamed into place, so a crash mid-write leaves
// either the old file, the new one, or a temporary file that Open
// removes — never a partial value under a real name. (A damaged file is
// still caught by Store's checksum.) Files beyond the size cap are removed
// least recently used first; recency is kept in memory and, across
// restarts, starts from the files' modification times.
type Disk struct {
	dir string
	cap int64

	mu    sync.Mutex
	files map[string]*list.Element // by file name
	order *list.List               // of *diskFile; front: most recently used
	size  int64
}

type diskFile struct {
	name string
	size int64
}

const tmpPrefix = ".tmp-"

// OpenDisk opens (creating it if needed) a disk tier in dir holding at most
// capBytes (0: no cap). Temporary files left by a crash are removed, and
// the files already there count against the cap.
func OpenDisk(dir string, capBytes int64) (*Disk, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("kv disk tier: %w", err)
	}
	d := &Disk{dir: dir, cap: capBytes, files: map[string]*list.Element{}, order: list.New()}
	type found struct {
		diskFile
		mod int64
	}
	var all []found
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			os.Remove(path) // an interrupted write
			return nil
		}
		if !strings.HasSuffix(e.Name(), ".kv") {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return nil // removed meanwhile
		}
		all = append(all, found{diskFile{e.Name(), info.Size()}, info.ModTime().UnixNano()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kv disk tier: scanning %s: %w", dir, err)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mod > all[j].mod })
	for _, f := range all {
		df := f.diskFile
		d.files[df.name] = d.order.PushBack(&df)
		d.size += df.size
	}
	d.mu.Lock()
	d.evictLocked()
	d.mu.Unlock()
	return d, nil
}

// Name returns "disk".
func (d *Disk) Name() string { return "disk" }

// Dir returns the tier's directory.
func (d *Disk) Dir() string { return d.dir }

func fileName(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:]) + ".kv"
}

func (d *Disk) path(name string) string { return filepath.Join(d.dir, name[:2], name) }

// Get reads the file of key.
func (d *Disk) Get(_ context.Context, key string) ([]byte, error) {
	name := fileName(key)
	b, err := os.ReadFile(d.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		d.forget(name)
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if e := d.files[name]; e != nil {
		d.order.MoveToFront(e)
	}
	d.mu.Unlock()
	return b, nil
}

// Has reports whether the file of key exists.
func (d *Disk) Has(_ context.Context, key string) (bool, error) {
	_, err := os.Stat(d.path(fileName(key)))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Put writes val to a temporary file, syncs it and renames it over the
// file of key; then removes least recently used files beyond the cap.
func (d *Disk) Put(_ context.Context, key string, val []byte) error {
	name := fileName(key)
	if d.cap > 0 && int64(len(val)) > d.cap {
		return fmt.Errorf("kv disk tier: a %d-byte value exceeds the %d-byte cap", len(val), d.cap)
	}
	sub := filepath.Join(d.dir, name[:2])
	if err := os.MkdirAll(sub, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(sub, tmpPrefix+"*")
	if err != nil {
		return err
	}
	_, err = f.Write(val)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), d.path(name))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("kv disk tier: writing %s: %w", name, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.files[name]; e != nil {
		d.size -= e.Value.(*diskFile).size
		d.order.Remove(e)
	}
	d.files[name] = d.order.PushFront(&diskFile{name, int64(len(val))})
	d.size += int64(len(val))
	d.evictLocked()
	return nil
}

// Delete removes the file of key.
func (d *Disk) Delete(_ context.Context, key string) error {
	name := fileName(key)
	err := os.Remove(d.path(name))
	d.forget(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func (d *Disk) forget(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.files[name]; e != nil {
		d.size -= e.Value.(*diskFile).size
		d.order.Remove(e)
		delete(d.files, name)
	}
}

func (d *Disk) evictLocked() {
	for d.cap > 0 && d.size > d.cap && d.order.Len() > 0 {
		f := d.order.Back().Value.(*diskFile)
		os.Remove(d.path(f.name))
		d.size -= f.size
		d.order.Remove(d.files[f.name])
		delete(d.files, f.name)
	}
}

// Size returns the bytes of the files held.
func (d *Disk) Size() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.size
}

// Close does nothing: every write is complete when Put returns.
func (d *Disk) Close() error { return nil }
