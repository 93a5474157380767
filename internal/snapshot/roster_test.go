package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/impact-health/impact/internal/store"
)

const header = "subject_id,status,cohorts,practice_id\n"

// parse parses a roster against the test spec and returns the emitted
// entries too.
func parse(t testing.TB, csv string) (*Roster, []store.Entry, error) {
	t.Helper()
	var entries []store.Entry
	r, err := ParseRoster(strings.NewReader(csv), testSpec(t), testKeyer, func(e store.Entry) error {
		entries = append(entries, e)
		return nil
	})
	return r, entries, err
}

func TestParseRosterValid(t *testing.T) {
	tests := []struct {
		name string
		csv  string
		want []store.Record // in file order
	}{
		{"header only", header, nil},
		{"header only, no newline", strings.TrimSuffix(header, "\n"), nil},
		{"one row", header + "p1,affected,northland,GP-1\n",
			[]store.Record{{Status: store.Affected, Cohorts: 1, Practice: 1}}},
		{"no final newline", header + "p1,affected,northland,GP-1",
			[]store.Record{{Status: store.Affected, Cohorts: 1, Practice: 1}}},
		{"BOM", "\xef\xbb\xbf" + header + "p1,affected,uploads,\n",
			[]store.Record{{Status: store.Affected, Cohorts: 4}}},
		{"three-column header", "subject_id,status,cohorts\np1,affected,referrals\n",
			[]store.Record{{Status: store.Affected, Cohorts: 2}}},
		{"header case and spaces", "Subject_ID, STATUS ,Cohorts,Practice_Id\r\np1,affected,referrals,\r\n",
			[]store.Record{{Status: store.Affected, Cohorts: 2}}},
		{"CRLF", "subject_id,status,cohorts\r\np1,affected,referrals\r\np2,under_review,\r\n",
			[]store.Record{{Status: store.Affected, Cohorts: 2}, {Status: store.UnderReview}}},
		{"status case-insensitive", header + "p1,AFFECTED,northland,\np2,Under_Review,,\n",
			[]store.Record{{Status: store.Affected, Cohorts: 1}, {Status: store.UnderReview}}},
		{"under review with cohorts", header + "p1,under_review,referrals;uploads,\n",
			[]store.Record{{Status: store.UnderReview, Cohorts: 6}}},
		{"cohort bits by spec index", header + "p1,affected,uploads;northland,\n",
			[]store.Record{{Status: store.Affected, Cohorts: 5}}},
		{"spaces around cohorts", header + "p1,affected, uploads ; northland ,\n",
			[]store.Record{{Status: store.Affected, Cohorts: 5}}},
		{"practice dictionary first seen", header + "p1,affected,northland,GP-B\np2,affected,northland,GP-A\np3,affected,northland,GP-B\np4,affected,northland,\n",
			[]store.Record{
				{Status: store.Affected, Cohorts: 1, Practice: 1},
				{Status: store.Affected, Cohorts: 1, Practice: 2},
				{Status: store.Affected, Cohorts: 1, Practice: 1},
				{Status: store.Affected, Cohorts: 1},
			}},
		{"practice 64 bytes", header + "p1,affected,northland," + strings.Repeat("a", 64) + "\n",
			[]store.Record{{Status: store.Affected, Cohorts: 1, Practice: 1}}},
		{"subject 128 bytes", header + strings.Repeat("é", 64) + ",affected,northland,\n",
			[]store.Record{{Status: store.Affected, Cohorts: 1}}},
		{"blank lines skipped", header + "\np1,affected,northland,\n\r\n\np2,affected,northland,\n\n",
			[]store.Record{{Status: store.Affected, Cohorts: 1}, {Status: store.Affected, Cohorts: 1}}},
		{"quoted fields", header + `"p,1","affected","northland;uploads","GP.1_x"` + "\n",
			[]store.Record{{Status: store.Affected, Cohorts: 5, Practice: 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, entries, err := parse(t, tc.csv)
			if err != nil {
				t.Fatal(err)
			}
			var got []store.Record
			for _, e := range entries {
				got = append(got, e.Record)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("records %+v\nwant    %+v", got, tc.want)
			}
			if r.Entries != uint64(len(tc.want)) {
				t.Errorf("Entries %d, want %d", r.Entries, len(tc.want))
			}
		})
	}
}

func TestParseRosterKeysAndPractices(t *testing.T) {
	r, entries, err := parse(t, header+`"p""1",affected,northland,GP-B`+"\n"+"p2,affected,northland,GP-A\n"+`"p,3",under_review,,GP-B`+"\n")
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{`p"1`, "p2", "p,3"} {
		if entries[i].Key != testKeyer.SubjectKey(id) {
			t.Errorf("entry %d: key is not SubjectKey(%q)", i, id)
		}
	}
	if want := []string{"GP-B", "GP-A"}; !slices.Equal(r.Practices, want) {
		t.Errorf("practices %v, want %v", r.Practices, want)
	}
	want := store.Counts{Entries: 3, Affected: 2, UnderReview: 1, PerCohort: [][2]uint64{{2, 0}, {0, 0}, {0, 0}}}
	if fmt.Sprint(r.Counts) != fmt.Sprint(want) {
		t.Errorf("counts %+v, want %+v", r.Counts, want)
	}
}

// TestParseRosterInvalid checks each rule on its own: one error, at the
// right row and field.
func TestParseRosterInvalid(t *testing.T) {
	row := func(s string) string { return header + "ok-1,affected,northland,\n" + s + "\n" } // s is row 3
	tests := []struct {
		name  string
		csv   string
		row   int
		field string
		rule  string
	}{
		{"empty file", "", 1, "header", "required"},
		{"missing header", "p1,affected,northland,\n", 1, "header", "must be subject_id,status,cohorts"},
		{"header with extra column", "subject_id,status,cohorts,practice_id,email\n", 1, "header", "must be"},
		{"header columns reordered", "status,subject_id,cohorts\n", 1, "header", "must be"},
		{"only a BOM", "\xef\xbb\xbf", 1, "header", "must be"},
		{"subject missing", row(",affected,northland,"), 3, "subject_id", "required"},
		{"subject quoted empty", row(`"",affected,northland,`), 3, "subject_id", "required"},
		{"subject too long", row(strings.Repeat("x", 129) + ",affected,northland,"), 3, "subject_id", "at most 128 bytes"},
		{"subject invalid UTF-8", row("p\xff1,affected,northland,"), 3, "subject_id", "UTF-8"},
		{"subject control character", row("p\x011,affected,northland,"), 3, "subject_id", "control"},
		{"subject C1 control character", row("p\u00851,affected,northland,"), 3, "subject_id", "control"},
		{"subject tab", row("p\t1,affected,northland,"), 3, "subject_id", "control"},
		{"subject leading space", row(" p1,affected,northland,"), 3, "subject_id", "leading or trailing"},
		{"subject trailing space", row("p1 ,affected,northland,"), 3, "subject_id", "leading or trailing"},
		{"status unknown", row("p1,affcted,northland,"), 3, "status", "must be affected or under_review"},
		{"status not_affected", row("p1,not_affected,northland,"), 3, "status", "must be affected or under_review"},
		{"status missing", row("p1,,northland,"), 3, "status", "must be affected or under_review"},
		{"affected without cohorts", row("p1,affected,,"), 3, "cohorts", "at least one cohort"},
		{"affected with blank cohorts", row("p1,affected, ,"), 3, "cohorts", "at least one cohort"},
		{"unknown cohort", row("p1,affected,northland;southland,"), 3, "cohorts", "unknown cohort"},
		{"cohort id case", row("p1,affected,Northland,"), 3, "cohorts", "unknown cohort"},
		{"duplicate cohort", row("p1,affected,uploads;northland;uploads,"), 3, "cohorts", "cohort uploads listed twice"},
		{"empty cohort in list", row("p1,affected,northland;;uploads,"), 3, "cohorts", "empty cohort id"},
		{"trailing semicolon", row("p1,affected,northland;,"), 3, "cohorts", "empty cohort id"},
		{"cohorts invalid UTF-8", row("p1,affected,north\xffland,"), 3, "cohorts", "UTF-8"},
		{"practice too long", row("p1,affected,northland," + strings.Repeat("a", 65)), 3, "practice_id", "at most 64 bytes"},
		{"practice space", row("p1,affected,northland,GP 1"), 3, "practice_id", "[A-Za-z0-9._-]"},
		{"practice slash", row("p1,affected,northland,GP/1"), 3, "practice_id", "[A-Za-z0-9._-]"},
		{"practice invalid UTF-8", row("p1,affected,northland,GP\xff"), 3, "practice_id", "[A-Za-z0-9._-]"},
		{"too few fields", row("p1,affected,northland"), 3, "row", "must have 4 fields, has 3"},
		{"too many fields", row("p1,affected,northland,GP-1,x"), 3, "row", "must have 4 fields, has 5"},
		{"four fields under a three-column header", "subject_id,status,cohorts\np1,affected,northland,GP-1\n", 2, "row", "must have 3 fields, has 4"},
		{"unterminated quote", row(`"p1,affected,northland,`), 3, "row", "unterminated"},
		{"quote in unquoted field", row(`p"1,affected,northland,`), 3, "row", "quote inside an unquoted field"},
		{"text after closing quote", row(`"p1"x,affected,northland,`), 3, "row", "after a closing quote"},
		{"row counted after blank lines", header + "\n\n" + "p1,affected,,\n", 4, "cohorts", "at least one cohort"},
		{"row too long", row("p1,affected,northland," + strings.Repeat("a", MaxRowBytes)), 3, "row", "at most 65536 bytes"},
		{"duplicate subject", header + "p1,affected,northland,\np2,affected,northland,\n\np1,under_review,,\n", 5, "subject_id", "duplicate subject (first on row 2)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parse(t, tc.csv)
			ve := validationError(t, err)
			if ve.Input != InputRoster || ve.Total != 1 || len(ve.Errors) != 1 {
				t.Fatalf("got %v, want exactly one roster error", ve)
			}
			if e := ve.Errors[0]; e.Row != tc.row || e.Field != tc.field || !strings.Contains(e.Rule, tc.rule) {
				t.Errorf("got %+v, want row %d, field %s, rule containing %q", e, tc.row, tc.field, tc.rule)
			}
		})
	}
}

