package instrumented

import "context"

// DeleteVersion is instrumented.
func (s *Store) DeleteVersion(ctx context.Context, incident string, version uint64) error {
	c := s.begin(ctx, "DeleteVersion", incidentAttr(incident), versionAttr(version))
	return c.end(s.st.DeleteVersion(c.ctx, incident, version))
}
