package store

import (
	"context"
	"fmt"
	"slices"
)

// LedgerBatch reads many subjects of one incident at once: the practice
// view checks a register of thousands of ids, which must not cost a round
// trip each.
type LedgerBatch interface {
	// ReadMany returns one View per key, in order (a key given twice gets
	// two equal views): every Record is read at the same visible version
	// (every View has the same Visible), Pin and Erased are what Read
	// reports for the key, Replay is never set. 0 keys read nothing but
	// the incident's head. ErrNotFound for an unknown incident;
	// ErrUnavailable if any part cannot be read: never a partial answer.
	ReadMany(ctx context.Context, incident string, keys []Key) ([]View, error)
}

// PracticeCount counts the entries of one practice in a version:
// affected, under review, and per cohort (indexed like the spec's cohorts)
// [affected, under review] as in Counts.PerCohort.
type PracticeCount struct {
	Affected    uint64      `json:"affected"`
	UnderReview uint64      `json:"under_review"`
	PerCohort   [][2]uint64 `json:"per_cohort"`
}

// PracticeCounter computes a version's PracticeCounts while its entries
// are loaded (the loader) or read back (Verify).
type PracticeCounter struct {
	cohorts int
	counts  []PracticeCount
}

// NewPracticeCounter returns a counter for a version with the given
// number of practices (Manifest.Practices) and cohorts.
func NewPracticeCounter(practices, cohorts int) *PracticeCounter {
	c := &PracticeCounter{cohorts: cohorts, counts: make([]PracticeCount, practices)}
	for i := range c.counts {
		c.counts[i].PerCohort = make([][2]uint64, cohorts)
	}
	return c
}

// Add counts one record; a record naming no practice is not counted.
func (c *PracticeCounter) Add(r Record) error {
	if r.Practice == 0 {
		return nil
	}
	i := int(r.Practice) - 1
	if i >= len(c.counts) {
		return fmt.Errorf("%w: practice index out of range", ErrVerify)
	}
	pc := &c.counts[i]
	col := 0
	switch r.Status {
	case Affected:
		pc.Affected++
	case UnderReview:
		pc.UnderReview++
		col = 1
	}
	for j := 0; j < c.cohorts; j++ {
		if r.Cohorts&(1<<uint(j)) != 0 {
			pc.PerCohort[j][col]++
		}
	}
	return nil
}

// Counts returns the counts, indexed like Manifest.Practices.
func (c *PracticeCounter) Counts() []PracticeCount { return c.counts }

// equalPracticeCounts compares two tables of counts.
func equalPracticeCounts(a, b []PracticeCount) bool {
	return slices.EqualFunc(a, b, func(x, y PracticeCount) bool {
		return x.Affected == y.Affected && x.UnderReview == y.UnderReview && slices.Equal(x.PerCohort, y.PerCohort)
	})
}

// verifyPracticeCounts checks a manifest's practice counts (when it has
// them) against the counts of the stored records.
func verifyPracticeCounts(m Manifest, got *PracticeCounter) error {
	if m.PracticeCounts == nil || got == nil {
		return nil
	}
	if !equalPracticeCounts(m.PracticeCounts, got.Counts()) {
		return fmt.Errorf("%w: stored per-practice counts differ from the loader's", ErrVerify)
	}
	return nil
}
