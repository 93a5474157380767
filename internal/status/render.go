package status

import (
	"sync"

	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/store"
)

// maxRendered bounds a renderCache. Its keys are the versions held in
// memory times the (status, cohorts) combinations their rosters use:
// a few dozen per version for an incident like the one Impact was built
// for. When full, the cache starts over.
const maxRendered = 1024

// renderKey is what renderRecord's result depends on. A spec belongs to one
// immutable version (snapshot.Catalog), so its address stands for
// (incident, version); the practice of the record plays no part.
type renderKey struct {
	spec     *snapshot.Spec
	status   store.Status
	cohorts  uint64
	notified bool
}

type rendered struct {
	cohorts []snapshot.Cohort
	notice  Notice
}

// renderCache keeps renderRecord's results, so that answering a read
// renders nothing and allocates nothing but a notified answer's footer.
// Cached cohort slices are shared by every answer built from them and are
// never written. The zero value is an empty cache, safe for concurrent use.
type renderCache struct {
	mu sync.RWMutex
	m  map[renderKey]rendered
}

// render is Render through the cache.
func (c *renderCache) render(spec *snapshot.Spec, r store.Record, version uint64, noticeID string) ([]snapshot.Cohort, Notice) {
	k := renderKey{spec: spec, status: r.Status, cohorts: r.Cohorts, notified: noticeID != ""}
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	if !ok {
		v.cohorts, v.notice = renderRecord(spec, r, k.notified)
		c.mu.Lock()
		if c.m == nil || len(c.m) >= maxRendered {
			c.m = make(map[renderKey]rendered)
		}
		c.m[k] = v
		c.mu.Unlock()
	}
	n := v.notice
	if noticeID != "" {
		n.Body = withFooter(n.Body, noticeID, version)
	}
	return v.cohorts, n
}

// len is the number of entries held.
func (c *renderCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
