package snapshot

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/store"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestParseSpecValid(t *testing.T) {
	s := testSpec(t)
	if got, want := s.Incident.ID, "test-2025-12"; got != want {
		t.Errorf("incident id %q, want %q", got, want)
	}
	if got, want := s.Incident.Started, "2025-12-04"; got != want {
		t.Errorf("started %q, want %q (an unquoted YAML date must stay a string)", got, want)
	}
	if got, want := s.Cohorts[1].SupportContact, "0800000012"; got != want {
		t.Errorf("support contact %q, want %q (leading zero kept)", got, want)
	}
	if len(s.Cohorts) != 3 {
		t.Fatalf("%d cohorts, want 3", len(s.Cohorts))
	}
	for i, id := range []string{"northland", "referrals", "uploads"} {
		if j, ok := s.CohortIndex(id); !ok || j != i {
			t.Errorf("CohortIndex(%q) = %d, %v; want %d, true", id, j, ok, i)
		}
	}
	if _, ok := s.CohortIndex("nope"); ok {
		t.Error("CohortIndex of an unknown id reported found")
	}
	if s.Cohorts[2].DataCategories == nil || len(s.Cohorts[2].DataCategories) != 0 {
		t.Errorf("missing data_categories: got %#v, want an empty list", s.Cohorts[2].DataCategories)
	}
}

func TestParseSpecDemo(t *testing.T) {
	var buf bytes.Buffer
	if err := demo.WriteSpec(&buf); err != nil {
		t.Fatal(err)
	}
	s, err := ParseSpec(buf.Bytes())
	if err != nil {
		t.Fatalf("demo spec: %v", err)
	}
	if s.Incident.ID != demo.IncidentID || len(s.Cohorts) != len(demo.Cohorts) {
		t.Errorf("demo spec parsed as %s with %d cohorts", s.Incident.ID, len(s.Cohorts))
	}
}

