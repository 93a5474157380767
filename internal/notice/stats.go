package notice

import (
	"context"
	"errors"

	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
)

// CohortStats counts one cohort's members at the visible version.
type CohortStats struct {
	ID, Title string
	Members   uint64 // affected or under review, in this cohort
	Notified  uint64 // notified at their current status
	Due       uint64 // a notice is due
}

// Stats is the notification progress of an incident at its visible version.
type Stats struct {
	Incident       string
	Visible        uint64
	Cohorts        []CohortStats
	Affected       uint64
	UnderReview    uint64
	Notified       uint64 // distinct subjects notified at their current status
	Due            uint64 // distinct subjects a notice is due for (corrections included)
	CorrectionsDue uint64 // notified subjects now not affected, owed a correction
}

// statsBatch is how many pinned subjects' visible records are read at once.
const statsBatch = 1024

// Stats computes the notification progress. It reads every pin (at most the
// affected population) and their records at the visible version, never the
// whole roster: member counts come from the version's verified counts.
func (s *Service) Stats(ctx context.Context, incident string) (Stats, error) {
	head, err := s.st.Head(ctx, incident)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Stats{}, status.ErrNotFound
	case err != nil:
		return Stats{}, status.Unavailable(err)
	case head.Visible == 0:
		return Stats{}, status.ErrNotFound
	}
	ver, err := s.versions.Get(ctx, incident, head.Visible)
	if err != nil {
		return Stats{}, status.Unavailable(err)
	}
	st := Stats{
		Incident:    incident,
		Visible:     head.Visible,
		Cohorts:     make([]CohortStats, len(ver.Spec.Cohorts)),
		Affected:    ver.Info.Counts.Affected,
		UnderReview: ver.Info.Counts.UnderReview,
	}
	for i, c := range ver.Spec.Cohorts {
		st.Cohorts[i] = CohortStats{ID: c.ID, Title: c.Title}
		if i < len(ver.Info.Counts.PerCohort) {
			st.Cohorts[i].Members = ver.Info.Counts.PerCohort[i][0] + ver.Info.Counts.PerCohort[i][1]
		}
	}

	err = store.PinRecords(ctx, s.st, incident, head.Visible, statsBatch, func(_ store.Key, p store.Pin, r store.Record) error {
		st.count(p, r)
		return nil
	}, nil)
	if err != nil {
		return Stats{}, status.Unavailable(err)
	}
	for i := range st.Cohorts {
		st.Cohorts[i].Due = st.Cohorts[i].Members - st.Cohorts[i].Notified
	}
	st.Due = st.Affected + st.UnderReview - st.Notified + st.CorrectionsDue
	return st, nil
}

// count adds one pinned subject whose visible record is r.
func (st *Stats) count(p store.Pin, r store.Record) {
	switch {
	case r.Status == store.NotAffected:
		if p.Record.Status != store.NotAffected {
			st.CorrectionsDue++
		}
	case p.Record.Status == r.Status:
		st.Notified++
		for i := range st.Cohorts {
			if r.Cohorts&(1<<uint(i)) != 0 {
				st.Cohorts[i].Notified++
			}
		}
	}
}
