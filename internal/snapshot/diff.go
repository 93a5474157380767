package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"math/bits"

	"github.com/impact-health/impact/internal/store"
)

// CohortDiff compares one cohort's membership between two versions. The
// cohort is matched by id, not by index, across the two specs.
type CohortDiff struct {
	ID string
	// Added: subjects in the cohort at Version and not at Against.
	Added uint64
	// Removed: subjects in the cohort at Against and not at Version.
	Removed uint64
	// Members: subjects in the cohort at Version (any status).
	Members uint64
}

// Diff compares version Version of an incident with version Against.
type Diff struct {
	Incident string
	Version  uint64
	Against  uint64
	// Added: subjects in Version's roster and not in Against's.
	Added uint64
	// Removed: subjects in Against's roster and not in Version's (they are
	// NOT_AFFECTED at Version).
	Removed uint64
	// Changed: subjects in both with a different status, cohort set (by
	// cohort id) or practice (by practice id).
	Changed uint64
	// Cohorts covers the union of both specs' cohort ids: Version's cohorts
	// in spec order, then those only Against has.
	Cohorts []CohortDiff
	// Transitions counts status changes [from Against, to Version];
	// store.NotAffected stands for absence. Unchanged statuses are omitted.
	Transitions map[[2]store.Status]uint64
	// SpecChanged: the canonical specs differ.
	SpecChanged bool
}

// errStopScan ends a Scan early when the consumer of a pulled scan stops.
var errStopScan = errors.New("scan stopped")

// pulledScan turns a store's callback Scan into a pull iterator.
type pulledScan struct {
	next func() (store.Entry, bool)
	stop func()
	err  error
	prev store.Key
	n    uint64
}

