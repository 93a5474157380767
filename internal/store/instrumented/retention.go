package instrumented

import "context"

// DeleteVersion is instrumented.
func (s *Store) DeleteVersion(ctx context.Context, incident string, version uint64) error {
	c := s.begin(ctx, "DeleteVersion", incidentAttr(incident), versionAttr(version))
	return c.end(s.st.DeleteVersion(c.ctx, incident, version))
}

// CollectStages is instrumented; the span carries the number collected.
func (s *Store) CollectStages(ctx context.Context, incident string) ([]uint64, error) {
	c := s.begin(ctx, "CollectStages", incidentAttr(incident))
	vs, err := s.st.CollectStages(c.ctx, incident)
	return vs, c.end(err, countAttr(len(vs)))
}
