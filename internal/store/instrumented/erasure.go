package instrumented

import (
	"context"

	"github.com/impact-health/impact/internal/store"
)

// Tombstone is instrumented; the span carries the number of pins removed,
// never the subject key.
func (s *Store) Tombstone(ctx context.Context, key store.Key) (int, error) {
	c := s.begin(ctx, "Tombstone")
	n, err := s.st.Tombstone(c.ctx, key)
	return n, c.end(err, countAttr(n))
}

// Tombstoned is instrumented; the span carries the number of keys.
func (s *Store) Tombstoned(ctx context.Context, keys []store.Key) ([]bool, error) {
	c := s.begin(ctx, "Tombstoned", countAttr(len(keys)))
	out, err := s.st.Tombstoned(c.ctx, keys)
	return out, c.end(err)
}
