package auth

import (
	"container/list"
	"crypto"
	"sync"
	"sync/atomic"
	"time"
)

// cacheEntry is one verified token. The token itself is never held: the
// cache is keyed by its SHA-256.
type cacheEntry struct {
	hash     [32]byte
	subject  string
	scopes   []string
	practice string
	exp      time.Time        // the token's exp: the entry is dead from then on
	kid      string           // the key that verified it ...
	key      crypto.PublicKey // ... and its value, rechecked on a hit once the JWKS changed ...
	gen      atomic.Uint64    // ... since this generation of it (keySource.generation)
}

// tokenCache is a bounded LRU of verified tokens. A zero-capacity cache
// stores nothing.
type tokenCache struct {
	mu    sync.Mutex
	cap   int
	ll    *list.List // front = most recently used; values are *cacheEntry
	items map[[32]byte]*list.Element
}

func newTokenCache(capacity int) *tokenCache {
	return &tokenCache{cap: capacity, ll: list.New(), items: make(map[[32]byte]*list.Element)}
}

// get returns the live entry for hash. An entry whose exp is not after now is
// removed and not returned.
func (c *tokenCache) get(hash [32]byte, now time.Time) (*cacheEntry, bool) {
	if c.cap <= 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[hash]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.exp) {
		c.ll.Remove(el)
		delete(c.items, hash)
		return nil, false
	}
	c.ll.MoveToFront(el)
	return e, true
}

// put stores e, evicting the least recently used entry when full.
func (c *tokenCache) put(e *cacheEntry) {
	if c.cap <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[e.hash]; ok {
		el.Value = e
		c.ll.MoveToFront(el)
		return
	}
	for c.ll.Len() >= c.cap {
		oldest := c.ll.Back()
		c.ll.Remove(oldest)
		delete(c.items, oldest.Value.(*cacheEntry).hash)
	}
	c.items[e.hash] = c.ll.PushFront(e)
}

// remove drops hash from the cache.
func (c *tokenCache) remove(hash [32]byte) {
	if c.cap <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[hash]; ok {
		c.ll.Remove(el)
		delete(c.items, hash)
	}
}

// len is the number of entries held, live or not.
func (c *tokenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
