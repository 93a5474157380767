package snapshot

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/impact-health/impact/internal/store"
)

// Limits of a roster.
const (
	// MaxSubjectIDBytes caps a roster's subject_id.
	MaxSubjectIDBytes = 128
	// MaxPracticeIDBytes caps a roster's practice_id.
	MaxPracticeIDBytes = 64
	// MaxRowBytes caps one roster row (one line).
	MaxRowBytes = 64 << 10
	// MaxRows caps the rows of one roster (row numbers fit in 32 bits).
	MaxRows = 1<<32 - 2
)

// Keyer turns a subject id into its store key (package auth implements it
// with HMAC-SHA256 under the pepper).
type Keyer interface {
	SubjectKey(subjectID string) store.Key
}

// Roster summarises a roster parsed whole and valid.
type Roster struct {
	// Entries is the number of rows (subjects).
	Entries uint64
	// Practices is the practice dictionary, in first-seen order: an entry's
	// Record.Practice is 0 for none or 1 + an index into it.
	Practices []string
	// Counts are the entry counts, per cohort in spec order.
	Counts store.Counts
	// Digest is the version digest of the spec and these entries, as the
	// stores recompute it (store.Verify).
	Digest store.Digest
}

// RosterParser validates a roster CSV against a spec and turns its rows into
// store entries. The zero MaxErrors means DefaultMaxErrors.
type RosterParser struct {
	Spec      *Spec
	Keyer     Keyer
	MaxErrors int
	// validated says the same roster was parsed whole and valid before (the
	// load pass of an upload, whose digest and count are compared with the
	// validation pass's): the duplicate check, the only memory of a parse
	// that grows with the roster, is skipped. A duplicate added since would
	// change the digest.
	validated bool
	// pause, when set, is called every keyBlock keys of the duplicate
	// check (its merge runs after the last read); its error stops Parse.
	pause func() error
}

// ParseRoster is RosterParser{Spec: spec, Keyer: keyer}.Parse(r, emit).
func ParseRoster(r io.Reader, spec *Spec, keyer Keyer, emit func(store.Entry) error) (*Roster, error) {
	return RosterParser{Spec: spec, Keyer: keyer}.Parse(r, emit)
}

// Parse reads a roster CSV from r, streaming: memory holds one row at a
// time, the practice dictionary, and 20 bytes per row for the duplicate
// check (subject keys with row numbers, in sorted blocks: see rowKeys).
//
// The CSV is UTF-8 (a leading BOM is skipped), one row per line, fields
// separated by commas and optionally quoted with double quotes; blank lines
// are skipped but counted, so that row numbers are those a spreadsheet shows
// (the header is row 1). The header is subject_id,status,cohorts[,practice_id].
//
// If emit is not nil it is called with the entry of every valid row, in file
// order, until the first invalid row; an error from emit stops the parse and
// is returned as is. Entries are emitted before the whole file is known to
// be valid (duplicates are found at the end): a caller that stores them must
// discard them when Parse fails.
//
// Any broken rule makes Parse return a *ValidationError (Input "roster")
// listing the first errors by row, with the total. An error reading r is
// returned wrapped.
func (p RosterParser) Parse(r io.Reader, emit func(store.Entry) error) (*Roster, error) {
	if p.Spec == nil || p.Keyer == nil {
		return nil, errors.New("snapshot: roster parser needs a spec and a keyer")
	}
	rp := newRowParser(p.Spec, p.MaxErrors)
	br := bufio.NewReaderSize(r, MaxRowBytes)
	digester := store.NewDigester(nil)
	var keys rowKeys
	var counts store.Counts
	counts.PerCohort = make([][2]uint64, len(p.Spec.Cohorts))
	var fields [][]byte
	row := 0
	header := true
	for {
		line, err := br.ReadSlice('\n')
		if len(line) == 0 && err == io.EOF {
			break
		}
		row++
		if row > MaxRows {
			rp.errs.add(row, "row", fmt.Sprintf("a roster has at most %d rows", MaxRows))
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			rp.errs.add(row, "row", fmt.Sprintf("must be at most %d bytes", MaxRowBytes))
			if err := skipLine(br); err != nil {
				return nil, err
			}
			if header {
				header = false
				break
			}
			continue
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read roster: %w", err)
		}
		line = trimEOL(line)
		if header {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
			header = false
			if !rp.header(line) {
				break
			}
			continue
		}
		if len(line) == 0 {
			continue // blank line
		}
		var rec store.Record
		var practice string
		var ok bool
		fields, rec, practice, ok = rp.row(row, line, fields)
		if !ok {
			continue
		}
		key := p.Keyer.SubjectKey(string(fields[0]))
		if !p.validated {
			keys.add(key, row)
		}
		if rp.errs.total > 0 {
			continue // rejected already: only look for more errors
		}
		e := store.Entry{Key: key, Record: rec}
		digester.AddWithPractice(e, practice)
		counts.Add(rec, len(p.Spec.Cohorts))
		if emit != nil {
			if err := emit(e); err != nil {
				return nil, err
			}
		}
	}
	if header {
		rp.errs.add(1, "header", "a header row is required: subject_id,status,cohorts,practice_id")
	}
	if err := duplicates(&keys, rp.errs, p.pause); err != nil {
		return nil, err
	}
	if err := rp.errs.err(InputRoster); err != nil {
		ve := err.(*ValidationError)
		slices.SortStableFunc(ve.Errors, func(a, b RowError) int { return cmp.Compare(a.Row, b.Row) })
		return nil, ve
	}
	return &Roster{
		Entries:   digester.Count(),
		Practices: rp.practices,
		Counts:    counts,
		Digest:    digester.Sum(p.Spec.Canonical()),
	}, nil
}