func pullScan(ctx context.Context, st store.Versions, incident string, version uint64) *pulledScan {
	p := &pulledScan{}
	seq := func(yield func(store.Entry) bool) {
		err := st.Scan(ctx, incident, version, func(e store.Entry) error {
			if !yield(e) {
				return errStopScan
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStopScan) {
			p.err = fmt.Errorf("scan %s v%d: %w", incident, version, err)
		}
	}
	p.next, p.stop = iter.Pull(iter.Seq[store.Entry](seq))
	return p
}

// emptyScan is a pulled scan of no entries (version 0).
func emptyScan() *pulledScan {
	return &pulledScan{next: func() (store.Entry, bool) { return store.Entry{}, false }, stop: func() {}}
}

// pull returns the next entry, checking that keys strictly increase (the
// merge join depends on it).
func (p *pulledScan) pull() (store.Entry, bool, error) {
	e, ok := p.next()
	if !ok {
		return e, false, p.err
	}
	if p.n > 0 && bytes.Compare(e.Key[:], p.prev[:]) <= 0 {
		return e, false, fmt.Errorf("%w: scan keys out of order", store.ErrVerify)
	}
	p.prev = e.Key
	p.n++
	return e, true, nil
}

// cohortMap maps one spec's cohort bits to indexes of the union of cohorts.
type cohortMap []int

func (m cohortMap) each(set uint64, fn func(u int)) {
	for set != 0 {
		i := bits.TrailingZeros64(set)
		set &^= 1 << uint(i)
		if i < len(m) {
			fn(m[i])
		}
	}
}

// unionSet is a set of union cohort indexes (at most 2*store.MaxCohorts).
type unionSet [2]uint64

func (m cohortMap) union(set uint64) unionSet {
	var u unionSet
	m.each(set, func(i int) { u[i/64] |= 1 << uint(i%64) })
	return u
}

func (u unionSet) each(fn func(i int)) {
	for w := range u {
		for x := u[w]; x != 0; {
			i := bits.TrailingZeros64(x)
			x &^= 1 << uint(i)
			fn(w*64 + i)
		}
	}
}

// diff merge-joins the scans of two versions.
func diff(ctx context.Context, st store.Versions, a, b *Version) (*Diff, error) {
	d := &Diff{
		Incident:    a.Info.Incident,
		Version:     a.Info.Version,
		Transitions: make(map[[2]store.Status]uint64),
		SpecChanged: b == nil || !bytes.Equal(a.Manifest.Spec, b.Manifest.Spec),
	}
	ids := make(map[string]int)
	mapA := make(cohortMap, len(a.Spec.Cohorts))
	for i, c := range a.Spec.Cohorts {
		ids[c.ID] = len(d.Cohorts)
		mapA[i] = len(d.Cohorts)
		d.Cohorts = append(d.Cohorts, CohortDiff{ID: c.ID})
	}
	var mapB cohortMap
	var practicesB []string
	sb := emptyScan()
	if b != nil {
		d.Against = b.Info.Version
		practicesB = b.Manifest.Practices
		mapB = make(cohortMap, len(b.Spec.Cohorts))
		for i, c := range b.Spec.Cohorts {
			u, ok := ids[c.ID]
			if !ok {
				u = len(d.Cohorts)
				ids[c.ID] = u
				d.Cohorts = append(d.Cohorts, CohortDiff{ID: c.ID})
			}
			mapB[i] = u
		}
		sb = pullScan(ctx, st, b.Info.Incident, b.Info.Version)
	}
	defer sb.stop()
	sa := pullScan(ctx, st, a.Info.Incident, a.Info.Version)
	defer sa.stop()

	practice := func(names []string, i uint32) (string, error) {
		if i == 0 {
			return "", nil
		}
		if int(i) > len(names) {
			return "", fmt.Errorf("%w: practice index out of range", store.ErrVerify)
		}
		return names[i-1], nil
	}
	ea, okA, err := sa.pull()
	if err != nil {
		return nil, err
	}
	eb, okB, err := sb.pull()
	if err != nil {
		return nil, err
	}
	for okA || okB {
		c := 0
		switch {
		case !okB:
			c = -1
		case !okA:
			c = 1
		default:
			c = bytes.Compare(ea.Key[:], eb.Key[:])
		}
		switch {
		case c < 0: // only at Version
			d.Added++
			d.Transitions[[2]store.Status{store.NotAffected, ea.Record.Status}]++
			mapA.each(ea.Record.Cohorts, func(u int) {
				d.Cohorts[u].Added++
				d.Cohorts[u].Members++
			})
		case c > 0: // only at Against
			d.Removed++
			d.Transitions[[2]store.Status{eb.Record.Status, store.NotAffected}]++
			mapB.each(eb.Record.Cohorts, func(u int) { d.Cohorts[u].Removed++ })
		default:
			ua, ub := mapA.union(ea.Record.Cohorts), mapB.union(eb.Record.Cohorts)
			pa, err := practice(a.Manifest.Practices, ea.Record.Practice)
			if err != nil {
				return nil, err
			}
			pb, err := practice(practicesB, eb.Record.Practice)
			if err != nil {
				return nil, err
			}
			if ea.Record.Status != eb.Record.Status {
				d.Transitions[[2]store.Status{eb.Record.Status, ea.Record.Status}]++
			}
			if ea.Record.Status != eb.Record.Status || ua != ub || pa != pb {
				d.Changed++
			}
			ua.each(func(u int) { d.Cohorts[u].Members++ })
			unionSet{ua[0] &^ ub[0], ua[1] &^ ub[1]}.each(func(u int) { d.Cohorts[u].Added++ })
			unionSet{ub[0] &^ ua[0], ub[1] &^ ua[1]}.each(func(u int) { d.Cohorts[u].Removed++ })
		}
		if c <= 0 {
			if ea, okA, err = sa.pull(); err != nil {
				return nil, err
			}
		}
		if c >= 0 {
			if eb, okB, err = sb.pull(); err != nil {
				return nil, err
			}
		}
	}
	return d, nil
}
