package snapshot

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/impact-health/impact/internal/store"
)

// Refusals of a publish or rollback: the visible version did not allow it.
// Both wrap store.ErrConflict, so errors.Is(err, store.ErrConflict) holds.
var (
	// ErrStaleVisible: the visible version is not the one the caller
	// expected (someone published meanwhile, or the caller reviewed
	// against another version).
	ErrStaleVisible = fmt.Errorf("the visible version changed: %w", store.ErrConflict)
	// ErrNotAfterVisible: the version to publish is not newer than the
	// visible one (the visible version only moves forward).
	ErrNotAfterVisible = fmt.Errorf("not after the visible version: %w", store.ErrConflict)
)

// VersionError is a refusal about one version of an incident, with the
// numbers an operator needs to decide what to do next, so that nobody has
// to parse a message. Kind is ErrStaleVisible, ErrNotAfterVisible,
// store.ErrNotStaged or store.ErrNotFound; errors.Is matches Kind and the
// cause. Its message names the incident and versions only.
type VersionError struct {
	Kind     error
	Incident string
	Version  uint64 // the version asked; 0: the incident as a whole
	Expected uint64 // the visible version the caller expected
	Visible  uint64 // the visible version when refused
	State    store.State
	Err      error // the cause, for errors.Is and errors.As; not shown
}

func (e *VersionError) Error() string {
	switch {
	case errors.Is(e.Kind, ErrStaleVisible):
		return fmt.Sprintf("the visible version is now v%d, not v%d", e.Visible, e.Expected)
	case errors.Is(e.Kind, ErrNotAfterVisible):
		return fmt.Sprintf("v%d is not after the visible v%d", e.Version, e.Visible)
	case errors.Is(e.Kind, store.ErrNotStaged) && e.State != 0:
		return fmt.Sprintf("%s v%d is %s, not staged", e.Incident, e.Version, e.State)
	case errors.Is(e.Kind, store.ErrNotStaged):
		return fmt.Sprintf("%s v%d is not staged", e.Incident, e.Version)
	case errors.Is(e.Kind, store.ErrNotFound) && e.Version != 0:
		return fmt.Sprintf("%s v%d not found", e.Incident, e.Version)
	case errors.Is(e.Kind, store.ErrNotFound):
		return fmt.Sprintf("incident %s not found", e.Incident)
	}
	return e.Kind.Error()
}

func (e *VersionError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// versionError turns a store error about incident's version into a
// VersionError when it is one the operator acts on (not found, not staged);
// any other error is wrapped with op (what was being done) and the version.
func versionError(op, incident string, version uint64, err error) error {
	var ve *VersionError
	switch {
	case errors.As(err, &ve):
		return err
	case errors.Is(err, store.ErrNotFound):
		return &VersionError{Kind: store.ErrNotFound, Incident: incident, Version: version, Err: err}
	case errors.Is(err, store.ErrNotStaged):
		return &VersionError{Kind: store.ErrNotStaged, Incident: incident, Version: version, Err: err}
	case version == 0:
		return fmt.Errorf("%s %s: %w", op, incident, err)
	}
	return fmt.Errorf("%s %s v%d: %w", op, incident, version, err)
}

// publishError explains a refused publish of version (expecting visible
// expectVisible). A lost compare-and-set is told apart by reading the
// head again: either the visible version is not the expected one
// (ErrStaleVisible) or version is not after it (ErrNotAfterVisible).
func publishError(ctx context.Context, heads interface {
	Head(ctx context.Context, incident string) (store.Head, error)
}, op, incident string, version, expectVisible uint64, err error,
) error {
	if !errors.Is(err, store.ErrConflict) {
		return versionError(op, incident, version, err)
	}
	head, herr := heads.Head(ctx, incident)
	if herr != nil {
		return fmt.Errorf("%s %s v%d (expecting v%d visible): %w", op, incident, version, expectVisible, err)
	}
	kind := ErrStaleVisible
	if head.Visible == expectVisible && version <= head.Visible {
		kind = ErrNotAfterVisible
	}
	return &VersionError{Kind: kind, Incident: incident, Version: version,
		Expected: expectVisible, Visible: head.Visible, Err: err}
}

// DefaultMaxErrors is how many errors a ValidationError lists by default.
const DefaultMaxErrors = 100

// Inputs a ValidationError can be about.
const (
	InputSpec   = "spec"
	InputRoster = "roster"
)

// RowError is one rule an input broke. For a roster, Row is the row number
// as a spreadsheet shows it (the header is row 1) and Field the column
// ("subject_id", "status", "cohorts", "practice_id", or "row" for the row as
// a whole). For a spec, Row is 0 and Field a path such as "cohorts[2].id".
// Rule says what is wrong. The only values it names are the operator's own
// identifiers (an unknown cohort id shaped like one, with the spec's ids; an
// unknown spec key) and the YAML parser's reason; never a subject id, a
// status cell or notice text.
type RowError struct {
	Row   int
	Field string
	Rule  string
}

func (e RowError) String() string {
	if e.Row > 0 {
		return fmt.Sprintf("row %d, %s: %s", e.Row, e.Field, e.Rule)
	}
	if e.Field == "" {
		return e.Rule
	}
	return fmt.Sprintf("%s: %s", e.Field, e.Rule)
}

// ValidationError rejects an upload: the spec or the roster broke rules.
// Errors lists the first errors (by row for a roster), capped; Total counts
// all of them. It is the domain's invalid-input error, safe to show to the
// operator and to log: it names rows, fields and rules, never patient data
// (see RowError.Rule).
type ValidationError struct {
	// Input is InputSpec or InputRoster.
	Input  string
	Errors []RowError
	Total  int
}

// maxErrorsInMessage bounds how many errors Error() spells out.
const maxErrorsInMessage = 5

func (e *ValidationError) Error() string {
	var b strings.Builder
	input := e.Input
	if input == "" {
		input = "input"
	}
	noun := "errors"
	if e.Total == 1 {
		noun = "error"
	}
	fmt.Fprintf(&b, "%s rejected: %d %s", input, e.Total, noun)
	for i, re := range e.Errors {
		if i == maxErrorsInMessage {
			break
		}
		b.WriteString("; ")
		b.WriteString(re.String())
	}
	if shown := min(len(e.Errors), maxErrorsInMessage); e.Total > shown {
		fmt.Fprintf(&b, "; and %d more", e.Total-shown)
	}
	return b.String()
}

// errorList collects errors up to a cap and counts all of them.
type errorList struct {
	max   int
	errs  []RowError
	total int
}

func newErrorList(max int) *errorList {
	if max <= 0 {
		max = DefaultMaxErrors
	}
	return &errorList{max: max}
}

func (l *errorList) add(row int, field, rule string) {
	l.total++
	if len(l.errs) < l.max {
		l.errs = append(l.errs, RowError{Row: row, Field: field, Rule: rule})
	}
}

func (l *errorList) err(input string) error {
	if l.total == 0 {
		return nil
	}
	return &ValidationError{Input: input, Errors: l.errs, Total: l.total}
}