// TestSpecValidation breaks one rule at a time in a valid spec and checks
// that exactly that field is reported, through the JSON form (JSON is YAML).
func TestSpecValidation(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	cohort := func(id string) Cohort {
		return Cohort{ID: id, Title: "T", SupportContact: "C", Notice: Notice{Subject: "S", Body: "B"}}
	}
	tests := []struct {
		name   string
		mutate func(*Spec)
		field  string // "" means valid
		rule   string // substring of the rule
	}{
		{"valid", func(*Spec) {}, "", ""},
		{"incident id missing", func(s *Spec) { s.Incident.ID = "" }, "incident.id", "required"},
		{"incident id upper case", func(s *Spec) { s.Incident.ID = "MMH-1" }, "incident.id", "[a-z0-9-]"},
		{"incident id underscore", func(s *Spec) { s.Incident.ID = "mmh_1" }, "incident.id", "[a-z0-9-]"},
		{"incident id 64 chars", func(s *Spec) { s.Incident.ID = long(64) }, "", ""},
		{"incident id 65 chars", func(s *Spec) { s.Incident.ID = long(65) }, "incident.id", "[a-z0-9-]"},
		{"incident title missing", func(s *Spec) { s.Incident.Title = "" }, "incident.title", "required"},
		{"incident title blank", func(s *Spec) { s.Incident.Title = "  " }, "incident.title", "required"},
		{"incident title two lines", func(s *Spec) { s.Incident.Title = "a\nb" }, "incident.title", "one line"},
		{"incident title too long", func(s *Spec) { s.Incident.Title = long(MaxTitleBytes + 1) }, "incident.title", "at most"},
		{"started not a date", func(s *Spec) { s.Incident.Started = "yesterday" }, "incident.started", "YYYY-MM-DD"},
		{"disclosed not a date", func(s *Spec) { s.Incident.Disclosed = "2025-13-01" }, "incident.disclosed", "YYYY-MM-DD"},
		{"no cohorts", func(s *Spec) { s.Cohorts = nil }, "cohorts", "at least one"},
		{"64 cohorts", func(s *Spec) {
			s.Cohorts = nil
			for i := range store.MaxCohorts {
				s.Cohorts = append(s.Cohorts, cohort(fmt.Sprintf("c%d", i)))
			}
		}, "", ""},
		{"65 cohorts", func(s *Spec) {
			s.Cohorts = nil
			for i := range store.MaxCohorts + 1 {
				s.Cohorts = append(s.Cohorts, cohort(fmt.Sprintf("c%d", i)))
			}
		}, "cohorts", "at most 64"},
		{"cohort id missing", func(s *Spec) { s.Cohorts[1].ID = "" }, "cohorts[1].id", "required"},
		{"cohort id bad", func(s *Spec) { s.Cohorts[1].ID = "North Land" }, "cohorts[1].id", "[a-z0-9-]"},
		{"cohort id duplicate", func(s *Spec) { s.Cohorts[2].ID = "northland" }, "cohorts[2].id", "duplicate cohort id \"northland\" (also cohorts[0].id)"},
		{"cohort title missing", func(s *Spec) { s.Cohorts[0].Title = "" }, "cohorts[0].title", "required"},
		{"cohort title control", func(s *Spec) { s.Cohorts[0].Title = "a\tb" }, "cohorts[0].title", "control"},
		{"support contact missing", func(s *Spec) { s.Cohorts[0].SupportContact = "" }, "cohorts[0].support_contact", "required"},
		{"support contact too long", func(s *Spec) { s.Cohorts[0].SupportContact = long(MaxContactBytes + 1) }, "cohorts[0].support_contact", "at most"},
		{"notice subject missing", func(s *Spec) { s.Cohorts[1].Notice.Subject = "" }, "cohorts[1].notice.subject", "required"},
		{"notice subject two lines", func(s *Spec) { s.Cohorts[1].Notice.Subject = "a\nb" }, "cohorts[1].notice.subject", "one line"},
		{"notice body missing", func(s *Spec) { s.Cohorts[1].Notice.Body = "" }, "cohorts[1].notice.body", "required"},
		{"notice body too long", func(s *Spec) { s.Cohorts[1].Notice.Body = long(MaxBodyBytes + 1) }, "cohorts[1].notice.body", "at most"},
		{"notice body bell", func(s *Spec) { s.Cohorts[1].Notice.Body = "ding\a" }, "cohorts[1].notice.body", "control"},
		{"notice body tabs and newlines", func(s *Spec) { s.Cohorts[1].Notice.Body = "a\tb\nc\n" }, "", ""},
		{"data category upper case", func(s *Spec) { s.Cohorts[0].DataCategories = []string{"Referral"} }, "cohorts[0].data_categories[0]", "[a-z0-9_]"},
		{"data category dash", func(s *Spec) { s.Cohorts[0].DataCategories = []string{"ok", "referral-letter"} }, "cohorts[0].data_categories[1]", "[a-z0-9_]"},
		{"data category empty", func(s *Spec) { s.Cohorts[0].DataCategories = []string{""} }, "cohorts[0].data_categories[0]", "[a-z0-9_]"},
		{"data category duplicate", func(s *Spec) { s.Cohorts[0].DataCategories = []string{"a", "a"} }, "cohorts[0].data_categories[1]", "duplicate"},
		{"too many data categories", func(s *Spec) {
			s.Cohorts[0].DataCategories = nil
			for i := range MaxDataCategories + 1 {
				s.Cohorts[0].DataCategories = append(s.Cohorts[0].DataCategories, fmt.Sprintf("c%d", i))
			}
		}, "cohorts[0].data_categories", "at most"},
		{"under review subject missing", func(s *Spec) { s.UnderReviewNotice.Subject = "" }, "under_review_notice.subject", "required"},
		{"under review body missing", func(s *Spec) { s.UnderReviewNotice.Body = "" }, "under_review_notice.body", "required"},
		{"not affected subject missing", func(s *Spec) { s.NotAffectedNotice.Subject = "" }, "not_affected_notice.subject", "required"},
		{"not affected body missing", func(s *Spec) { s.NotAffectedNotice.Body = "" }, "not_affected_notice.body", "required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := testSpec(t)
			tc.mutate(s)
			_, err := ParseSpec(s.Canonical())
			if tc.field == "" {
				if err != nil {
					t.Fatalf("valid spec rejected: %v", err)
				}
				return
			}
			ve := validationError(t, err)
			if ve.Input != InputSpec || ve.Total != 1 || len(ve.Errors) != 1 {
				t.Fatalf("got %+v, want one spec error", ve)
			}
			if e := ve.Errors[0]; e.Field != tc.field || e.Row != 0 || !strings.Contains(e.Rule, tc.rule) {
				t.Errorf("got %+v, want field %q, rule containing %q", e, tc.field, tc.rule)
			}
		})
	}
}