func TestParseRosterRowAfterLongRow(t *testing.T) {
	csv := header + "p1,affected,northland," + strings.Repeat("a", 3*MaxRowBytes) + "\np2,affected,nope,\np3,affected,northland,\n"
	_, _, err := parse(t, csv)
	ve := validationError(t, err)
	want := []RowError{
		{Row: 2, Field: "row", Rule: "must be at most 65536 bytes"},
		{Row: 3, Field: "cohorts", Rule: `unknown cohort id "nope" (the spec's cohorts: northland, referrals, uploads)`},
	}
	if !slices.Equal(ve.Errors, want) || ve.Total != 2 {
		t.Errorf("got %+v, want %+v", ve.Errors, want)
	}
}

// TestUnknownCohortNamesOnlyCohortIDs: an unknown cohort id is named, with
// the valid ones, but a value that is not shaped like a cohort id, or is
// the row's own subject id (a shifted column), is not echoed.
func TestUnknownCohortNamesOnlyCohortIDs(t *testing.T) {
	tests := []struct{ cell, want string }{
		{"northlnd", `unknown cohort id "northlnd" (the spec's cohorts: northland, referrals, uploads)`},
		{"Mrs Smith", `unknown cohort id (the spec's cohorts: northland, referrals, uploads)`},
		{"p-77", `unknown cohort id (the spec's cohorts: northland, referrals, uploads)`},
	}
	for _, tc := range tests {
		_, _, err := parse(t, header+"p-77,affected,"+tc.cell+",\n")
		ve := validationError(t, err)
		if len(ve.Errors) != 1 || ve.Errors[0].Rule != tc.want {
			t.Errorf("cohort %q: %+v, want rule %q", tc.cell, ve.Errors, tc.want)
		}
	}
}

