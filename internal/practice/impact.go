package practice

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
)

// CohortImpact counts one cohort's patients of a practice at the visible
// version.
type CohortImpact struct {
	Cohort      snapshot.Cohort
	Affected    uint64
	UnderReview uint64
	Notified    uint64 // notified at their current status
	Due         uint64 // a notice is due
}

// Impact is a practice's summary of an incident at its visible version.
type Impact struct {
	Incident, IncidentTitle, Practice string
	Version                           uint64
	// Affected: at least one patient of the practice is affected or under
	// review.
	Affected bool
	Cohorts  []CohortImpact
	// Totals over distinct patients.
	AffectedPatients, UnderReviewPatients, Notified, Due, CorrectionsDue uint64
	// Notice is the spec's practice_notice (nil: none).
	Notice *snapshot.Notice
	// CountedAt is when Notified, Due and CorrectionsDue were counted.
	CountedAt time.Time
}

// Stats is one practice's row of the ops table.
type Stats struct {
	Practice                                             string
	Affected, UnderReview, Notified, Due, CorrectionsDue uint64
}

// Table is the per-practice table of an incident at its visible version.
type Table struct {
	Incident  string
	Visible   uint64
	Practices []Stats // sorted by practice id
	CountedAt time.Time
}

// practiceTally is what the ledger says about one practice's patients.
type practiceTally struct {
	notified          uint64
	notifiedPerCohort []uint64
	correctionsDue    uint64
}

// tally is one count of an incident's pins against its visible version.
type tally struct {
	visible    uint64
	at         time.Time
	byPractice map[string]*practiceTally
}

// Impact summarises the caller's practice and records the call in the
// audit trail.
func (s *Service) Impact(ctx context.Context, c Caller, incident string) (Impact, error) {
	im, err := s.impact(ctx, c, incident)
	ev := store.AuditEvent{Action: AuditImpact, Actor: c.Actor, Incident: incident, Version: im.Version,
		Detail: fmt.Sprintf("practice %s: summary", c.Practice)}
	return im, s.audit.Record(ctx, ev, err)
}

func (s *Service) impact(ctx context.Context, c Caller, incident string) (Impact, error) {
	if c.Practice == "" {
		return Impact{}, fmt.Errorf("%w: no practice", status.ErrInvalidArgument)
	}
	ver, err := s.visible(ctx, incident)
	if err != nil {
		return Impact{}, err
	}
	counts, err := s.practiceCounts(ctx, ver)
	if err != nil {
		return Impact{}, err
	}
	t, err := s.tally(ctx, ver)
	if err != nil {
		return Impact{}, err
	}
	im := Impact{Incident: incident, IncidentTitle: ver.Spec.Incident.Title, Practice: c.Practice,
		Version: ver.Info.Version, Notice: ver.Spec.PracticeNotice, CountedAt: t.at}
	var pc store.PracticeCount
	if i := practiceIndex(ver.Manifest.Practices, c.Practice); i != 0 && int(i) <= len(counts) {
		pc = counts[i-1]
	}
	pt := t.byPractice[c.Practice]
	if pt == nil {
		pt = &practiceTally{}
	}
	for j, co := range ver.Spec.Cohorts {
		ci := CohortImpact{Cohort: co}
		if j < len(pc.PerCohort) {
			ci.Affected, ci.UnderReview = pc.PerCohort[j][0], pc.PerCohort[j][1]
		}
		if j < len(pt.notifiedPerCohort) {
			ci.Notified = pt.notifiedPerCohort[j]
		}
		ci.Due = ci.Affected + ci.UnderReview - ci.Notified
		im.Cohorts = append(im.Cohorts, ci)
	}
	im.AffectedPatients, im.UnderReviewPatients = pc.Affected, pc.UnderReview
	im.Affected = pc.Affected+pc.UnderReview > 0
	im.Notified, im.CorrectionsDue = pt.notified, pt.correctionsDue
	im.Due = pc.Affected + pc.UnderReview - pt.notified + pt.correctionsDue
	return im, nil
}

// Stats returns the per-practice table: every practice of the visible
// version's roster, and every practice with a patient notified as its own
// who is now owed a correction.
func (s *Service) Stats(ctx context.Context, incident string) (Table, error) {
	ver, err := s.visible(ctx, incident)
	if err != nil {
		return Table{}, err
	}
	counts, err := s.practiceCounts(ctx, ver)
	if err != nil {
		return Table{}, err
	}
	t, err := s.tally(ctx, ver)
	if err != nil {
		return Table{}, err
	}
	rows := map[string]*Stats{}
	row := func(name string) *Stats {
		if r, ok := rows[name]; ok {
			return r
		}
		r := &Stats{Practice: name}
		rows[name] = r
		return r
	}
	for i, name := range ver.Manifest.Practices {
		r := row(name)
		if i < len(counts) {
			r.Affected, r.UnderReview = counts[i].Affected, counts[i].UnderReview
		}
	}
	for name, pt := range t.byPractice {
		r := row(name)
		r.Notified, r.CorrectionsDue = pt.notified, pt.correctionsDue
	}
	out := Table{Incident: incident, Visible: ver.Info.Version, CountedAt: t.at}
	for _, r := range rows {
		r.Due = r.Affected + r.UnderReview - r.Notified + r.CorrectionsDue
		out.Practices = append(out.Practices, *r)
	}
	slices.SortFunc(out.Practices, func(a, b Stats) int {
		switch {
		case a.Practice < b.Practice:
			return -1
		case a.Practice > b.Practice:
			return 1
		}
		return 0
	})
	return out, nil
}