func TestSpecValidateUTF8(t *testing.T) {
	s := testSpec(t)
	s.Cohorts[0].Title = "bad \xff"
	s.UnderReviewNotice.Body = "bad \xfe"
	ve := validationError(t, s.Validate())
	var fields []string
	for _, e := range ve.Errors {
		if !strings.Contains(e.Rule, "UTF-8") {
			t.Errorf("%+v: want a UTF-8 rule", e)
		}
		fields = append(fields, e.Field)
	}
	if want := []string{"cohorts[0].title", "under_review_notice.body"}; !reflect.DeepEqual(fields, want) {
		t.Errorf("fields %v, want %v", fields, want)
	}
}

func TestSpecValidateReportsAll(t *testing.T) {
	s := testSpec(t)
	s.Incident.ID = ""
	s.Cohorts[0].Title = ""
	s.Cohorts[2].Notice.Body = ""
	ve := validationError(t, s.Validate())
	if ve.Total != 3 || len(ve.Errors) != 3 {
		t.Fatalf("got %v, want 3 errors", ve)
	}
	want := "spec rejected: 3 errors; incident.id: is required; cohorts[0].title: is required; cohorts[2].notice.body: is required"
	if ve.Error() != want {
		t.Errorf("message %q\nwant    %q", ve.Error(), want)
	}
}

// TestParseSpecDocument covers rules on the document itself, and that YAML
// errors never echo the document's text.
func TestParseSpecDocument(t *testing.T) {
	valid := string(readFile(t, "testdata/spec.yaml"))
	tests := []struct {
		name  string
		doc   string
		field string
		rule  string
	}{
		{"empty", "", "", "empty"},
		{"comment only", "# nothing\n", "", "empty"},
		{"unknown top-level key", valid + "secret_extra: Private notice text\n", "line 37", `unknown field "secret_extra"`},
		{"unknown nested key", strings.Replace(valid, "  title: Test breach", "  titel: Private notice text\n  title: Test breach", 1), "line 4", `unknown field "titel"`},
		{"wrong type", strings.Replace(valid, "cohorts:\n", "cohorts: Private notice text\nx:\n", 1), "line 7", "wrong type"},
		{"duplicate key", valid + "incident: {id: a, title: b}\n", "", ""},
		{"syntax", "incident: [Private notice text\n", "", "invalid YAML syntax: did not find expected ',' or ']'"},
		{"two documents", valid + "---\n" + valid, "", "single YAML document"},
		{"invalid UTF-8", strings.Replace(valid, "Kia ora", "Kia \xffora", 1), "", "UTF-8"},
		{"too large", valid + "#" + strings.Repeat("x", MaxSpecBytes) + "\n", "", "at most"},
		{"not a mapping", "- a\n- b\n", "", "wrong type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSpec([]byte(tc.doc))
			ve := validationError(t, err)
			if ve.Input != InputSpec || len(ve.Errors) == 0 {
				t.Fatalf("got %+v", ve)
			}
			e := ve.Errors[0]
			if tc.field != "" && e.Field != tc.field {
				t.Errorf("field %q, want %q (%v)", e.Field, tc.field, ve)
			}
			if !strings.Contains(e.Rule, tc.rule) {
				t.Errorf("rule %q, want it to contain %q", e.Rule, tc.rule)
			}
			if strings.Contains(ve.Error(), "Private") {
				t.Errorf("error echoes document text: %v", ve)
			}
		})
	}
}

