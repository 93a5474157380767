package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	netmail "net/mail"
	"os"
	"strings"
	"time"

	"github.com/impact-health/impact/internal/mail"
)

// A wave file (notice claim --out) is the outbox of the mail commands: one
// outboxLine per notice. Errors name the file and the line, never a value
// from it.

// waveNotice is one notice of a wave, ready to become a message.
type waveNotice struct {
	line    int
	subject string
	notice  mail.Notice
}

// maxWaveLine bounds one wave line (a notice body is a few KB).
const maxWaveLine = 1 << 20

// walkWave calls fn for every notice of the wave file f, in order, after
// checking the line: it must be an outbox line with a subject id, a valid
// notice id (unique in the wave), a version, a subject, a body and the
// notified time.
func walkWave(f io.Reader, name string, fn func(waveNotice) error) error {
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), maxWaveLine)
	seen := map[string]int{}
	for line := 1; sc.Scan(); line++ {
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		var l outboxLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("%s line %d: not an outbox line (notice claim --out writes them)", name, line)
		}
		if strings.TrimSpace(l.SubjectID) == "" {
			return fmt.Errorf("%s line %d: subject_id is empty", name, line)
		}
		at, err := time.Parse(time.RFC3339Nano, l.NotifiedAt)
		if err != nil {
			return fmt.Errorf("%s line %d: notified_at is not a time", name, line)
		}
		n := mail.Notice{ID: l.NoticeID, Version: uint64(l.Version), Subject: l.Subject, Body: l.Body,
			SupportContact: l.SupportContact, NotifiedAt: at}
		if err := n.Validate(); err != nil {
			return fmt.Errorf("%s line %d: %v", name, line, err)
		}
		if first, dup := seen[n.ID]; dup {
			return fmt.Errorf("%s line %d: the notice id of line %d again", name, line, first)
		}
		seen[n.ID] = line
		if err := fn(waveNotice{line: line, subject: strings.TrimSpace(l.SubjectID), notice: n}); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("%s: a line is longer than %d bytes", name, maxWaveLine)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// openWave opens a wave file and checks every line of it, building its
// message with header h (pass one): a malformed line, or a notice the
// message builder refuses, refuses the whole wave before anything is
// written or sent. The file is left at its start for the second pass, on
// the same open file, so a wave file replaced in between (claim renames a
// new one in place) does not change what is sent.
func openWave(name string, h mail.Header) (*os.File, int, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	count := 0
	if err := walkWave(f, name, func(w waveNotice) error {
		count++
		if _, err := mail.Build(w.notice, h); err != nil {
			return fmt.Errorf("%s line %d: %v", name, w.line, err)
		}
		return nil
	}); err != nil {
		f.Close()
		return nil, 0, err
	}
	if count == 0 {
		f.Close()
		return nil, 0, fmt.Errorf("%s holds no notice", name)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, count, nil
}

// readRecipients reads the operator's contact list: a CSV with a header
// naming subject_id and email (other columns are ignored). A row with an
// empty email leaves its subject without an address. Errors name the row
// (header = 1) and the column, never a value. The addresses live in
// memory for this run only.
func readRecipients(name string) (map[string]*netmail.Address, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cr := csv.NewReader(bufio.NewReader(f))
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: empty file, a header with subject_id and email is required", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, csvErr(err))
	}
	subjectCol, emailCol := -1, -1
	for i, h := range header {
		switch strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))) {
		case "subject_id":
			subjectCol = i
		case "email":
			emailCol = i
		}
	}
	if subjectCol < 0 || emailCol < 0 {
		return nil, fmt.Errorf("%s: row 1: the header needs a subject_id and an email column", name)
	}
	out := map[string]*netmail.Address{}
	rows := map[string]int{}
	for row := 2; ; row++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, csvErr(err))
		}
		if len(rec) <= subjectCol || len(rec) <= emailCol {
			return nil, fmt.Errorf("%s: row %d: too few columns", name, row)
		}
		subject := strings.TrimSpace(rec[subjectCol])
		if subject == "" {
			return nil, fmt.Errorf("%s: row %d: subject_id is empty", name, row)
		}
		if first, dup := rows[subject]; dup {
			return nil, fmt.Errorf("%s: row %d: the subject_id of row %d again (one address per subject)", name, row, first)
		}
		rows[subject] = row
		email := strings.TrimSpace(rec[emailCol])
		if email == "" {
			continue
		}
		a, err := mail.ParseAddress(email)
		if err != nil || strings.ContainsAny(email, "\r\n") {
			return nil, fmt.Errorf("%s: row %d: email is not an email address", name, row)
		}
		out[subject] = a
	}
}

// csvErr keeps the position of a CSV syntax error and drops the rest
// (which may quote a value).
func csvErr(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("row %d: %v", pe.StartLine, pe.Err)
	}
	return err
}

// parseFromFlags parses --from and --reply-to.
func parseFromFlags(from, replyTo string) (mail.Header, error) {
	var h mail.Header
	if strings.TrimSpace(from) == "" {
		return h, usageError("--from is required")
	}
	a, err := mail.ParseAddress(from)
	if err != nil {
		return h, usageError("--from: " + err.Error())
	}
	h.From = a
	if replyTo != "" {
		r, err := mail.ParseAddress(replyTo)
		if err != nil {
			return h, usageError("--reply-to: " + err.Error())
		}
		h.ReplyTo = r
	}
	return h, nil
}
