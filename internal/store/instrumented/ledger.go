package instrumented

import (
	"context"

	"github.com/impact-health/impact/internal/store"
)

// Read is instrumented; the span carries the visible version, never the
// subject key or the idempotency key.
func (s *Store) Read(ctx context.Context, incident string, key store.Key, idem *store.IdemKey) (store.View, error) {
	c := s.begin(ctx, "Read", incidentAttr(incident))
	v, err := s.st.Read(c.ctx, incident, key, idem)
	return v, c.end(err, versionAttr(v.Visible))
}

// Records is instrumented; the span carries the number of keys asked for.
func (s *Store) Records(ctx context.Context, incident string, version uint64, keys []store.Key) ([]store.Record, error) {
	c := s.begin(ctx, "Records", incidentAttr(incident), versionAttr(version), countAttr(len(keys)))
	rs, err := s.st.Records(c.ctx, incident, version, keys)
	return rs, c.end(err)
}

// ClaimPin is instrumented; the span carries the version claimed.
func (s *Store) ClaimPin(ctx context.Context, incident string, key store.Key, old *store.Pin, next store.Pin, idem store.IdemKey) error {
	c := s.begin(ctx, "ClaimPin", incidentAttr(incident), versionAttr(next.Version))
	return c.end(s.st.ClaimPin(c.ctx, incident, key, old, next, idem))
}

// Pins is instrumented; the span carries the number of pins listed.
func (s *Store) Pins(ctx context.Context, incident string, fn func(store.Key, store.Pin) error) error {
	c := s.begin(ctx, "Pins", incidentAttr(incident))
	n := 0
	err := s.st.Pins(c.ctx, incident, func(k store.Key, p store.Pin) error { n++; return fn(k, p) })
	return c.end(err, countAttr(n))
}
