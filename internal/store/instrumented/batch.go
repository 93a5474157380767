package instrumented

import (
	"context"

	"github.com/impact-health/impact/internal/store"
)

// ReadMany is instrumented; the span carries the number of keys, never a
// key, and the visible version read at.
func (s *Store) ReadMany(ctx context.Context, incident string, keys []store.Key) ([]store.View, error) {
	c := s.begin(ctx, "ReadMany", incidentAttr(incident), countAttr(len(keys)))
	vs, err := s.st.ReadMany(c.ctx, incident, keys)
	var visible uint64
	if len(vs) > 0 {
		visible = vs[0].Visible
	}
	return vs, c.end(err, versionAttr(visible))
}
