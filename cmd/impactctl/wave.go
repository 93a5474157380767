package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
)

// A wave claims the notices of every subject of a roster CSV (optionally
// only one cohort's), in order, through the ClaimNotices stream. Each claim's
// idempotency key is "<wave id>:<subject>", and the default wave id is a
// digest of the roster bytes and the cohort: re-running the same wave (after
// a crash, say) gets the same answers back and records nothing new.

// rosterWalker reads the subjects of a roster CSV. Only the subject_id
// column is needed, and the cohorts column when filtering by cohort; other
// columns are ignored.
type rosterWalker struct {
	// cohort, when not empty, keeps only rows whose ;-separated cohorts
	// contain it.
	cohort string
}

// walk calls fn for each kept subject, in file order. Errors name the row
// (as a spreadsheet numbers it, header = 1) and the column, never a value.
func (w rosterWalker) walk(r io.Reader, fn func(subject string) error) error {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return errors.New("roster: empty file, a header is required")
	}
	if err != nil {
		return fmt.Errorf("roster: %w", err)
	}
	subjectCol, cohortsCol := -1, -1
	for i, h := range header {
		switch strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")) {
		case "subject_id":
			subjectCol = i
		case "cohorts":
			cohortsCol = i
		}
	}
	if subjectCol < 0 {
		return errors.New("roster: row 1: header has no subject_id column")
	}
	if w.cohort != "" && cohortsCol < 0 {
		return errors.New("roster: row 1: header has no cohorts column, needed by --cohort")
	}
	for row := 2; ; row++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("roster: %w", err)
		}
		subject := strings.TrimSpace(rec[subjectCol])
		if subject == "" {
			return fmt.Errorf("roster: row %d: subject_id is empty", row)
		}
		if w.cohort != "" && !hasCohort(rec[cohortsCol], w.cohort) {
			continue
		}
		if err := fn(subject); err != nil {
			return err
		}
	}
}

// hasCohort reports whether the ;-separated list contains cohort.
func hasCohort(list, cohort string) bool {
	for c := range strings.SplitSeq(list, ";") {
		if strings.TrimSpace(c) == cohort {
			return true
		}
	}
	return false
}

// waveDigest hashes the roster bytes, then the cohort: the default wave id
// is derived from it.
type waveDigest struct{ h hash.Hash }

func newWaveDigest() waveDigest { return waveDigest{sha256.New()} }

func (d waveDigest) Write(p []byte) (int, error) { return d.h.Write(p) }

// waveID returns "wave-" and the first 12 hex digits of
// sha256(roster bytes + cohort).
func (d waveDigest) waveID(cohort string) string {
	d.h.Write([]byte(cohort))
	return "wave-" + hex.EncodeToString(d.h.Sum(nil))[:12]
}

// scanWave reads a roster once: it counts the subjects the wave claims and
// derives the default wave id.
func scanWave(r io.Reader, cohort string) (rows int, waveID string, err error) {
	d := newWaveDigest()
	err = rosterWalker{cohort: cohort}.walk(io.TeeReader(r, d), func(string) error {
		rows++
		return nil
	})
	if err != nil {
		return 0, "", err
	}
	// The CSV reader may stop before EOF; hash whatever it left.
	if _, err := io.Copy(d, r); err != nil {
		return 0, "", err
	}
	return rows, d.waveID(cohort), nil
}

// idempotencyKey is the key of one subject's claim in a wave.
func idempotencyKey(waveID, subject string) string { return waveID + ":" + subject }

// waveCounts counts a wave's answers.
type waveCounts struct {
	// Send counts new notices; Replayed the answers that repeat an
	// earlier run of the same wave (the same notice ids, handed out before).
	Send        int `json:"send"`
	Replayed    int `json:"replayed"`
	AlreadySent int `json:"already_sent"`
	None        int `json:"none"`
}

func (c waveCounts) total() int { return c.Send + c.Replayed + c.AlreadySent + c.None }

// pendingWindow bounds how far the requests of a wave run ahead of the
// answers.
const pendingWindow = 4096

