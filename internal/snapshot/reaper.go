package snapshot

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/impact-health/impact/internal/store"
)

// CollectStages collects, in every incident, the versions left staging by
// a loader that stopped renewing its stage lease (a crashed impactd, an
// abandoned upload) and the records of aborted versions that an
// interrupted abort left behind (store.Retention.CollectStages). A stage
// whose loader is alive, on this replica or another, is never touched. It
// returns the versions collected per incident; on a store error it returns
// what it collected so far with the error, and a later call finishes.
// Collections are recorded in the audit trail (store.AuditGC).
func (s *Service) CollectStages(ctx context.Context, actor string) (map[string][]uint64, error) {
	heads, err := s.st.Incidents(ctx)
	if err != nil {
		return nil, fmt.Errorf("collect stages: %w", err)
	}
	out := map[string][]uint64{}
	for _, h := range heads {
		vs, err := s.collectStages(ctx, h.Incident, actor)
		if len(vs) > 0 {
			out[h.Incident] = vs
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// collectStages collects one incident's lapsed stages and audits them.
func (s *Service) collectStages(ctx context.Context, incident, actor string) ([]uint64, error) {
	vs, err := s.st.CollectStages(ctx, incident)
	if err != nil {
		err = fmt.Errorf("collect stages of %s: %w", incident, err)
	}
	if len(vs) > 0 {
		ev := store.AuditEvent{Action: store.AuditGC, Actor: actor, Incident: incident,
			Detail: "collected stages whose lease expired: " + versionsDetail(vs)}
		if rerr := s.record(ctx, ev, nil); rerr != nil && err == nil {
			err = rerr
		}
	}
	return vs, err
}

// ReaperActor is the actor recorded for collections the reaper runs.
const ReaperActor = "impactd:reaper"

// RunReaper collects lapsed stages now and then every interval until ctx
// ends (interval <= 0: store.DefaultStageLease), logging what it collected
// (incident ids and version numbers only) and the errors it met.
func (s *Service) RunReaper(ctx context.Context, interval time.Duration, log *slog.Logger) {
	if interval <= 0 {
		interval = store.DefaultStageLease
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		got, err := s.CollectStages(ctx, ReaperActor)
		for inc, vs := range got {
			log.Warn("collected stages whose loader stopped renewing their lease", "incident", inc, "versions", versionsDetail(vs))
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("stage collection failed; retrying later", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
