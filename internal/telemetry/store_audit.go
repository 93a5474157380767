package telemetry

import (
	"context"

	"github.com/impact-health/impact/internal/store"
)

// AppendAudit is instrumented like the Store methods; the span carries the
// incident and version, never the actor or the event's detail.
func (s *instrumentedStore) AppendAudit(ctx context.Context, e store.AuditEvent) error {
	c := s.begin(ctx, "AppendAudit", inc(e.Incident), ver(e.Version))
	return c.end(s.st.AppendAudit(c.ctx, e))
}

// ListAudit is instrumented like the Store methods.
func (s *instrumentedStore) ListAudit(ctx context.Context, incident string, afterSeq uint64, limit int) ([]store.AuditEvent, error) {
	c := s.begin(ctx, "ListAudit", inc(incident))
	es, err := s.st.ListAudit(c.ctx, incident, afterSeq, limit)
	return es, c.end(err, AttrCount.Int(len(es)))
}
