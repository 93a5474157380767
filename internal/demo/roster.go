package demo

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
)

// Roster size limits and defaults.
const (
	// DefaultN is the default number of roster rows.
	DefaultN = 10000
	// MaxN is the largest roster WriteRoster generates.
	MaxN = 4_000_000
	// DefaultUnderReviewPercent is the default share of rows under review.
	DefaultUnderReviewPercent = 3.0
	// Population is the number of registered patients subject ids are drawn
	// from (1.8 million, as in the incident), unless the roster needs more.
	Population = 1_800_000
	// NorthlandPractices and ReferralPractices are the number of GP
	// practices of each practice-based cohort.
	NorthlandPractices = 45
	ReferralPractices  = 355
)

// RosterHeader is the header line of a roster CSV.
const RosterHeader = "subject_id,status,cohorts,practice_id"

// Share of rows whose first cohort is each cohort, and of rows in a second
// cohort too. Most affected patients were in the referral records.
const (
	shareNorthland   = 0.16
	shareUploads     = 0.12
	shareSecondGroup = 0.015
)

// RosterOptions configures WriteRoster. The zero value gives the defaults.
type RosterOptions struct {
	// N is the number of rows (default DefaultN); at least 2, at most MaxN.
	N int
	// Seed makes the roster: the same seed and options give the same bytes.
	Seed int64
	// UnderReviewPercent is the share of rows under review, in percent
	// (0 means DefaultUnderReviewPercent; negative means none but
	// UnderReviewSubject). AffectedSubject is affected whatever the share.
	UnderReviewPercent float64
	// Revision 0 or 1 is the first roster of an incident; 2 and later are
	// the same roster as a later investigation would revise it: about 0.5%
	// of subjects corrected to not affected (removed), 0.5% moved between
	// affected and under review, and 1% found in the uploads cohort too.
	// Each revision builds on the previous one. AffectedSubject and
	// UnderReviewSubject never change.
	Revision int
}

// Summary counts what WriteRoster wrote.
type Summary struct {
	// Rows is the number of roster rows (subjects), header excluded.
	Rows int
	// Affected and UnderReview count rows by status.
	Affected    int
	UnderReview int
	// Cohorts counts members (affected or under review) per cohort id.
	Cohorts map[string]int
	// MultiCohort counts rows in more than one cohort.
	MultiCohort int
	// NoPractice counts rows without a practice id.
	NoPractice int
}

// WriteRoster writes a synthetic roster CSV (RosterHeader, then one row per
// subject, ordered by subject number) and returns what it wrote.
//
// Subject ids look like "patient-0001234", drawn from a population of
// Population patients (or 2N if larger). AffectedSubject and
// UnderReviewSubject are always the first two rows; NotAffectedSubject is
// never in the roster. About 72% of rows are in the referrals cohort with a
// practice GP-RF-001..355, 16% in northland with GP-NL-001..045, 12% only in
// uploads without a practice, and 1.5% are also in a second cohort.
func WriteRoster(w io.Writer, opts RosterOptions) (Summary, error) {
	n := opts.N
	if n == 0 {
		n = DefaultN
	}
	if n < 2 || n > MaxN {
		return Summary{}, fmt.Errorf("demo: roster size %d out of range [2, %d]", n, MaxN)
	}
	pct := opts.UnderReviewPercent
	switch {
	case pct == 0:
		pct = DefaultUnderReviewPercent
	case pct < 0:
		pct = 0
	case pct > 100 || math.IsNaN(pct):
		return Summary{}, fmt.Errorf("demo: under-review percent %v out of range [0, 100]", opts.UnderReviewPercent)
	}
	underReview := min(n-1, max(1, int(math.Round(float64(n)*pct/100))))

	population := max(Population, 2*n)
	// #nosec G404 -- synthetic demo data must be reproducible from a seed; not a secret.
	rng := rand.New(rand.NewPCG(uint64(opts.Seed), 0x696d70616374))
	sum := Summary{Cohorts: make(map[string]int, len(Cohorts))}
	bw := bufio.NewWriterSize(w, 64<<10)
	_, _ = bw.WriteString(RosterHeader + "\n") // a write error sticks and is returned by Flush

	line := make([]byte, 0, 64)
	emit := func(num int, status string, cohorts []string, practice string) {
		line = append(line[:0], "patient-"...)
		line = appendPadded(line, num, 7)
		line = append(line, ',')
		line = append(line, status...)
		line = append(line, ',')
		for i, c := range cohorts {
			if i > 0 {
				line = append(line, ';')
			}
			line = append(line, c...)
			sum.Cohorts[c]++
		}
		line = append(line, ',')
		line = append(line, practice...)
		line = append(line, '\n')
		_, _ = bw.Write(line) // a write error sticks and is returned by Flush
		sum.Rows++
		if status == "under_review" {
			sum.UnderReview++
		} else {
			sum.Affected++
		}
		if len(cohorts) > 1 {
			sum.MultiCohort++
		}
		if practice == "" {
			sum.NoPractice++
		}
	}

	// The well-known subjects: numbers 1 and 2.
	emit(1, "affected", []string{CohortNorthland}, practiceID("NL", 1))
	emit(2, "under_review", []string{CohortReferrals}, practiceID("RF", 1))

	// Selection sampling (Knuth's Algorithm S): exactly n-2 distinct
	// numbers from 3..population, in order, each equally likely; and, among
	// those rows, exactly underReview-1 under review.
	needRows, needReview := n-2, underReview-1
	rowsLeft := n - 2
	for num := 3; needRows > 0; num++ {
		if rng.IntN(population-num+1) >= needRows {
			continue
		}
		needRows--
		status := "affected"
		if rng.IntN(rowsLeft) < needReview {
			status = "under_review"
			needReview--
		}
		rowsLeft--
		cohorts, practice := drawCohorts(rng)
		var keep bool
		if status, cohorts, keep = revise(opts.Seed, num, opts.Revision, status, cohorts); keep {
			emit(num, status, cohorts, practice)
		}
	}
	if err := bw.Flush(); err != nil {
		return Summary{}, fmt.Errorf("demo: write roster: %w", err)
	}
	return sum, nil
}

