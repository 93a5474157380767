package demo

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/store"
)

func TestSpecParsesWithThreeCohorts(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteSpec(&buf); err != nil {
		t.Fatal(err)
	}
	spec, err := snapshot.ParseSpec(buf.Bytes())
	if err != nil {
		t.Fatalf("demo spec rejected: %v", err)
	}
	if spec.Incident.ID != IncidentID {
		t.Errorf("incident id = %q, want %q", spec.Incident.ID, IncidentID)
	}
	var ids []string
	contacts := map[string]bool{}
	for _, c := range spec.Cohorts {
		ids = append(ids, c.ID)
		if !strings.HasPrefix(c.SupportContact, "0800 ") {
			t.Errorf("cohort %s: support contact %q is not an 0800 number", c.ID, c.SupportContact)
		}
		if contacts[c.SupportContact] {
			t.Errorf("cohort %s: support contact shared with another cohort", c.ID)
		}
		contacts[c.SupportContact] = true
		if len(c.DataCategories) == 0 || c.Notice.Subject == "" || c.Notice.Body == "" {
			t.Errorf("cohort %s: incomplete: %+v", c.ID, c)
		}
		// The notice names the number patients can call.
		if num := strings.Fields(c.SupportContact); !strings.Contains(c.Notice.Body, strings.Join(num[:3], " ")) {
			t.Errorf("cohort %s: notice body does not give its support number", c.ID)
		}
	}
	if !slices.Equal(ids, Cohorts) {
		t.Errorf("cohorts = %v, want %v", ids, Cohorts)
	}
	if spec.UnderReviewNotice.Body == "" || spec.NotAffectedNotice.Body == "" {
		t.Error("status notices missing")
	}
}

func roster(t *testing.T, opts RosterOptions) ([]byte, Summary) {
	t.Helper()
	var buf bytes.Buffer
	sum, err := WriteRoster(&buf, opts)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), sum
}

func TestRosterDeterministic(t *testing.T) {
	a, sa := roster(t, RosterOptions{N: 5000, Seed: 7})
	b, sb := roster(t, RosterOptions{N: 5000, Seed: 7})
	if !bytes.Equal(a, b) {
		t.Fatal("same seed gave different rosters")
	}
	if fmt.Sprint(sa) != fmt.Sprint(sb) {
		t.Fatalf("same seed gave different summaries: %v vs %v", sa, sb)
	}
	c, _ := roster(t, RosterOptions{N: 5000, Seed: 8})
	if bytes.Equal(a, c) {
		t.Fatal("different seeds gave the same roster")
	}
}

var (
	subjectRE  = regexp.MustCompile(`^patient-[0-9]{7}$`)
	practiceRE = map[string]*regexp.Regexp{
		CohortNorthland: regexp.MustCompile(`^GP-NL-0(0[1-9]|[1-3][0-9]|4[0-5])$`),
		CohortReferrals: regexp.MustCompile(`^GP-RF-([0-2][0-9][0-9]|3[0-4][0-9]|35[0-5])$`),
	}
)

// checkRoster parses a roster independently of the generator and checks
// every row's shape, returning the counts it saw.
func checkRoster(t *testing.T, data []byte) Summary {
	t.Helper()
	r := csv.NewReader(bytes.NewReader(data))
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatalf("roster is not valid CSV: %v", err)
	}
	if got := strings.Join(rows[0], ","); got != RosterHeader {
		t.Fatalf("header = %q", got)
	}
	sum := Summary{Cohorts: map[string]int{}}
	seen := map[string]bool{}
	last := ""
	for i, row := range rows[1:] {
		line := i + 2
		id, status, cohorts, practice := row[0], row[1], row[2], row[3]
		if !subjectRE.MatchString(id) {
			t.Fatalf("row %d: bad subject id shape", line)
		}
		if seen[id] {
			t.Fatalf("row %d: duplicate subject", line)
		}
		if id <= last {
			t.Fatalf("row %d: not ordered by subject", line)
		}
		seen[id], last = true, id
		switch status {
		case "affected":
			sum.Affected++
		case "under_review":
			sum.UnderReview++
		default:
			t.Fatalf("row %d: bad status %q", line, status)
		}
		cs := strings.Split(cohorts, ";")
		if len(cs) == 0 || cs[0] == "" {
			t.Fatalf("row %d: no cohort", line)
		}
		// Cohorts are known, distinct, and in spec order.
		pos := -1
		for _, c := range cs {
			p := slices.Index(Cohorts, c)
			if p <= pos {
				t.Fatalf("row %d: cohorts %q unknown, repeated or out of order", line, cohorts)
			}
			pos = p
			sum.Cohorts[c]++
		}
		if len(cs) > 1 {
			sum.MultiCohort++
		}
		// The practice belongs to the practice-based cohort, northland first.
		switch {
		case slices.Contains(cs, CohortNorthland):
			if !practiceRE[CohortNorthland].MatchString(practice) {
				t.Fatalf("row %d: practice %q does not match cohort northland", line, practice)
			}
		case slices.Contains(cs, CohortReferrals):
			if !practiceRE[CohortReferrals].MatchString(practice) {
				t.Fatalf("row %d: practice %q does not match cohort referrals", line, practice)
			}
		default:
			if practice != "" {
				t.Fatalf("row %d: uploads-only row has practice %q", line, practice)
			}
			sum.NoPractice++
		}
		sum.Rows++
	}
	if seen[NotAffectedSubject] {
		t.Error("NotAffectedSubject is in the roster")
	}
	if len(rows) < 3 || strings.Join(rows[1], ",") != AffectedSubject+",affected,northland,GP-NL-001" ||
		strings.Join(rows[2], ",") != UnderReviewSubject+",under_review,referrals,GP-RF-001" {
		t.Errorf("well-known subjects missing: %q, %q", rows[1], rows[2])
	}
	return sum
}

