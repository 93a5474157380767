package snapshot

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

// The practice fields are optional: a spec without them has the canonical
// form it had before they existed (stored versions keep their digests).
func TestPracticeFieldsOptional(t *testing.T) {
	s := testSpec(t)
	if s.PracticeNotice != nil || s.Cohorts[0].PracticeGuidance != "" {
		t.Fatalf("practice fields set: %+v %q", s.PracticeNotice, s.Cohorts[0].PracticeGuidance)
	}
	c := s.Canonical()
	if bytes.Contains(c, []byte("practice")) {
		t.Errorf("canonical form of a spec without practice fields names them: %s", c)
	}
	full, err := ParseSpec(readFile(t, "testdata/spec-practice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if full.PracticeNotice == nil || full.PracticeNotice.Subject != "Some of your patients were affected" ||
		full.Cohorts[0].PracticeGuidance == "" || full.Cohorts[1].PracticeGuidance != "" {
		t.Fatalf("practice fields not parsed: %+v %+v", full.PracticeNotice, full.Cohorts)
	}
	back, err := DecodeSpec(full.Canonical())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Canonical(), full.Canonical()) {
		t.Errorf("canonical form does not round-trip")
	}
	if bytes.Equal(full.Canonical(), c) {
		t.Error("the practice fields are not in the canonical form (and so not in the digest)")
	}
}

func TestPracticeFieldsValidated(t *testing.T) {
	doc := string(readFile(t, "testdata/spec-practice.yaml"))
	cases := map[string]struct{ from, to, field string }{
		"guidance with a newline": {"practice_guidance: Discharge summaries 2017-2019; refer callers to 0800 000 011",
			"practice_guidance: \"line one\\nline two\"", "cohorts[0].practice_guidance"},
		"guidance too long": {"practice_guidance: Discharge summaries 2017-2019; refer callers to 0800 000 011",
			"practice_guidance: " + strings.Repeat("x", MaxGuidanceBytes+1), "cohorts[0].practice_guidance"},
		"notice without a subject": {"  subject: Some of your patients were affected\n", "  subject: \"\"\n", "practice_notice.subject"},
		"notice without a body": {"  body: |\n    Your practice's patients listed here were affected.\n\n    Refer callers to the support line of their cohort.\n",
			"  body: \"\"\n", "practice_notice.body"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if !strings.Contains(doc, tc.from) {
				t.Fatalf("test document lacks %q", tc.from)
			}
			_, err := ParseSpec([]byte(strings.Replace(doc, tc.from, tc.to, 1)))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v, want a ValidationError", err)
			}
			found := false
			for _, e := range ve.Errors {
				found = found || e.Field == tc.field
			}
			if !found {
				t.Errorf("errors %+v do not name %s", ve.Errors, tc.field)
			}
		})
	}
}

// TestPracticeCanonicalStable pins the canonical form of a spec with the
// practice fields, as TestCanonicalStable does for one without.
func TestPracticeCanonicalStable(t *testing.T) {
	s, err := ParseSpec(readFile(t, "testdata/spec-practice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got := s.Canonical()
	const golden = "testdata/spec-practice.canonical.json"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want := readFile(t, golden); !bytes.Equal(got, want) {
		t.Errorf("canonical form changed:\n got %s\nwant %s", got, want)
	}
}
