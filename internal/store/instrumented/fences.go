package instrumented

import (
	"context"
	"time"
)

// Fence is instrumented; the span carries the visible version fenced.
func (s *Store) Fence(ctx context.Context, incident string, visible uint64, id string, ttl time.Duration) error {
	c := s.begin(ctx, "Fence", incidentAttr(incident), versionAttr(visible))
	return c.end(s.st.Fence(c.ctx, incident, visible, id, ttl))
}

// Unfence is instrumented.
func (s *Store) Unfence(ctx context.Context, incident, id string) error {
	c := s.begin(ctx, "Unfence", incidentAttr(incident))
	return c.end(s.st.Unfence(c.ctx, incident, id))
}
