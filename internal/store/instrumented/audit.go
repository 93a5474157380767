package instrumented

import (
	"context"

	"github.com/impact-health/impact/internal/store"
)

// AppendAudit is instrumented; the span carries the incident and version,
// never the actor or the event's detail.
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEvent) error {
	c := s.begin(ctx, "AppendAudit", incidentAttr(e.Incident), versionAttr(e.Version))
	return c.end(s.st.AppendAudit(c.ctx, e))
}

// ListAudit is instrumented; the span carries the number of events.
func (s *Store) ListAudit(ctx context.Context, incident string, afterSeq uint64, limit int) ([]store.AuditEvent, error) {
	c := s.begin(ctx, "ListAudit", incidentAttr(incident))
	es, err := s.st.ListAudit(c.ctx, incident, afterSeq, limit)
	return es, c.end(err, countAttr(len(es)))
}
