package snapshot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/impact-health/impact/internal/store"
)

// Limits of an incident spec.
const (
	// MaxSpecBytes caps the size of a spec document.
	MaxSpecBytes = 1 << 20
	// MaxIDBytes caps incident and cohort ids, and data category names.
	MaxIDBytes = 64
	// MaxTitleBytes caps incident and cohort titles.
	MaxTitleBytes = 512
	// MaxSubjectBytes caps a notice's subject line.
	MaxSubjectBytes = 512
	// MaxBodyBytes caps a notice's body.
	MaxBodyBytes = 32 << 10
	// MaxContactBytes caps a cohort's support contact.
	MaxContactBytes = 256
	// MaxDataCategories caps the data categories of one cohort.
	MaxDataCategories = 64
	// MaxGuidanceBytes caps a cohort's practice_guidance line.
	MaxGuidanceBytes = 512
)

// Notice is the text of one notice: an email subject line and body, shown
// the same in the app.
type Notice struct {
	Subject string `yaml:"subject" json:"subject"`
	Body    string `yaml:"body" json:"body"`
}

// Cohort is a group of affected subjects handled the same way. Its index in
// Spec.Cohorts is its bit in store.Record.Cohorts, and the order of the
// cohorts is the notice priority: an affected subject gets the notice of its
// first cohort.
type Cohort struct {
	ID             string   `yaml:"id" json:"id"`
	Title          string   `yaml:"title" json:"title"`
	DataCategories []string `yaml:"data_categories" json:"data_categories"`
	// SupportContact is shown to this cohort's members only.
	SupportContact string `yaml:"support_contact" json:"support_contact"`
	Notice         Notice `yaml:"notice" json:"notice"`
	// PracticeGuidance is an optional line for the practices of this
	// cohort's patients (what was taken, where to refer callers). Absent
	// from the canonical form when empty, so that specs without it keep
	// their digests.
	PracticeGuidance string `yaml:"practice_guidance,omitempty" json:"practice_guidance,omitempty"`
}

// Incident identifies one breach.
type Incident struct {
	ID    string `yaml:"id" json:"id"`
	Title string `yaml:"title" json:"title"`
	// Started and Disclosed are optional dates, YYYY-MM-DD.
	Started   string `yaml:"started,omitempty" json:"started,omitempty"`
	Disclosed string `yaml:"disclosed,omitempty" json:"disclosed,omitempty"`
}

// Spec is an incident spec: the incident, its cohorts with their notices and
// support contacts, and the notices of the under-review and not-affected
// statuses. A Spec returned by ParseSpec or DecodeSpec is valid and
// normalised; treat it as immutable (a Catalog shares it between readers).
//
// The field order of these types is the order of the canonical JSON form,
// which version digests cover: never reorder or rename fields.
type Spec struct {
	Incident          Incident `yaml:"incident" json:"incident"`
	Cohorts           []Cohort `yaml:"cohorts" json:"cohorts"`
	UnderReviewNotice Notice   `yaml:"under_review_notice" json:"under_review_notice"`
	NotAffectedNotice Notice   `yaml:"not_affected_notice" json:"not_affected_notice"`
	// PracticeNotice is the optional information pack for practices (how
	// to answer patients who call). Absent from the canonical form when
	// not given.
	PracticeNotice *Notice `yaml:"practice_notice,omitempty" json:"practice_notice,omitempty"`
	// CorrectionNotice is the optional notice of a subject told before that
	// it was affected or under review and now not affected (a correction:
	// the only way a not-affected subject is ever notified). Without it a
	// correction is told NotAffectedNotice, the text of subjects never
	// contacted. Absent from the canonical form when not given.
	CorrectionNotice *Notice `yaml:"correction_notice,omitempty" json:"correction_notice,omitempty"`
}

// ParseSpec parses an incident spec in YAML, or JSON (JSON is YAML), at most
// MaxSpecBytes. Unknown keys are errors. It normalises line endings in the
// texts to LF and validates the result: any broken rule is reported in a
// *ValidationError (Input "spec") whose fields are paths such as
// "cohorts[2].id".
func ParseSpec(data []byte) (*Spec, error) {
	if len(data) > MaxSpecBytes {
		return nil, specError("", fmt.Sprintf("spec must be at most %d bytes", MaxSpecBytes))
	}
	if !utf8.Valid(data) {
		return nil, specError("", "spec must be valid UTF-8")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var s Spec
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, specError("", "spec is empty")
		}
		return nil, yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, specError("", "spec must be a single YAML document")
	}
	s.normalise()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// DecodeSpec decodes a spec from its canonical form (Spec.Canonical), as
// kept in a version's manifest, and validates it.
func DecodeSpec(canonical []byte) (*Spec, error) {
	dec := json.NewDecoder(bytes.NewReader(canonical))
	dec.DisallowUnknownFields()
	var s Spec
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("decode canonical spec: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decode canonical spec: trailing data")
	}
	s.normalise()
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("decode canonical spec: %w", err)
	}
	return &s, nil
}