// TestCanonicalStable pins the canonical form: digests of every stored
// version depend on it, so any change to it must be deliberate (run with
// -update and explain why in the commit).
func TestCanonicalStable(t *testing.T) {
	got := testSpec(t).Canonical()
	const golden = "testdata/spec.canonical.json"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want := readFile(t, golden); !bytes.Equal(got, want) {
		t.Errorf("canonical form changed:\n got %s\nwant %s", got, want)
	}
}

// TestCanonicalEquivalentForms: the same spec written differently has one
// canonical form.
func TestCanonicalEquivalentForms(t *testing.T) {
	base := testSpec(t).Canonical()
	yamlDoc := string(readFile(t, "testdata/spec.yaml"))
	forms := map[string]string{
		"json (canonical)": string(base),
		"crlf":             strings.ReplaceAll(yamlDoc, "\n", "\r\n"),
		"keys reordered": strings.Replace(yamlDoc,
			"  id: test-2025-12\n  title: Test breach, December 2025\n",
			"  title: Test breach, December 2025\n  id: test-2025-12\n", 1),
		"flow style notice": strings.Replace(yamlDoc,
			"under_review_notice:\n  subject: We are still checking\n  body: We are still checking whether your information was affected.\n",
			"under_review_notice: {body: We are still checking whether your information was affected., subject: We are still checking}\n", 1),
	}
	for name, doc := range forms {
		s, err := ParseSpec([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := s.Canonical(); !bytes.Equal(got, base) {
			t.Errorf("%s: canonical form differs:\n got %s\nwant %s", name, got, base)
		}
	}
	// A real change changes it.
	s := testSpec(t)
	s.Cohorts[0], s.Cohorts[1] = s.Cohorts[1], s.Cohorts[0]
	if bytes.Equal(s.Canonical(), base) {
		t.Error("reordering cohorts kept the canonical form; cohort order is the bit index")
	}
}

func TestCanonicalNormalisesLineEndings(t *testing.T) {
	s := testSpec(t)
	s.Cohorts[0].Notice.Body = "a\r\nb\rc\n"
	s.Incident.Title = "x\r"
	c := s.Canonical()
	if bytes.Contains(c, []byte(`\r`)) {
		t.Errorf("canonical form keeps CR: %s", c)
	}
	d, err := DecodeSpec(c)
	if err == nil {
		t.Fatalf("title %q became two lines and should be invalid", d.Incident.Title)
	}
	s.Incident.Title = "x"
	d, err = DecodeSpec(s.Canonical())
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Cohorts[0].Notice.Body; got != "a\nb\nc\n" {
		t.Errorf("body %q, want LF line endings", got)
	}
	if s.Cohorts[0].Notice.Body != "a\r\nb\rc\n" {
		t.Error("Canonical modified its receiver")
	}
}

func TestDecodeSpec(t *testing.T) {
	s := testSpec(t)
	c := s.Canonical()
	d, err := DecodeSpec(c)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d, s) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", d, s)
	}
	bad := map[string]string{
		"unknown field": strings.Replace(string(c), `"incident":{`, `"incident":{"x":1,`, 1),
		"trailing data": string(c) + "{}",
		"not json":      "incident: {}",
		"invalid spec":  strings.Replace(string(c), `"id":"test-2025-12"`, `"id":""`, 1),
	}
	for name, doc := range bad {
		if _, err := DecodeSpec([]byte(doc)); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}