// visible returns the incident's visible version.
func (s *Service) visible(ctx context.Context, incident string) (*snapshot.Version, error) {
	head, err := s.ledger.Head(ctx, incident)
	if err != nil {
		return nil, storeErr(err)
	}
	if head.Visible == 0 {
		return nil, status.ErrNotFound
	}
	return s.version(ctx, incident, head.Visible)
}

// maxCountedVersions bounds the per-practice counts kept for versions
// staged without them.
const maxCountedVersions = 16

// practiceCounts returns a version's per-practice counts: those computed
// when it was staged, or, for a version staged before they existed, counted
// from its records once and kept.
func (s *Service) practiceCounts(ctx context.Context, ver *snapshot.Version) ([]store.PracticeCount, error) {
	m := ver.Manifest
	if m.PracticeCounts != nil || len(m.Practices) == 0 {
		return m.PracticeCounts, nil
	}
	ref := versionRef{ver.Info.Incident, ver.Info.Version}
	s.mu.Lock()
	c, ok := s.counts[ref]
	s.mu.Unlock()
	if ok {
		return c, nil
	}
	pc := store.NewPracticeCounter(len(m.Practices), m.Cohorts)
	if err := s.ledger.Scan(ctx, ref.incident, ref.version, func(e store.Entry) error { return pc.Add(e.Record) }); err != nil {
		return nil, unavailable(err)
	}
	s.mu.Lock()
	if len(s.counts) >= maxCountedVersions {
		clear(s.counts)
	}
	s.counts[ref] = pc.Counts()
	s.mu.Unlock()
	return pc.Counts(), nil
}

// tallyBatch is how many pinned subjects' visible records are read at once.
const tallyBatch = 1024

// tally returns the notified and due counts of every practice at the
// visible version ver: reused if counted at the same visible version less
// than the TTL ago, else counted again in one pass over the incident's pins
// (at most the notified population, never the roster) and their records
// at the visible version, as status.Service.Stats does. A pinned subject
// counts for the practice of its visible record (notified when its pinned
// status is its visible status) or, when it is no longer in the roster,
// for the practice its pinned record names (a correction is due).
func (s *Service) tally(ctx context.Context, ver *snapshot.Version) (*tally, error) {
	incident, visible := ver.Info.Incident, ver.Info.Version
	fresh := func() *tally {
		s.mu.Lock()
		defer s.mu.Unlock()
		if t := s.tallies[incident]; t != nil && t.visible == visible && s.now().Sub(t.at) < s.ttl {
			return t
		}
		return nil
	}
	if t := fresh(); t != nil {
		return t, nil
	}
	s.tallyMu.Lock()
	defer s.tallyMu.Unlock()
	if t := fresh(); t != nil { // counted while this call waited
		return t, nil
	}
	t := &tally{visible: visible, at: s.now(), byPractice: map[string]*practiceTally{}}
	of := func(name string) *practiceTally {
		pt := t.byPractice[name]
		if pt == nil {
			pt = &practiceTally{notifiedPerCohort: make([]uint64, len(ver.Spec.Cohorts))}
			t.byPractice[name] = pt
		}
		return pt
	}
	name := func(names []string, i uint32) string {
		if i == 0 || int(i) > len(names) {
			return ""
		}
		return names[i-1]
	}
	err := store.PinRecords(ctx, s.ledger, incident, visible, tallyBatch, func(_ store.Key, p store.Pin, r store.Record) error {
		switch {
		case r.Status != store.NotAffected:
			n := name(ver.Manifest.Practices, r.Practice)
			if n == "" || p.Record.Status != r.Status {
				return nil
			}
			pt := of(n)
			pt.notified++
			for j := range pt.notifiedPerCohort {
				if r.Cohorts&(1<<uint(j)) != 0 {
					pt.notifiedPerCohort[j]++
				}
			}
		case p.Record.Status != store.NotAffected && p.Record.Practice != 0:
			pv, err := s.version(ctx, incident, p.Version)
			if err != nil {
				return err
			}
			if n := name(pv.Manifest.Practices, p.Record.Practice); n != "" {
				of(n).correctionsDue++
			}
		}
		return nil
	}, nil)
	if err != nil {
		return nil, unavailable(err)
	}
	s.mu.Lock()
	s.tallies[incident] = t
	s.mu.Unlock()
	return t, nil
}
