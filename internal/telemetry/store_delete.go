package telemetry

import "context"

// DeleteVersion is instrumented like the Store methods. It is declared
// here, not delegated by embedding, so that every method of the wrapped
// store is timed and counted.
func (s *instrumentedStore) DeleteVersion(ctx context.Context, incident string, version uint64) error {
	c := s.begin(ctx, "DeleteVersion", inc(incident), ver(version))
	return c.end(s.st.DeleteVersion(c.ctx, incident, version))
}