// Canonical returns the spec's canonical form: deterministic JSON (fields in
// declaration order, no HTML escaping, no trailing newline), texts with LF
// line endings, empty lists as [] rather than null, cohorts in spec order.
// Version digests cover it, and manifests keep it.
func (s *Spec) Canonical() []byte {
	c := *s
	c.normalise()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&c); err != nil {
		// Only strings and slices of strings: encoding cannot fail.
		panic(fmt.Sprintf("snapshot: canonical spec: %v", err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// CohortIndex returns the index of the cohort with the given id: its bit in
// store.Record.Cohorts.
func (s *Spec) CohortIndex(id string) (int, bool) {
	for i := range s.Cohorts {
		if s.Cohorts[i].ID == id {
			return i, true
		}
	}
	return -1, false
}

// normalise rewrites CRLF and lone CR to LF in every text and makes nil
// lists empty, on a copy of the slices (the receiver may share them).
func (s *Spec) normalise() {
	s.Incident.Title = lf(s.Incident.Title)
	cohorts := make([]Cohort, len(s.Cohorts))
	for i, c := range s.Cohorts {
		c.Title = lf(c.Title)
		c.SupportContact = lf(c.SupportContact)
		c.PracticeGuidance = lf(c.PracticeGuidance)
		c.Notice = c.Notice.normalise()
		cats := make([]string, len(c.DataCategories))
		copy(cats, c.DataCategories)
		c.DataCategories = cats
		cohorts[i] = c
	}
	s.Cohorts = cohorts
	s.UnderReviewNotice = s.UnderReviewNotice.normalise()
	s.NotAffectedNotice = s.NotAffectedNotice.normalise()
	if s.PracticeNotice != nil {
		n := s.PracticeNotice.normalise()
		s.PracticeNotice = &n
	}
	if s.CorrectionNotice != nil {
		n := s.CorrectionNotice.normalise()
		s.CorrectionNotice = &n
	}
}

func (n Notice) normalise() Notice {
	return Notice{Subject: lf(n.Subject), Body: lf(n.Body)}
}

func lf(s string) string {
	if !strings.Contains(s, "\r") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

// Validate checks every rule of a spec and reports all broken ones in a
// *ValidationError (Input "spec").
func (s *Spec) Validate() error {
	l := newErrorList(DefaultMaxErrors)
	bad := func(field, rule string) { l.add(0, field, rule) }

	checkID("incident.id", s.Incident.ID, bad)
	checkLine("incident.title", s.Incident.Title, MaxTitleBytes, true, bad)
	checkDate("incident.started", s.Incident.Started, bad)
	checkDate("incident.disclosed", s.Incident.Disclosed, bad)

	switch n := len(s.Cohorts); {
	case n == 0:
		bad("cohorts", "at least one cohort is required")
	case n > store.MaxCohorts:
		bad("cohorts", fmt.Sprintf("at most %d cohorts", store.MaxCohorts))
	}
	seen := make(map[string]int, len(s.Cohorts))
	for i, c := range s.Cohorts {
		p := fmt.Sprintf("cohorts[%d]", i)
		if checkID(p+".id", c.ID, bad) {
			if j, dup := seen[c.ID]; dup {
				bad(p+".id", fmt.Sprintf("duplicate cohort id %q (also cohorts[%d].id)", c.ID, j))
			} else {
				seen[c.ID] = i
			}
		}
		checkLine(p+".title", c.Title, MaxTitleBytes, true, bad)
		checkLine(p+".support_contact", c.SupportContact, MaxContactBytes, true, bad)
		if len(c.DataCategories) > MaxDataCategories {
			bad(p+".data_categories", fmt.Sprintf("at most %d data categories", MaxDataCategories))
		}
		cats := make(map[string]bool, len(c.DataCategories))
		for j, dc := range c.DataCategories {
			q := fmt.Sprintf("%s.data_categories[%d]", p, j)
			if !isCategory(dc) {
				bad(q, fmt.Sprintf("must match [a-z0-9_]{1,%d}", MaxIDBytes))
			} else if cats[dc] {
				bad(q, "duplicate data category")
			}
			cats[dc] = true
		}
		checkNotice(p+".notice", c.Notice, bad)
		checkLine(p+".practice_guidance", c.PracticeGuidance, MaxGuidanceBytes, false, bad)
	}
	checkNotice("under_review_notice", s.UnderReviewNotice, bad)
	checkNotice("not_affected_notice", s.NotAffectedNotice, bad)
	if s.PracticeNotice != nil {
		checkNotice("practice_notice", *s.PracticeNotice, bad)
	}
	if s.CorrectionNotice != nil {
		checkNotice("correction_notice", *s.CorrectionNotice, bad)
	}
	return l.err(InputSpec)
}

func checkNotice(path string, n Notice, bad func(string, string)) {
	checkLine(path+".subject", n.Subject, MaxSubjectBytes, true, bad)
	checkBody(path+".body", n.Body, bad)
}

// checkID reports whether id matches [a-z0-9-]{1,64}, reporting if not.
func checkID(field, id string, bad func(string, string)) bool {
	if id == "" {
		bad(field, "is required")
		return false
	}
	if !isID(id) {
		bad(field, fmt.Sprintf("must match [a-z0-9-]{1,%d}", MaxIDBytes))
		return false
	}
	return true
}

// checkLine checks a one-line text: valid UTF-8, no control characters, not
// blank if required, at most max bytes.
func checkLine(field, s string, max int, required bool, bad func(string, string)) {
	switch {
	case strings.TrimSpace(s) == "":
		if required {
			bad(field, "is required")
		}
	case !utf8.ValidString(s):
		bad(field, "must be valid UTF-8")
	case len(s) > max:
		bad(field, fmt.Sprintf("must be at most %d bytes", max))
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		bad(field, "must be one line without control characters")
	}
}

// checkBody checks a notice body: required, valid UTF-8, at most
// MaxBodyBytes, no control characters but newline and tab.
func checkBody(field, s string, bad func(string, string)) {
	switch {
	case strings.TrimSpace(s) == "":
		bad(field, "is required")
	case !utf8.ValidString(s):
		bad(field, "must be valid UTF-8")
	case len(s) > MaxBodyBytes:
		bad(field, fmt.Sprintf("must be at most %d bytes", MaxBodyBytes))
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) >= 0:
		bad(field, "must not contain control characters other than newline and tab")
	}
}

func checkDate(field, s string, bad func(string, string)) {
	if s == "" {
		return
	}
	if _, err := time.Parse(time.DateOnly, s); err != nil {
		bad(field, "must be a date YYYY-MM-DD")
	}
}

// isID reports whether s matches [a-z0-9-]{1,MaxIDBytes}.
func isID(s string) bool {
	return allBytes(s, func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' })
}

// isCategory reports whether s matches [a-z0-9_]{1,MaxIDBytes}.
func isCategory(s string) bool {
	return allBytes(s, func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' })
}

// allBytes reports whether s has 1 to MaxIDBytes bytes, each of them ok.
func allBytes(s string, ok func(c byte) bool) bool {
	if len(s) == 0 || len(s) > MaxIDBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// IsIncidentID reports whether id is a well-formed incident id,
// [a-z0-9-]{1,64}.
func IsIncidentID(id string) bool { return isID(id) }

var yamlLine = regexp.MustCompile(`line (\d+)`)

// yamlError turns a YAML decoding error into a ValidationError that keeps
// the line numbers and the kind of each problem but none of the document's
// text (YAML messages quote values).
func yamlError(err error) error {
	l := newErrorList(DefaultMaxErrors)
	var te *yaml.TypeError
	if errors.As(err, &te) {
		for _, msg := range te.Errors {
			l.add(0, yamlWhere(msg), yamlRule(msg))
		}
	} else {
		l.add(0, yamlWhere(err.Error()), yamlSyntax(err.Error()))
	}
	return l.err(InputSpec)
}

// yamlSyntaxPrefix is what the parser puts before its reason.
var yamlSyntaxPrefix = regexp.MustCompile(`^yaml: (line \d+: )?`)

// yamlSyntax keeps the parser's reason for a syntax error ("did not find
// expected ',' or ']'"), which names what it expected, unless it quotes the
// document.
func yamlSyntax(msg string) string {
	reason := yamlSyntaxPrefix.ReplaceAllString(msg, "")
	if reason == "" || reason == msg || strings.ContainsAny(reason, "`\"") || len(reason) > 100 {
		return "invalid YAML syntax"
	}
	return "invalid YAML syntax: " + reason
}

// yamlField matches the key of an unknown field in a decoding error.
var yamlField = regexp.MustCompile(`field (\S+) not found in type`)

// specKey reports whether s can be named in an error: a key as a spec
// spells its keys, not free text.
func specKey(s string) bool {
	return allBytes(s, func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	})
}

func yamlWhere(msg string) string {
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil {
			return fmt.Sprintf("line %d", n)
		}
	}
	return ""
}

func yamlRule(msg string) string {
	switch {
	case strings.Contains(msg, "not found in type"):
		if m := yamlField.FindStringSubmatch(msg); m != nil && specKey(m[1]) {
			return fmt.Sprintf("unknown field %q", m[1])
		}
		return "unknown field"
	case strings.Contains(msg, "already set in type"), strings.Contains(msg, "already defined"):
		return "duplicate field"
	case strings.Contains(msg, "cannot unmarshal"):
		return "wrong type of value"
	}
	return "invalid value"
}

func specError(field, rule string) error {
	return &ValidationError{Input: InputSpec, Errors: []RowError{{Field: field, Rule: rule}}, Total: 1}
}
