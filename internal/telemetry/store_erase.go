package telemetry

import (
	"context"

	"github.com/impact-health/impact/internal/store"
)

// Tombstone is instrumented like the Store methods; the span carries the
// number of pins removed, never the subject key.
func (s *instrumentedStore) Tombstone(ctx context.Context, key store.Key) (int, error) {
	c := s.begin(ctx, "Tombstone")
	n, err := s.st.Tombstone(c.ctx, key)
	return n, c.end(err, AttrCount.Int(n))
}

// Tombstoned is instrumented like the Store methods.
func (s *instrumentedStore) Tombstoned(ctx context.Context, keys []store.Key) ([]bool, error) {
	c := s.begin(ctx, "Tombstoned", AttrCount.Int(len(keys)))
	out, err := s.st.Tombstoned(c.ctx, keys)
	return out, c.end(err)
}