// TestParseRosterSeveralErrorsInOneRow: every broken rule of a row is
// reported, in column order.
func TestParseRosterSeveralErrorsInOneRow(t *testing.T) {
	_, _, err := parse(t, header+" p1,maybe,nope,GP 1\n")
	ve := validationError(t, err)
	var fields []string
	for _, e := range ve.Errors {
		fields = append(fields, e.Field)
	}
	if want := []string{"subject_id", "status", "cohorts", "practice_id"}; !slices.Equal(fields, want) || ve.Total != 4 {
		t.Errorf("fields %v (total %d), want %v", fields, ve.Total, want)
	}
}

// TestParseRosterNoCellValuesInErrors: errors name rows, fields and rules,
// never what the cells held.
func TestParseRosterNoCellValuesInErrors(t *testing.T) {
	rows := []string{
		"PIIa" + strings.Repeat("x", 200) + ",affected,northland,",
		" PIIb,affected,northland,",
		"PIIc\x01,affected,northland,",
		"PIId\xff,affected,northland,",
		"ok1,PIIe,northland,",
		"ok2,affected,PIIf,",
		"ok3,affected,northland;PIIg,",
		"ok4,affected,northland,PIIh PIIh",
		"ok5,affected,northland,PIIi" + strings.Repeat("x", 80),
		"PIIj,affected,northland,PIIj,extra",
		`"PIIk,affected,northland,`,
		`PIIl"x,affected,northland,`,
		"PIIm,affected,northland,",
		"PIIm,affected,northland,",
	}
	_, _, err := parse(t, header+strings.Join(rows, "\n")+"\n")
	ve := validationError(t, err)
	if ve.Total != len(rows)-1 {
		t.Errorf("total %d, want %d: %v", ve.Total, len(rows)-1, ve)
	}
	msg := ve.Error()
	for _, e := range ve.Errors {
		msg += "|" + e.Field + "|" + e.Rule
	}
	if strings.Contains(msg, "PII") || strings.Contains(msg, "xxx") {
		t.Errorf("errors echo cell values: %s", msg)
	}
}

