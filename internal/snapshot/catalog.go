package snapshot

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/impact-health/impact/internal/store"
)

// Version is one version's immutable data: its info, its manifest and its
// decoded spec. Treat it as read-only: a Catalog shares it between callers.
type Version struct {
	Info     store.VersionInfo
	Manifest store.Manifest
	Spec     *Spec
}

// DefaultCatalogSize is the number of versions a Catalog keeps when asked
// for a size <= 0.
const DefaultCatalogSize = 64

// Catalog loads versions from a store and keeps the most recently used ones
// in memory. Only published versions are kept: their content, manifest and
// info never change again (a staged version's info still changes when it is
// published, and staging or aborted versions are not readable). Concurrent
// loads of the same version share one store call. A Catalog is safe for
// concurrent use.
type Catalog struct {
	st   store.Versions
	size int

	mu       sync.Mutex
	lru      *list.List // of *catalogEntry, most recent first
	entries  map[versionKey]*list.Element
	inflight map[versionKey]*load

	hits, misses atomic.Uint64
}

type versionKey struct {
	incident string
	version  uint64
}

type catalogEntry struct {
	key versionKey
	v   *Version
}

// load is one store call that concurrent Gets of a version wait for.
type load struct {
	done chan struct{}
	v    *Version
	err  error
}

// NewCatalog returns a Catalog over st keeping up to size versions.
func NewCatalog(st store.Versions, size int) *Catalog {
	if size <= 0 {
		size = DefaultCatalogSize
	}
	return &Catalog{
		st:       st,
		size:     size,
		lru:      list.New(),
		entries:  make(map[versionKey]*list.Element),
		inflight: make(map[versionKey]*load),
	}
}

// Get returns a version of an incident. Errors wrap the store's
// (store.ErrNotFound for an unknown incident or version); a manifest whose
// spec does not decode is reported as store.ErrVerify.
func (c *Catalog) Get(ctx context.Context, incident string, version uint64) (*Version, error) {
	k := versionKey{incident, version}
	for {
		c.mu.Lock()
		if el, ok := c.entries[k]; ok {
			c.lru.MoveToFront(el)
			v := el.Value.(*catalogEntry).v
			c.mu.Unlock()
			c.hits.Add(1)
			return v, nil
		}
		if l, ok := c.inflight[k]; ok {
			c.mu.Unlock()
			c.hits.Add(1) // shares another caller's store call
			select {
			case <-l.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			// A load that failed only because its caller's context ended
			// says nothing about this caller's: try again.
			if isContextErr(l.err) && ctx.Err() == nil {
				continue
			}
			return l.v, l.err
		}
		l := &load{done: make(chan struct{})}
		c.inflight[k] = l
		c.mu.Unlock()
		c.misses.Add(1)

		l.v, l.err = c.fetch(ctx, incident, version)

		c.mu.Lock()
		delete(c.inflight, k)
		if l.err == nil && l.v.Info.State == store.StatePublished {
			c.put(k, l.v)
		}
		c.mu.Unlock()
		close(l.done)
		return l.v, l.err
	}
}

// Forget drops a version from the cache, so that later Gets ask the store
// (which answers store.ErrNotFound for a deleted version). Service.GC calls
// it for every version it removes; other processes' Catalogs may keep a
// deleted version until it is evicted, which is harmless: a version is
// only deleted when neither visible nor pinned, so the read path never asks
// for it, and operations that copy a version's records (rollback, diff)
// fail on the store's answer.
func (c *Catalog) Forget(incident string, version uint64) {
	k := versionKey{incident, version}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[k]; ok {
		c.lru.Remove(el)
		delete(c.entries, k)
	}
}

// Stats returns how many Gets were answered without a store call of their
// own (hits: from memory, or sharing a concurrent load) and how many loaded
// the version from the store (misses), since the Catalog was made.
func (c *Catalog) Stats() (hits, misses uint64) {
	return c.hits.Load(), c.misses.Load()
}

// put adds a version to the cache, evicting the least recently used one if
// full. c.mu must be held.
func (c *Catalog) put(k versionKey, v *Version) {
	if _, ok := c.entries[k]; ok {
		return
	}
	c.entries[k] = c.lru.PushFront(&catalogEntry{key: k, v: v})
	for c.lru.Len() > c.size {
		last := c.lru.Back()
		c.lru.Remove(last)
		delete(c.entries, last.Value.(*catalogEntry).key)
	}
}

func (c *Catalog) fetch(ctx context.Context, incident string, version uint64) (*Version, error) {
	info, m, err := c.st.Version(ctx, incident, version)
	if err != nil {
		return nil, fmt.Errorf("load %s v%d: %w", incident, version, err)
	}
	v := &Version{Info: info, Manifest: m}
	if info.State != store.StateStaged && info.State != store.StatePublished {
		// Not loaded whole: there may be no manifest to decode.
		return v, nil
	}
	spec, err := DecodeSpec(m.Spec)
	if err != nil {
		return nil, fmt.Errorf("%w: %s v%d manifest: %v", store.ErrVerify, incident, version, err)
	}
	if len(spec.Cohorts) != m.Cohorts {
		return nil, fmt.Errorf("%w: %s v%d manifest: %d cohorts, spec has %d", store.ErrVerify, incident, version, m.Cohorts, len(spec.Cohorts))
	}
	v.Spec = spec
	return v, nil
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