// claimWave streams one ClaimNotices request per subject that subjects
// yields and calls answer for each answer, in order. It checks that every
// request gets exactly one answer, for its own subject.
func claimWave(ctx context.Context, c impactv1.NoticeServiceClient, incident, waveID string,
	subjects func(yield func(string) error) error, answer func(subject string, claim *impactv1.Claim) error) (waveCounts, error) {
	var counts waveCounts
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.ClaimNotices(ctx)
	if err != nil {
		return counts, err
	}
	pending := make(chan string, pendingWindow)
	sendDone := make(chan error, 1)
	go func() {
		defer close(pending)
		err := subjects(func(s string) error {
			select {
			case pending <- s:
			case <-ctx.Done():
				return ctx.Err()
			}
			return stream.Send(&impactv1.ClaimNoticesRequest{IncidentId: incident, SubjectId: s, IdempotencyKey: idempotencyKey(waveID, s)})
		})
		if err == nil {
			err = stream.CloseSend()
		} else if !errors.Is(err, io.EOF) {
			// Not the server ending the stream (Recv reports that): stop.
			cancel()
		}
		sendDone <- err
	}()
	// fail returns the sender's own error in preference to the Canceled
	// it caused.
	fail := func(err error) (waveCounts, error) {
		cancel()
		if serr := <-sendDone; serr != nil && !errors.Is(serr, io.EOF) && !errors.Is(serr, context.Canceled) {
			return counts, serr
		}
		return counts, err
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fail(err)
		}
		want, ok := <-pending
		if !ok {
			return fail(errors.New("server answered more claims than were sent"))
		}
		if resp.GetSubjectId() != want {
			return fail(fmt.Errorf("answer %d is for another subject than its request", counts.total()+1))
		}
		cl := resp.GetClaim()
		switch cl.GetAction() {
		case impactv1.ClaimAction_SEND:
			if resp.GetReplayed() {
				counts.Replayed++
			} else {
				counts.Send++
			}
		case impactv1.ClaimAction_ALREADY_SENT:
			counts.AlreadySent++
		case impactv1.ClaimAction_NONE:
			counts.None++
		default:
			return fail(fmt.Errorf("answer %d has no action", counts.total()+1))
		}
		if err := answer(want, cl); err != nil {
			return fail(err)
		}
	}
	// The server ended the stream. Unblock a sender it stopped reading
	// from; every request sent but not answered is still in pending.
	cancel()
	serr := <-sendDone
	if _, ok := <-pending; ok {
		return counts, fmt.Errorf("server ended the wave after %d answers, before answering every claim", counts.total())
	}
	if serr != nil {
		return counts, serr
	}
	return counts, nil
}

// outboxLine is one line of a wave's outbox: a notice to send.
type outboxLine struct {
	SubjectID      string   `json:"subject_id"`
	IncidentID     string   `json:"incident_id"`
	Version        uint32   `json:"version"`
	NoticeID       string   `json:"notice_id"`
	Status         string   `json:"status"`
	Cohorts        []string `json:"cohorts"`
	Subject        string   `json:"subject"`
	Body           string   `json:"body"`
	SupportContact string   `json:"support_contact"`
	NotifiedAt     string   `json:"notified_at"`
}

// outbox writes a wave's notices as JSON lines to PATH.tmp, then commits
// them by fsync and rename to PATH: a reader of PATH sees a whole wave or
// nothing. The file is the mail system's input and the ledger's recovery
// record; it holds personal data, so it is private to its owner (0600).
type outbox struct {
	path string
	f    *os.File
	w    *bufio.Writer
	enc  *json.Encoder
	n    int
}

func createOutbox(path string) (*outbox, error) {
	f, err := os.OpenFile(path+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriterSize(f, 256<<10)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &outbox{path: path, f: f, w: w, enc: enc}, nil
}

// add writes the notice of a SEND answer.
func (o *outbox) add(subject string, c *impactv1.Claim) error {
	cohorts := make([]string, 0, len(c.GetCohorts()))
	for _, co := range c.GetCohorts() {
		cohorts = append(cohorts, co.GetId())
	}
	notified := ""
	if ts := c.GetNotifiedAt(); ts != nil {
		notified = ts.AsTime().UTC().Format(time.RFC3339Nano)
	}
	n := c.GetNotice()
	if err := o.enc.Encode(outboxLine{
		SubjectID:      subject,
		IncidentID:     c.GetIncidentId(),
		Version:        c.GetVersion(),
		NoticeID:       c.GetNoticeId(),
		Status:         c.GetStatus().String(),
		Cohorts:        cohorts,
		Subject:        n.GetSubject(),
		Body:           n.GetBody(),
		SupportContact: n.GetSupportContact(),
		NotifiedAt:     notified,
	}); err != nil {
		return fmt.Errorf("write %s: %w", o.f.Name(), err)
	}
	o.n++
	return nil
}

// sync flushes and fsyncs PATH.tmp and closes it.
func (o *outbox) sync() error {
	if o.f == nil {
		return nil
	}
	err := o.w.Flush()
	if err == nil {
		err = o.f.Sync()
	}
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	o.f = nil
	if err != nil {
		return fmt.Errorf("write %s.tmp: %w", o.path, err)
	}
	return nil
}

// commit makes the wave durable at PATH: fsync PATH.tmp, rename it, fsync
// the directory.
func (o *outbox) commit() error {
	if err := o.sync(); err != nil {
		return err
	}
	if err := os.Rename(o.path+".tmp", o.path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(o.path))
}

// keep makes what a failed wave claimed durable at PATH.tmp: the claims
// are pinned on the server, so their notices must not be lost. Re-running
// the wave rewrites the whole outbox.
func (o *outbox) keep() error { return o.sync() }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
