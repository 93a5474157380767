package instrumented

import (
	"context"

	"github.com/impact-health/impact/internal/store"
)

// PutPublishRequest is instrumented.
func (s *Store) PutPublishRequest(ctx context.Context, r store.PendingPublish) error {
	c := s.begin(ctx, "PutPublishRequest", incidentAttr(r.Incident), versionAttr(r.Version))
	return c.end(s.st.PutPublishRequest(c.ctx, r))
}

// GetPublishRequest is instrumented.
func (s *Store) GetPublishRequest(ctx context.Context, incident string, version uint64) (store.PendingPublish, error) {
	c := s.begin(ctx, "GetPublishRequest", incidentAttr(incident), versionAttr(version))
	r, err := s.st.GetPublishRequest(c.ctx, incident, version)
	return r, c.end(err)
}

// ListPublishRequests is instrumented.
func (s *Store) ListPublishRequests(ctx context.Context, incident string) ([]store.PendingPublish, error) {
	c := s.begin(ctx, "ListPublishRequests", incidentAttr(incident))
	rs, err := s.st.ListPublishRequests(c.ctx, incident)
	return rs, c.end(err)
}

// ApprovePublishRequest is instrumented; the span never carries the
// approver.
func (s *Store) ApprovePublishRequest(ctx context.Context, incident string, version uint64, approver string) (store.PendingPublish, error) {
	c := s.begin(ctx, "ApprovePublishRequest", incidentAttr(incident), versionAttr(version))
	r, err := s.st.ApprovePublishRequest(c.ctx, incident, version, approver)
	return r, c.end(err)
}

// DeletePublishRequest is instrumented.
func (s *Store) DeletePublishRequest(ctx context.Context, incident string, version uint64) error {
	c := s.begin(ctx, "DeletePublishRequest", incidentAttr(incident), versionAttr(version))
	return c.end(s.st.DeletePublishRequest(c.ctx, incident, version))
}