func TestRosterShapeAndCounts(t *testing.T) {
	tests := []struct {
		opts            RosterOptions
		rows, underRevw int
	}{
		{RosterOptions{}, 10000, 300},
		{RosterOptions{N: 2}, 2, 1},
		{RosterOptions{N: 1000, Seed: 3, UnderReviewPercent: 10}, 1000, 100},
		{RosterOptions{N: 1000, Seed: 3, UnderReviewPercent: -1}, 1000, 1},
		{RosterOptions{N: 777, Seed: -5, UnderReviewPercent: 100}, 777, 776}, // AffectedSubject stays affected
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%+v", tt.opts), func(t *testing.T) {
			data, sum := roster(t, tt.opts)
			got := checkRoster(t, data)
			if sum.Rows != tt.rows || sum.UnderReview != tt.underRevw || sum.Affected != tt.rows-tt.underRevw {
				t.Errorf("summary = %+v, want %d rows, %d under review", sum, tt.rows, tt.underRevw)
			}
			if fmt.Sprint(got) != fmt.Sprint(sum) {
				t.Errorf("summary %+v does not match the CSV %+v", sum, got)
			}
		})
	}
}

func TestRosterDistribution(t *testing.T) {
	_, sum := roster(t, RosterOptions{N: 20000, Seed: 1})
	share := func(c string) float64 { return float64(sum.Cohorts[c]) / float64(sum.Rows) }
	if s := share(CohortReferrals); s < 0.65 || s > 0.8 {
		t.Errorf("referrals share %.3f, want mostly referrals", s)
	}
	if s := share(CohortNorthland); s < 0.12 || s > 0.2 {
		t.Errorf("northland share %.3f", s)
	}
	if s := share(CohortUploads); s < 0.1 || s > 0.18 {
		t.Errorf("uploads share %.3f", s)
	}
	if m := float64(sum.MultiCohort) / float64(sum.Rows); m < 0.005 || m > 0.03 {
		t.Errorf("multi-cohort share %.4f, want a few", m)
	}
}

func TestRosterRejectsBadOptions(t *testing.T) {
	for _, opts := range []RosterOptions{{N: 1}, {N: -3}, {N: MaxN + 1}, {UnderReviewPercent: 101}} {
		if _, err := WriteRoster(&bytes.Buffer{}, opts); err == nil {
			t.Errorf("%+v: no error", opts)
		}
	}
}

func BenchmarkWriteRoster(b *testing.B) {
	for b.Loop() {
		var buf bytes.Buffer
		if _, err := WriteRoster(&buf, RosterOptions{N: 125000, Seed: 1}); err != nil {
			b.Fatal(err)
		}
	}
}

// shaKeyer keys subjects with plain SHA-256 (the real keyer adds a pepper).
type shaKeyer struct{}

func (shaKeyer) SubjectKey(id string) store.Key {
	sum := sha256.Sum256([]byte(id))
	return store.Key(sum[:store.KeySize])
}

// TestRosterPassesValidation checks spec and roster with the parser impactd
// uses on upload.
func TestRosterPassesValidation(t *testing.T) {
	var specBuf bytes.Buffer
	if err := WriteSpec(&specBuf); err != nil {
		t.Fatal(err)
	}
	spec, err := snapshot.ParseSpec(specBuf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	data, sum := roster(t, RosterOptions{N: 20000, Seed: 42})
	r, err := snapshot.ParseRoster(bytes.NewReader(data), spec, shaKeyer{}, nil)
	if err != nil {
		t.Fatalf("demo roster rejected: %v", err)
	}
	if r.Entries != uint64(sum.Rows) || r.Counts.Affected != uint64(sum.Affected) || r.Counts.UnderReview != uint64(sum.UnderReview) {
		t.Errorf("parser counts %+v, generator summary %+v", r.Counts, sum)
	}
	for i, c := range spec.Cohorts {
		if got := r.Counts.PerCohort[i][0] + r.Counts.PerCohort[i][1]; got != uint64(sum.Cohorts[c.ID]) {
			t.Errorf("cohort %s: parser %d members, generator %d", c.ID, got, sum.Cohorts[c.ID])
		}
	}
	if want := NorthlandPractices + ReferralPractices; len(r.Practices) > want || len(r.Practices) < want*9/10 {
		t.Errorf("%d practices, want about %d", len(r.Practices), want)
	}
}

// TestRevision: a later revision changes a small, reproducible part of the
// same roster and never the well-known subjects.
func TestRevision(t *testing.T) {
	read := func(rev int) map[string]string {
		var b strings.Builder
		if _, err := WriteRoster(&b, RosterOptions{N: 20000, Seed: 7, Revision: rev}); err != nil {
			t.Fatal(err)
		}
		rows := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n")[1:] {
			id, rest, _ := strings.Cut(line, ",")
			rows[id] = rest
		}
		return rows
	}
	v1, v2, v2again := read(1), read(2), read(2)
	if fmt.Sprint(v2) != fmt.Sprint(v2again) {
		t.Fatal("a revision must be reproducible")
	}
	removed, changed := 0, 0
	for id, r := range v1 {
		r2, ok := v2[id]
		switch {
		case !ok:
			removed++
		case r2 != r:
			changed++
		}
	}
	if len(v2) > len(v1) || removed < 50 || removed > 200 || changed < 150 || changed > 500 {
		t.Fatalf("revision 2 of 20,000 rows: %d removed, %d changed", removed, changed)
	}
	for _, id := range []string{AffectedSubject, UnderReviewSubject} {
		if v1[id] != v2[id] {
			t.Fatalf("%s changed between revisions", id)
		}
	}
}