// rowParser holds the state of a roster parse that rows depend on.
type rowParser struct {
	spec       *Spec
	cohorts    map[string]int
	nfields    int
	practiceOf map[string]uint32
	practices  []string
	errs       *errorList
	unquoted   []byte
}

func newRowParser(spec *Spec, maxErrors int) *rowParser {
	rp := &rowParser{
		spec:       spec,
		cohorts:    make(map[string]int, len(spec.Cohorts)),
		practiceOf: make(map[string]uint32),
		errs:       newErrorList(maxErrors),
	}
	for i, c := range spec.Cohorts {
		rp.cohorts[c.ID] = i
	}
	return rp
}

var (
	header3 = []string{"subject_id", "status", "cohorts"}
	header4 = []string{"subject_id", "status", "cohorts", "practice_id"}
)

// header checks the header row and reports whether parsing can go on.
func (rp *rowParser) header(line []byte) bool {
	fields, err := rp.split(line, nil)
	if err == "" {
		for _, want := range [][]string{header4, header3} {
			if len(fields) != len(want) {
				continue
			}
			ok := true
			for i, f := range fields {
				if !bytes.EqualFold(bytes.TrimSpace(f), []byte(want[i])) {
					ok = false
				}
			}
			if ok {
				rp.nfields = len(want)
				return true
			}
		}
	}
	rp.errs.add(1, "header", "must be subject_id,status,cohorts,practice_id (practice_id optional)")
	return false
}

// row validates one data row. It returns the fields (reusing buf), the
// record and practice name, and whether the subject_id is valid (the row can
// be keyed for the duplicate check). Row errors are added to rp.errs: the
// record is valid only if none were.
func (rp *rowParser) row(row int, line []byte, buf [][]byte) ([][]byte, store.Record, string, bool) {
	fields, serr := rp.split(line, buf)
	if serr != "" {
		rp.errs.add(row, "row", serr)
		return fields, store.Record{}, "", false
	}
	if len(fields) != rp.nfields {
		rp.errs.add(row, "row", fmt.Sprintf("must have %d fields, has %d", rp.nfields, len(fields)))
		return fields, store.Record{}, "", false
	}
	subjectOK := rp.subject(row, fields[0])
	var rec store.Record
	status := bytes.TrimSpace(fields[1])
	switch {
	case bytes.EqualFold(status, []byte("affected")):
		rec.Status = store.Affected
	case bytes.EqualFold(status, []byte("under_review")):
		rec.Status = store.UnderReview
	default:
		rp.errs.add(row, "status", "must be affected or under_review")
	}
	rec.Cohorts = rp.cohortSet(row, fields[2], fields[0], rec.Status)
	practice := ""
	if rp.nfields == 4 {
		practice = rp.practice(row, fields[3], &rec)
	}
	return fields, rec, practice, subjectOK
}

func (rp *rowParser) subject(row int, f []byte) bool {
	rule := ""
	switch {
	case len(f) == 0:
		rule = "is required"
	case len(f) > MaxSubjectIDBytes:
		rule = fmt.Sprintf("must be at most %d bytes", MaxSubjectIDBytes)
	case !utf8.Valid(f):
		rule = "must be valid UTF-8"
	case bytes.IndexFunc(f, unicode.IsControl) >= 0:
		rule = "must not contain control characters"
	case isSpace(f[0]) || isSpace(f[len(f)-1]):
		rule = "must not have leading or trailing spaces"
	}
	if rule != "" {
		rp.errs.add(row, "subject_id", rule)
		return false
	}
	return true
}

// maxCohortsNamed bounds the valid cohort ids an error lists.
const maxCohortsNamed = 10