func TestParseRosterErrorCapAndOrder(t *testing.T) {
	var b strings.Builder
	b.WriteString(header)
	// 300 data rows (rows 2..301): every third one has a bad status, and
	// rows 200.. repeat subjects of rows 2.. (duplicates found at the end).
	for i := 0; i < 300; i++ {
		status := "affected"
		if i%3 == 0 {
			status = "bad"
		}
		id := fmt.Sprintf("p%d", i)
		if i >= 198 {
			id = fmt.Sprintf("p%d", i-198)
		}
		fmt.Fprintf(&b, "%s,%s,northland,\n", id, status)
	}
	_, _, err := parse(t, b.String())
	ve := validationError(t, err)
	if len(ve.Errors) != DefaultMaxErrors {
		t.Errorf("%d errors listed, want %d", len(ve.Errors), DefaultMaxErrors)
	}
	// 100 bad statuses, 102 duplicates (rows 200..301).
	if ve.Total != 100+102 {
		t.Errorf("total %d, want %d", ve.Total, 202)
	}
	if !slices.IsSortedFunc(ve.Errors, func(a, b RowError) int { return a.Row - b.Row }) {
		t.Error("errors not in row order")
	}
	if ve.Errors[0].Row != 2 || ve.Errors[len(ve.Errors)-1].Row > 301 {
		t.Errorf("first error on row %d, last on row %d", ve.Errors[0].Row, ve.Errors[len(ve.Errors)-1].Row)
	}
	// The first 100 errors by row: bad statuses on rows 2, 5, ..., then
	// duplicates and statuses mixed from row 200 on.
	var dup RowError
	for _, e := range ve.Errors {
		if e.Field == "subject_id" {
			dup = e
			break
		}
	}
	if want := (RowError{Row: 200, Field: "subject_id", Rule: "duplicate subject (first on row 2)"}); dup != want {
		t.Errorf("first duplicate %+v, want %+v", dup, want)
	}

	// A smaller cap.
	_, err = RosterParser{Spec: testSpec(t), Keyer: testKeyer, MaxErrors: 3}.Parse(strings.NewReader(b.String()), nil)
	ve = validationError(t, err)
	if len(ve.Errors) != 3 || ve.Total != 202 {
		t.Errorf("cap 3: %d listed, total %d", len(ve.Errors), ve.Total)
	}
	want := "roster rejected: 202 errors; row 2, status: must be affected or under_review; row 5, status: must be affected or under_review; row 8, status: must be affected or under_review; and 199 more"
	if ve.Error() != want {
		t.Errorf("message %q\nwant    %q", ve.Error(), want)
	}
}

func TestParseRosterManyDuplicates(t *testing.T) {
	var b strings.Builder
	b.WriteString(header)
	for range 1000 {
		b.WriteString("same,affected,northland,\n")
	}
	_, _, err := parse(t, b.String())
	ve := validationError(t, err)
	if ve.Total != 999 || len(ve.Errors) != DefaultMaxErrors {
		t.Fatalf("total %d, listed %d", ve.Total, len(ve.Errors))
	}
	for i, e := range ve.Errors {
		if want := (RowError{Row: i + 3, Field: "subject_id", Rule: "duplicate subject (first on row 2)"}); e != want {
			t.Fatalf("error %d: %+v, want %+v", i, e, want)
		}
	}
}

// TestParseRosterEmitStopsAtFirstError: once a row is invalid, nothing more
// is emitted (the load is going to be aborted).
func TestParseRosterEmitStopsAtFirstError(t *testing.T) {
	_, entries, err := parse(t, header+"p1,affected,northland,\np2,bad,northland,\np3,affected,northland,\n")
	validationError(t, err)
	if len(entries) != 1 || entries[0].Key != testKeyer.SubjectKey("p1") {
		t.Errorf("emitted %d entries, want only p1's", len(entries))
	}
}

