package snapshot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/impact-health/impact/internal/store"
)

// DefaultKeepLast is how many of an incident's newest versions GC keeps
// when asked to keep 0 or fewer.
const DefaultKeepLast = 3

// GC removes the versions of an incident that no one can need any more:
// versions that are not visible, not among the keepLast newest (by version
// number, whatever their state; keepLast <= 0 means DefaultKeepLast), not
// referenced by any subject's pin, and not being loaded. Before that it
// collects the stages whose loader stopped renewing their lease
// (store.Retention.CollectStages: aborted, their records deleted); a stage
// whose loader is alive is kept. The store has the
// last word: a version it refuses with store.ErrPinned (a claim pinned it
// meanwhile) is kept, never removed. It returns the versions removed and
// the versions kept, oldest first; a version another GC removed at the same
// time is in neither list.
//
// If the store fails part way, GC returns what it removed so far with the
// error; running it again finishes the job.
//
// The run is recorded in the audit trail (store.AuditGC).
func (s *Service) GC(ctx context.Context, incident string, keepLast int, actor string) (removed, kept []uint64, err error) {
	if keepLast <= 0 {
		keepLast = DefaultKeepLast
	}
	var collected []uint64
	removed, kept, err = s.gc(ctx, incident, keepLast, &collected)
	detail := fmt.Sprintf("keep last %d: removed %s; kept %s", keepLast, versionsDetail(removed), versionsDetail(kept))
	if len(collected) > 0 {
		detail = fmt.Sprintf("collected stages whose lease expired: %s; %s", versionsDetail(collected), detail)
	}
	ev := store.AuditEvent{Action: store.AuditGC, Actor: actor, Incident: incident, Detail: detail}
	return removed, kept, s.record(ctx, ev, err)
}

func (s *Service) gc(ctx context.Context, incident string, keepLast int, collected *[]uint64) (removed, kept []uint64, err error) {
	head, err := s.st.Head(ctx, incident)
	if err != nil {
		return nil, nil, versionError("gc", incident, 0, err)
	}
	if *collected, err = s.st.CollectStages(ctx, incident); err != nil {
		return nil, nil, fmt.Errorf("gc %s: collect stages: %w", incident, err)
	}
	versions, err := s.st.Versions(ctx, incident)
	if err != nil {
		return nil, nil, fmt.Errorf("gc %s: versions: %w", incident, err)
	}
	slices.SortFunc(versions, func(a, b store.VersionInfo) int { return cmp.Compare(a.Version, b.Version) })
	// The pins, read once, spare the store deletions it would refuse; the
	// store still checks each deletion against the pins of that moment.
	pinned := map[uint64]bool{}
	err = s.st.Pins(ctx, incident, func(_ store.Key, p store.Pin) error {
		pinned[p.Version] = true
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("gc %s: pins: %w", incident, err)
	}
	newest := max(0, len(versions)-keepLast)
	for i, vi := range versions {
		v := vi.Version
		if i >= newest || v == head.Visible || pinned[v] || vi.State == store.StateStaging {
			kept = append(kept, v)
			continue
		}
		err := s.st.DeleteVersion(ctx, incident, v)
		switch {
		case err == nil:
			removed = append(removed, v)
			s.catalog.Forget(incident, v)
		case errors.Is(err, store.ErrPinned):
			kept = append(kept, v)
		case errors.Is(err, store.ErrNotFound):
			// Removed by someone else meanwhile.
		default:
			// Report every version not removed yet as kept.
			for _, rest := range versions[i:] {
				kept = append(kept, rest.Version)
			}
			return removed, kept, fmt.Errorf("gc %s: delete v%d: %w", incident, v, err)
		}
	}
	return removed, kept, nil
}