// unknownCohort is the rule for a cohort id the spec does not have. It
// names the id when it is shaped like one ([a-z0-9-]) and is not the row's
// subject id (a shifted column), and lists the spec's ids.
func (rp *rowParser) unknownCohort(id, subject []byte) string {
	var b strings.Builder
	b.WriteString("unknown cohort id")
	if isID(string(id)) && !bytes.Equal(id, bytes.TrimSpace(subject)) {
		fmt.Fprintf(&b, " %q", id)
	}
	b.WriteString(" (the spec's cohorts: ")
	for i, c := range rp.spec.Cohorts {
		if i == maxCohortsNamed {
			fmt.Fprintf(&b, ", and %d more", len(rp.spec.Cohorts)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.ID)
	}
	b.WriteString(")")
	return b.String()
}

func (rp *rowParser) cohortSet(row int, f, subject []byte, status store.Status) uint64 {
	f = bytes.TrimSpace(f)
	if len(f) == 0 {
		if status == store.Affected {
			rp.errs.add(row, "cohorts", "an affected subject needs at least one cohort")
		}
		return 0
	}
	if !utf8.Valid(f) {
		rp.errs.add(row, "cohorts", "must be valid UTF-8")
		return 0
	}
	var set uint64
	for more := true; more; {
		var id []byte
		id, f, more = bytes.Cut(f, []byte(";"))
		id = bytes.TrimSpace(id)
		if len(id) == 0 {
			rp.errs.add(row, "cohorts", "empty cohort id in the list")
			continue
		}
		i, ok := rp.cohorts[string(id)]
		switch {
		case !ok:
			rp.errs.add(row, "cohorts", rp.unknownCohort(id, subject))
		case set&(1<<uint(i)) != 0:
			rp.errs.add(row, "cohorts", fmt.Sprintf("cohort %s listed twice", rp.spec.Cohorts[i].ID))
		default:
			set |= 1 << uint(i)
		}
	}
	return set
}

func (rp *rowParser) practice(row int, f []byte, rec *store.Record) string {
	f = bytes.TrimSpace(f)
	if len(f) == 0 {
		return ""
	}
	if len(f) > MaxPracticeIDBytes {
		rp.errs.add(row, "practice_id", fmt.Sprintf("must be at most %d bytes", MaxPracticeIDBytes))
		return ""
	}
	if !IsPracticeID(string(f)) {
		rp.errs.add(row, "practice_id", "must match [A-Za-z0-9._-]")
		return ""
	}
	if i, ok := rp.practiceOf[string(f)]; ok {
		rec.Practice = i
		return rp.practices[i-1]
	}
	name := string(f)
	rp.practices = append(rp.practices, name)
	rec.Practice = uint32(len(rp.practices))
	rp.practiceOf[name] = rec.Practice
	return name
}

// split splits a CSV line into fields (RFC 4180 quoting within one line),
// reusing buf. It returns a rule if the quoting is malformed. Fields of
// quoted values with doubled quotes are unescaped into rp.unquoted.
func (rp *rowParser) split(line []byte, buf [][]byte) ([][]byte, string) {
	fields := buf[:0]
	rp.unquoted = rp.unquoted[:0]
	// Pre-size unquoted so that appends never move fields already cut.
	if cap(rp.unquoted) < len(line) {
		rp.unquoted = make([]byte, 0, len(line))
	}
	for {
		if len(line) == 0 || line[0] != '"' {
			field, rest, more := bytes.Cut(line, []byte(","))
			if bytes.IndexByte(field, '"') >= 0 {
				return fields, "quote inside an unquoted field"
			}
			fields = append(fields, field)
			if !more {
				return fields, ""
			}
			line = rest
			continue
		}
		// Quoted field.
		line = line[1:]
		start := len(rp.unquoted)
		closed := false
		for i := 0; i < len(line); i++ {
			if line[i] != '"' {
				continue
			}
			if i+1 < len(line) && line[i+1] == '"' {
				rp.unquoted = append(rp.unquoted, line[:i+1]...)
				line = line[i+2:]
				i = -1
				continue
			}
			rp.unquoted = append(rp.unquoted, line[:i]...)
			line = line[i+1:]
			closed = true
			break
		}
		if !closed {
			return fields, "unterminated quoted field"
		}
		fields = append(fields, rp.unquoted[start:len(rp.unquoted):len(rp.unquoted)])
		if len(line) == 0 {
			return fields, ""
		}
		if line[0] != ',' {
			return fields, "text after a closing quote"
		}
		line = line[1:]
		if len(line) == 0 {
			fields = append(fields, line)
			return fields, ""
		}
	}
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' }

// skipLine discards the rest of an over-long line.
func skipLine(br *bufio.Reader) error {
	for {
		_, err := br.ReadSlice('\n')
		switch {
		case err == nil, err == io.EOF:
			return nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return fmt.Errorf("read roster: %w", err)
		}
	}
}
