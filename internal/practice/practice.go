// Package practice is the practice view: what a GP practice is told about
// an incident and about its own patients. A practice sees its own patients
// only: it learns about a subject only when the subject's record at the
// visible version, or the record its latest notice was rendered from (its
// pin), names the caller's practice; about any other subject it is told
// nothing, not even "not affected", and closed accounts are absent. What it
// is told about a patient is the patient's own status answer (package
// status builds both), so the GP never contradicts the email either.
//
// The practice is the caller's (the token's practice_id claim), never a
// request field.
package practice

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
)

// MaxBatch is the most subject ids one check may hold.
const MaxBatch = 10_000

// DefaultTallyTTL is how long the notified and due counts of an incident's
// visible version are reused before the ledger is counted again.
const DefaultTallyTTL = 5 * time.Second

// Audit actions of the practice calls.
const (
	AuditImpact = "practice_impact" // GetPracticeImpact
	AuditCheck  = "practice_check"  // CheckPatients (one event per call or stream)
)

// Ledger is the part of the store the practice view reads.
type Ledger interface {
	Head(ctx context.Context, incident string) (store.Head, error)
	store.LedgerBatch
	Pins(ctx context.Context, incident string, fn func(store.Key, store.Pin) error) error
	Records(ctx context.Context, incident string, version uint64, keys []store.Key) ([]store.Record, error)
	// Scan counts versions staged without per-practice counts (once).
	Scan(ctx context.Context, incident string, version uint64, fn func(store.Entry) error) error
}

// Versions provides the immutable per-version data (snapshot.Catalog).
type Versions interface {
	Get(ctx context.Context, incident string, version uint64) (*snapshot.Version, error)
}

// Answerer builds a patient's status answer from a view
// (status.Service.AnswerView).
type Answerer interface {
	AnswerView(ctx context.Context, incident string, view store.View) (status.Answer, error)
}

// Keyer turns subject ids into store keys (package auth implements it).
type Keyer interface {
	SubjectKey(subjectID string) store.Key
}

// Auditor records the practice calls in the audit trail (audit.Recorder):
// it appends an event with the outcome of actionErr and returns the error
// the caller should get.
type Auditor interface {
	Record(ctx context.Context, e store.AuditEvent, actionErr error) error
}

// Caller is who asks: the token subject (the practice's user) and the
// practice it acts for.
type Caller struct {
	Actor, Practice string
}

// Service answers practice calls. It is safe for concurrent use.
type Service struct {
	ledger   Ledger
	versions Versions
	answers  Answerer
	keyer    Keyer
	audit    Auditor
	now      func() time.Time
	ttl      time.Duration

	tallyMu sync.Mutex // one ledger count at a time
	mu      sync.Mutex
	tallies map[string]*tally                    // incident -> latest count
	counts  map[versionRef][]store.PracticeCount // versions without stored counts
}

type versionRef struct {
	incident string
	version  uint64
}

// Option configures a Service.
type Option func(*Service)

// WithClock sets the clock of the tally's age.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithTallyTTL sets how long notified and due counts are reused (0: count
// on every call).
func WithTallyTTL(d time.Duration) Option { return func(s *Service) { s.ttl = d } }