// drawCohorts picks a row's cohorts (in spec order) and its practice.
func drawCohorts(rng *rand.Rand) ([]string, string) {
	var northland, referrals, uploads bool
	switch u := rng.Float64(); {
	case u < shareNorthland:
		northland = true
	case u < shareNorthland+shareUploads:
		uploads = true
	default:
		referrals = true
	}
	if rng.Float64() < shareSecondGroup {
		switch {
		case !uploads:
			uploads = true
		case rng.Float64() < 0.3:
			northland = true
		default:
			referrals = true
		}
	}
	var cohorts []string
	practice := ""
	if northland {
		cohorts = append(cohorts, CohortNorthland)
		practice = practiceID("NL", skewed(rng, NorthlandPractices))
	}
	if referrals {
		cohorts = append(cohorts, CohortReferrals)
		if practice == "" {
			practice = practiceID("RF", skewed(rng, ReferralPractices))
		}
	}
	if uploads {
		cohorts = append(cohorts, CohortUploads)
	}
	return cohorts, practice
}

// skewed returns a practice number in 1..n, lower numbers more likely (a few
// large practices, many small ones).
func skewed(rng *rand.Rand, n int) int {
	return 1 + int(float64(n)*math.Pow(rng.Float64(), 1.6))
}

func practiceID(region string, num int) string {
	return fmt.Sprintf("GP-%s-%03d", region, num)
}

// appendPadded appends num in decimal, zero-padded to width digits.
func appendPadded(b []byte, num, width int) []byte {
	var d [20]byte
	s := strconv.AppendInt(d[:0], int64(num), 10)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// revise applies revisions 2..rev to one row, each revision's changes drawn
// from a hash of (seed, subject number, revision) so that the base roster's
// random stream is untouched and every revision is reproducible.
func revise(seed int64, num, rev int, status string, cohorts []string) (string, []string, bool) {
	for r := 2; r <= rev; r++ {
		// #nosec G404 -- synthetic demo data must be reproducible; not a secret.
		u := rand.New(rand.NewPCG(uint64(seed)^uint64(num)<<20, uint64(r))).Float64()
		switch {
		case u < 0.005:
			return "", nil, false // corrected: not affected after all
		case u < 0.010:
			if status == "affected" {
				status = "under_review"
			} else {
				status = "affected"
			}
		case u < 0.020 && !slices.Contains(cohorts, CohortUploads):
			cohorts = append(slices.Clone(cohorts), CohortUploads)
		}
	}
	return status, cohorts, true
}
