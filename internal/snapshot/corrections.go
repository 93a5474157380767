package snapshot

import (
	"context"
	"fmt"
	"sort"

	"github.com/impact-health/impact/internal/store"
)

// CohortChange counts the notified subjects of one cohort whose status
// would change from From (the status of their latest notice) to To (their
// status at the version compared).
type CohortChange struct {
	Cohort   string
	From, To store.Status
	Count    uint64
}

// NotifiedChanges is the contradiction report of a version: what publishing
// it would do to the subjects who were already notified (who hold a pin).
type NotifiedChanges struct {
	Incident string
	Version  uint64
	// Pinned is the number of notified subjects compared.
	Pinned uint64
	// Total is the number of them whose status at Version differs from the
	// status of their latest notice: each would be owed a correction. It is
	// the number a publish of Version must be allowed to correct
	// (accept_corrections).
	Total uint64
	// Transitions counts them by [pinned status, status at Version];
	// store.NotAffected stands for absence from Version's roster.
	Transitions map[[2]store.Status]uint64
	// Cohorts counts them per cohort and transition, sorted by cohort then
	// transition. A subject counts in every cohort it was notified as a
	// member of (by cohort id, at its pinned version) and every cohort it
	// is a member of at Version, so the rows of one subject may be more than
	// one; a subject in no cohort at either version counts in Total only.
	Cohorts []CohortChange
}

// correctionsBatch is how many pinned subjects' records at the compared
// version are read at once.
const correctionsBatch = 1024

// Corrections computes the contradiction report of publishing version:
// every pin of the incident is compared with the subject's record at
// version. It reads the pins once, and the records of the pinned subjects
// at version in batches (never the whole roster, and never more than one
// batch of pins held at a time), so it costs the number of notified
// subjects, not the size of the roster. The version must be staged or
// published.
func (s *Service) Corrections(ctx context.Context, incident string, version uint64) (*NotifiedChanges, error) {
	target, err := s.readable(ctx, incident, version)
	if err != nil {
		return nil, err
	}
	c, err := s.countCorrections(ctx, target, nil)
	if err != nil {
		return nil, fmt.Errorf("notified changes %s v%d: %w", incident, version, err)
	}
	return c, nil
}

// countCorrections counts what publishing content does to notified
// subjects. every, if not nil, is called after each batch (a publish renews
// its fence there).
func (s *Service) countCorrections(ctx context.Context, content *Version, every func() error) (*NotifiedChanges, error) {
	nc := &NotifiedChanges{
		Incident:    content.Info.Incident,
		Version:     content.Info.Version,
		Transitions: make(map[[2]store.Status]uint64),
	}
	cohortsOf := func(v *Version) []string {
		ids := make([]string, len(v.Spec.Cohorts))
		for i, c := range v.Spec.Cohorts {
			ids[i] = c.ID
		}
		return ids
	}
	targetIDs := cohortsOf(content)
	// The cohort ids of each pinned version: a few versions at most.
	pinnedIDs := make(map[uint64][]string)
	perCohort := make(map[CohortChange]uint64)

	err := store.PinRecords(ctx, s.st, content.Info.Incident, content.Info.Version, correctionsBatch, func(_ store.Key, p store.Pin, r store.Record) error {
		nc.Pinned++
		if p.Record.Status == r.Status {
			return nil
		}
		nc.Total++
		tr := [2]store.Status{p.Record.Status, r.Status}
		nc.Transitions[tr]++
		ids, ok := pinnedIDs[p.Version]
		if !ok {
			v, err := s.catalog.Get(ctx, content.Info.Incident, p.Version)
			if err != nil {
				return fmt.Errorf("pinned v%d: %w", p.Version, err)
			}
			ids = cohortsOf(v)
			pinnedIDs[p.Version] = ids
		}
		seen := make(map[string]bool, 2)
		add := func(ids []string, set uint64) {
			for j, id := range ids {
				if set&(1<<uint(j)) != 0 && !seen[id] {
					seen[id] = true
					perCohort[CohortChange{Cohort: id, From: tr[0], To: tr[1]}]++
				}
			}
		}
		add(ids, p.Record.Cohorts)
		add(targetIDs, r.Cohorts)
		return nil
	}, every)
	if err != nil {
		return nil, err
	}
	for k, n := range perCohort {
		k.Count = n
		nc.Cohorts = append(nc.Cohorts, k)
	}
	sort.Slice(nc.Cohorts, func(i, j int) bool {
		a, b := nc.Cohorts[i], nc.Cohorts[j]
		if a.Cohort != b.Cohort {
			return a.Cohort < b.Cohort
		}
		if a.From != b.From {
			return a.From < b.From
		}
		return a.To < b.To
	})
	return nc, nil
}