// New returns a Service.
func New(ledger Ledger, versions Versions, answers Answerer, keyer Keyer, audit Auditor, opts ...Option) *Service {
	s := &Service{ledger: ledger, versions: versions, answers: answers, keyer: keyer, audit: audit,
		now: time.Now, ttl: DefaultTallyTTL, tallies: map[string]*tally{}, counts: map[versionRef][]store.PracticeCount{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// IDsProblem returns what is wrong with a batch of subject ids, naming
// positions (from 0), never values; "" if nothing is.
func IDsProblem(ids []string) string {
	switch {
	case len(ids) == 0:
		return "must hold at least 1 id"
	case len(ids) > MaxBatch:
		return fmt.Sprintf("must hold at most %d ids in one call (%d given)", MaxBatch, len(ids))
	}
	seen := make(map[string]int, len(ids))
	for i, id := range ids {
		switch {
		case id == "":
			return fmt.Sprintf("position %d is empty", i)
		case len(id) > status.MaxSubjectIDBytes:
			return fmt.Sprintf("position %d is longer than %d bytes", i, status.MaxSubjectIDBytes)
		}
		if j, dup := seen[id]; dup {
			return fmt.Sprintf("position %d repeats position %d", i, j)
		}
		seen[id] = i
	}
	return ""
}

// Patient is one patient of the practice and its own status answer.
type Patient struct {
	SubjectID string
	Answer    status.Answer
}

// Check is the answer to one batch of ids.
type Check struct {
	Incident string
	// Version is the visible version every answer was read at.
	Version uint64
	// Checked is how many ids the batch held.
	Checked int
	// Patients are those of the caller's practice, in batch order.
	Patients []Patient
}

// CheckPatients checks one batch and records it in the audit trail (the
// practice, how many ids were checked and found; never an id).
func (s *Service) CheckPatients(ctx context.Context, c Caller, incident string, ids []string) (Check, error) {
	chk, err := s.Check(ctx, c, incident, ids)
	return chk, s.RecordChecks(ctx, c, incident, chk.Version, len(ids), len(chk.Patients), err)
}

// RecordChecks records checks of ids (one call, or a whole stream) in the
// audit trail, and returns checkErr or the recording's error.
func (s *Service) RecordChecks(ctx context.Context, c Caller, incident string, version uint64, checked, found int, checkErr error) error {
	ev := store.AuditEvent{Action: AuditCheck, Actor: c.Actor, Incident: incident, Version: version,
		Detail: fmt.Sprintf("practice %s: %d ids checked, %d found", c.Practice, checked, found)}
	if checkErr != nil {
		ev.Detail = fmt.Sprintf("practice %s: %d ids asked, %d found before the error", c.Practice, checked, found)
	}
	return s.audit.Record(ctx, ev, checkErr)
}

// Check answers one batch of ids without recording it (a stream records
// its batches together, RecordChecks). Nothing is answered unless the
// whole batch could be read: a store failure is an error wrapping
// store.ErrUnavailable, never a partial list.
func (s *Service) Check(ctx context.Context, c Caller, incident string, ids []string) (Check, error) {
	if c.Practice == "" {
		return Check{}, fmt.Errorf("%w: no practice", status.ErrInvalidArgument)
	}
	if p := IDsProblem(ids); p != "" {
		return Check{}, fmt.Errorf("%w: subject_ids %s", status.ErrInvalidArgument, p)
	}
	keys := make([]store.Key, len(ids))
	for i, id := range ids {
		keys[i] = s.keyer.SubjectKey(id)
	}
	views, err := s.ledger.ReadMany(ctx, incident, keys)
	if err != nil {
		return Check{}, storeErr(err)
	}
	if len(views) != len(ids) {
		return Check{}, fmt.Errorf("%w: %d views for %d ids", store.ErrUnavailable, len(views), len(ids))
	}
	visible := views[0].Visible
	if visible == 0 {
		return Check{}, status.ErrNotFound
	}
	idx := practiceIndexes{s: s, incident: incident, practice: c.Practice, of: map[uint64]uint32{}}
	visIdx, err := idx.at(ctx, visible)
	if err != nil {
		return Check{}, err
	}
	out := Check{Incident: incident, Version: visible, Checked: len(ids)}
	for i, v := range views {
		if v.Erased || v.Visible != visible {
			if v.Visible != visible {
				return Check{}, fmt.Errorf("%w: batch read across versions", store.ErrUnavailable)
			}
			continue
		}
		mine := visIdx != 0 && v.Record.Status != store.NotAffected && v.Record.Practice == visIdx
		if !mine && v.Pin != nil && v.Pin.Record.Practice != 0 {
			pi, err := idx.at(ctx, v.Pin.Version)
			if err != nil {
				return Check{}, err
			}
			mine = pi != 0 && v.Pin.Record.Practice == pi
		}
		if !mine {
			continue
		}
		a, err := s.answers.AnswerView(ctx, incident, v)
		if err != nil {
			return Check{}, err
		}
		out.Patients = append(out.Patients, Patient{SubjectID: ids[i], Answer: a})
	}
	return out, nil
}

// practiceIndexes finds the caller's practice in the dictionaries of the
// versions a check meets (0: absent), each once.
type practiceIndexes struct {
	s        *Service
	incident string
	practice string
	of       map[uint64]uint32
}

func (p *practiceIndexes) at(ctx context.Context, version uint64) (uint32, error) {
	if i, ok := p.of[version]; ok {
		return i, nil
	}
	v, err := p.s.version(ctx, p.incident, version)
	if err != nil {
		return 0, err
	}
	i := practiceIndex(v.Manifest.Practices, p.practice)
	p.of[version] = i
	return i, nil
}

// practiceIndex is 1 + the index of practice in names, 0 if absent (the
// encoding of store.Record.Practice).
func practiceIndex(names []string, practice string) uint32 {
	for i, n := range names {
		if n == practice {
			return uint32(i + 1)
		}
	}
	return 0
}

func (s *Service) version(ctx context.Context, incident string, v uint64) (*snapshot.Version, error) {
	ver, err := s.versions.Get(ctx, incident, v)
	if err != nil {
		return nil, unavailable(err)
	}
	if ver.Spec == nil {
		return nil, fmt.Errorf("%w: %s v%d is not readable", store.ErrUnavailable, incident, v)
	}
	return ver, nil
}

// storeErr maps a store error: an unknown incident is not found; anything
// else means the answer cannot be established.
func storeErr(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return status.ErrNotFound
	}
	return unavailable(err)
}

func unavailable(err error) error {
	if errors.Is(err, store.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}
