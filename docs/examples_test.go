package docs

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/store"
)

// The example spec and roster that formats.md shows parse with the real
// parsers, and give the counts formats.md states.
func TestExamplesParse(t *testing.T) {
	specBytes, err := os.ReadFile("examples/spec.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := snapshot.ParseSpec(specBytes)
	if err != nil {
		t.Fatalf("examples/spec.yaml: %v", err)
	}
	if spec.Incident.ID != "example-2026-03" || len(spec.Cohorts) != 2 ||
		spec.Cohorts[0].ID != "clinic-letters" || spec.Cohorts[1].ID != "test-results" {
		t.Fatalf("examples/spec.yaml: incident %q, cohorts %+v", spec.Incident.ID, spec.Cohorts)
	}
	if spec.Incident.Started != "2026-03-02" || spec.Incident.Disclosed != "2026-03-16" {
		t.Errorf("dates %q %q", spec.Incident.Started, spec.Incident.Disclosed)
	}

	keyer, err := auth.NewKeyer([]byte("docs example pepper, 32 bytes or more"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("examples/roster.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var entries []store.Entry
	r, err := snapshot.ParseRoster(f, spec, keyer, func(e store.Entry) error {
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		t.Fatalf("examples/roster.csv: %v", err)
	}
	want := store.Counts{Entries: 5, Affected: 3, UnderReview: 2, PerCohort: [][2]uint64{{2, 0}, {2, 1}}}
	if r.Counts.Entries != want.Entries || r.Counts.Affected != want.Affected || r.Counts.UnderReview != want.UnderReview ||
		!slices.Equal(r.Counts.PerCohort, want.PerCohort) {
		t.Errorf("counts %+v, want %+v", r.Counts, want)
	}
	if !slices.Equal(r.Practices, []string{"PRAC-0042", "PRAC-0107"}) {
		t.Errorf("practices %q", r.Practices)
	}
	if len(entries) != 5 {
		t.Errorf("%d entries emitted", len(entries))
	}
	// The quoted subject id is the id without its quotes.
	if entries[1].Key != keyer.SubjectKey("patient-1002") {
		t.Error(`"patient-1002" was not keyed as patient-1002`)
	}
}

// formats.md shows the example files verbatim, so that the page and the
// files a test parses cannot differ.
func TestFormatsShowTheExamples(t *testing.T) {
	doc := readDoc(t, "formats.md")
	for _, name := range []string{"examples/spec.yaml", "examples/roster.csv"} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		marker := "<!-- example: " + name + " -->"
		i := strings.Index(doc, marker)
		if i < 0 {
			t.Errorf("formats.md has no %s", marker)
			continue
		}
		block := fencedBlockAfter(doc[i+len(marker):])
		if block != string(b) {
			t.Errorf("formats.md's copy of %s differs from the file:\n%s\nfile:\n%s", name, block, b)
		}
	}
}

// fencedBlockAfter returns the content of the first ``` fence in s.
func fencedBlockAfter(s string) string {
	i := strings.Index(s, "```")
	if i < 0 {
		return ""
	}
	s = s[i:]
	nl := strings.IndexByte(s, '\n')
	if nl < 0 {
		return ""
	}
	s = s[nl+1:]
	j := strings.Index(s, "```")
	if j < 0 {
		return ""
	}
	return s[:j]
}

var testName = regexp.MustCompile("`((?:Test|test)[A-Z][A-Za-z0-9_]*)`")

// Every test that contract.md names beside an invariant exists.
func TestInvariantTestsExist(t *testing.T) {
	doc := readDoc(t, "contract.md")
	names := testName.FindAllStringSubmatch(doc, -1)
	if len(names) < 10 {
		t.Fatalf("contract.md names %d tests; the invariants table is missing", len(names))
	}
	defined := definedTests(t)
	for _, m := range names {
		if !defined[m[1]] {
			t.Errorf("contract.md names %s, which no Go file defines", m[1])
		}
	}
}
