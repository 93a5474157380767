package snapshot

import (
	"fmt"
	"strings"
)

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
// Rule says what is wrong; it never contains a cell value.
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
// operator and to log: it names rows, fields and rules, never cell values.
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
