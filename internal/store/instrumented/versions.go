package instrumented

import (
	"context"

	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/telemetry"
)

// Incidents is instrumented; the span carries the number of incidents.
func (s *Store) Incidents(ctx context.Context) ([]store.Head, error) {
	c := s.begin(ctx, "Incidents")
	hs, err := s.st.Incidents(c.ctx)
	return hs, c.end(err, countAttr(len(hs)))
}

// Head is instrumented; the span carries the visible version.
func (s *Store) Head(ctx context.Context, incident string) (store.Head, error) {
	c := s.begin(ctx, "Head", incidentAttr(incident))
	h, err := s.st.Head(c.ctx, incident)
	return h, c.end(err, versionAttr(h.Visible))
}

// Stage is instrumented, and so is the Stager it returns.
func (s *Store) Stage(ctx context.Context, req store.StageRequest) (store.Stager, error) {
	c := s.begin(ctx, "Stage", incidentAttr(req.Incident))
	stg, err := s.st.Stage(c.ctx, req)
	if err != nil {
		return nil, c.end(err)
	}
	_ = c.end(nil, versionAttr(stg.Version()))
	return &stager{s: s, st: stg, incident: req.Incident}, nil
}

// Versions is instrumented; the span carries the number of versions.
func (s *Store) Versions(ctx context.Context, incident string) ([]store.VersionInfo, error) {
	c := s.begin(ctx, "Versions", incidentAttr(incident))
	vs, err := s.st.Versions(c.ctx, incident)
	return vs, c.end(err, countAttr(len(vs)))
}

// Version is instrumented.
func (s *Store) Version(ctx context.Context, incident string, version uint64) (store.VersionInfo, store.Manifest, error) {
	c := s.begin(ctx, "Version", incidentAttr(incident), versionAttr(version))
	info, m, err := s.st.Version(c.ctx, incident, version)
	return info, m, c.end(err)
}

// Scan is instrumented; the span carries the number of entries scanned.
func (s *Store) Scan(ctx context.Context, incident string, version uint64, fn func(store.Entry) error) error {
	c := s.begin(ctx, "Scan", incidentAttr(incident), versionAttr(version))
	n := 0
	err := s.st.Scan(c.ctx, incident, version, func(e store.Entry) error { n++; return fn(e) })
	return c.end(err, countAttr(n))
}

// Publish is instrumented; the span never carries the actor.
func (s *Store) Publish(ctx context.Context, req store.PublishRequest) (store.VersionInfo, error) {
	c := s.begin(ctx, "Publish", incidentAttr(req.Incident), versionAttr(req.Version))
	info, err := s.st.Publish(c.ctx, req)
	return info, c.end(err)
}

// stager instruments the calls of one Stager like the store's.
type stager struct {
	s        *Store
	st       store.Stager
	incident string
}

func (g *stager) Version() uint64 { return g.st.Version() }

func (g *stager) Put(ctx context.Context, entries []store.Entry) error {
	c := g.s.begin(ctx, "Stager.Put", incidentAttr(g.incident), versionAttr(g.st.Version()), countAttr(len(entries)))
	return c.end(g.st.Put(c.ctx, entries))
}

func (g *stager) Commit(ctx context.Context, m store.Manifest, want store.Digest, wantCount uint64) (store.VersionInfo, error) {
	c := g.s.begin(ctx, "Stager.Commit", incidentAttr(g.incident), versionAttr(g.st.Version()), telemetry.AttrCount.Int64(int64(wantCount)))
	info, err := g.st.Commit(c.ctx, m, want, wantCount)
	return info, c.end(err)
}

func (g *stager) Abort(ctx context.Context) error {
	c := g.s.begin(ctx, "Stager.Abort", incidentAttr(g.incident), versionAttr(g.st.Version()))
	return c.end(g.st.Abort(c.ctx))
}