func TestParseRosterEmitError(t *testing.T) {
	boom := errors.New("boom")
	_, err := ParseRoster(strings.NewReader(header+"p1,affected,northland,\n"), testSpec(t), testKeyer, func(store.Entry) error { return boom })
	if err != boom {
		t.Errorf("got %v, want the emit error", err)
	}
}

func TestParseRosterReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	r := iotest.TimeoutReader(strings.NewReader(header + "p1,affected,northland,\n")) // fails on the second read
	_, err := ParseRoster(iotest.OneByteReader(r), testSpec(t), testKeyer, nil)
	if err == nil || errors.As(err, new(*ValidationError)) {
		t.Errorf("got %v, want a read error", err)
	}
	_, err = ParseRoster(iotest.ErrReader(boom), testSpec(t), testKeyer, nil)
	if !errors.Is(err, boom) {
		t.Errorf("got %v, want it to wrap %v", err, boom)
	}
}

func TestParseRosterNeedsSpecAndKeyer(t *testing.T) {
	if _, err := ParseRoster(strings.NewReader(header), nil, testKeyer, nil); err == nil {
		t.Error("parsed without a spec")
	}
	if _, err := ParseRoster(strings.NewReader(header), testSpec(t), nil, nil); err == nil {
		t.Error("parsed without a keyer")
	}
}

// rosterLines generates n valid roster rows.
func rosterLines(n int, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, 1))
	cohorts := []string{"northland", "referrals", "uploads", "northland;uploads", "referrals;uploads"}
	lines := make([]string, n)
	for i := range lines {
		status, c := "affected", cohorts[rng.IntN(len(cohorts))]
		if rng.IntN(10) == 0 {
			status, c = "under_review", ""
		}
		practice := ""
		if rng.IntN(4) > 0 {
			practice = fmt.Sprintf("GP-%03d", rng.IntN(40))
		}
		lines[i] = fmt.Sprintf("patient-%07d,%s,%s,%s", i, status, c, practice)
	}
	return lines
}

func TestDigestIndependentOfRowOrder(t *testing.T) {
	lines := rosterLines(2000, 7)
	a, _, err := parse(t, header+strings.Join(lines, "\n")+"\n")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(lines), func(i, j int) { lines[i], lines[j] = lines[j], lines[i] })
	b, _, err := parse(t, header+strings.Join(lines, "\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest || a.Entries != b.Entries {
		t.Errorf("shuffled roster: digest %s (%d entries), want %s (%d)", b.Digest, b.Entries, a.Digest, a.Entries)
	}
	if slices.Equal(a.Practices, b.Practices) {
		t.Log("practice dictionaries happen to be equal; the digest must not depend on them anyway")
	}
	if fmt.Sprint(a.Counts) != fmt.Sprint(b.Counts) {
		t.Errorf("counts differ: %+v vs %+v", a.Counts, b.Counts)
	}

	// Any change to content changes the digest.
	changes := map[string]string{
		"status":   strings.Replace(lines[0], ",affected,", ",under_review,", 1) + "X",
		"row gone": "",
	}
	for name, repl := range changes {
		mod := slices.Clone(lines)
		if repl == "" {
			mod = mod[1:]
		} else {
			mod[0] = repl
		}
		c, _, err := parse(t, header+strings.Join(mod, "\n"))
		if err != nil {
			t.Fatal(err)
		}
		if c.Digest == a.Digest {
			t.Errorf("%s: digest unchanged", name)
		}
	}
	// The spec is part of the digest.
	s := testSpec(t)
	s.Incident.Title = "Another title"
	c, err := ParseRoster(strings.NewReader(header+strings.Join(lines, "\n")), s, testKeyer, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Digest == a.Digest {
		t.Error("digest does not cover the spec")
	}
}

// TestDigestMatchesStoreVerify: the digest the parser computes is the one
// a store recomputes from the entries it holds, in key order, with the
// practice dictionary of the manifest.
func TestDigestMatchesStoreVerify(t *testing.T) {
	lines := rosterLines(500, 3)
	r, entries, err := parse(t, header+strings.Join(lines, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(entries, func(a, b store.Entry) int { return bytes.Compare(a.Key[:], b.Key[:]) })
	spec := testSpec(t)
	m := store.Manifest{Spec: spec.Canonical(), Cohorts: len(spec.Cohorts), Practices: r.Practices}
	counts, err := store.Verify(m, r.Digest, r.Entries, func(fn func(store.Entry) error) error {
		for _, e := range entries {
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(counts) != fmt.Sprint(r.Counts) {
		t.Errorf("store counts %+v, parser counts %+v", counts, r.Counts)
	}
}
