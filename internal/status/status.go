// Package status is the patient read path and the notification ledger's
// claim decision. The invariants (docs/contract.md) that concern what a patient is
// told live here:
//
//   - 3, the app never contradicts the email: a notified subject is answered
//     from the record of its pinned version, with UpdatePending and the
//     visible status beside it when the visible version says otherwise;
//   - 4, monotonic reads: an answer is read at AtLeast or later, or fails
//     with ErrVersionAhead;
//   - 5, fail closed: any doubt is an error wrapping store.ErrUnavailable,
//     never a NotAffected guess;
//   - 9, forward-only, idempotent pins.
package status

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/store"
)

var (
	// ErrNotFound: the incident is unknown or has no published version.
	ErrNotFound = errors.New("incident not found")
	// ErrVersionAhead: at_least_version is beyond the newest published
	// version. The caller may retry later; it is never answered from older.
	ErrVersionAhead = errors.New("requested version is not published yet")
	// ErrInvalidArgument: a malformed request (empty subject, key too long).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrErased: the subject's account was closed (Erase). It wraps
	// ErrNotFound: the transport answers NOT_FOUND, as for an unknown
	// incident.
	ErrErased = fmt.Errorf("%w: subject erased", ErrNotFound)
)

// Keyer turns raw identifiers into store keys (package auth implements it).
type Keyer interface {
	SubjectKey(subjectID string) store.Key
	IdemKey(idempotencyKey string) store.IdemKey
}

// Versions provides the immutable per-version data (snapshot.Catalog).
type Versions interface {
	Get(ctx context.Context, incident string, version uint64) (*snapshot.Version, error)
}

// Notice is the text a subject is told.
type Notice struct {
	Subject, Body, SupportContact string
}

// Answer is one subject's status in one incident.
type Answer struct {
	Incident      string
	IncidentTitle string
	Status        store.Status
	// Cohorts is shared with other answers from the same version: read
	// only.
	Cohorts []snapshot.Cohort
	Notice  Notice
	// Version is the visible version the answer was read at.
	Version uint64
	// NotifiedVersion, NotifiedAt and NoticeID describe the subject's pin.
	NotifiedVersion uint64
	NotifiedAt      time.Time
	NoticeID        string
	// UpdatePending: the visible status differs from the notified one.
	UpdatePending bool
	VisibleStatus store.Status
}

// Action is the outcome of a claim.
type Action int

const (
	// ActionSend: a notice is due; it is pinned and must be sent.
	ActionSend Action = iota + 1
	// ActionAlreadySent: notified at the current status already.
	ActionAlreadySent
	// ActionNone: never notified and not affected; nothing is due.
	ActionNone
)

func (a Action) String() string {
	switch a {
	case ActionSend:
		return "send"
	case ActionAlreadySent:
		return "already_sent"
	case ActionNone:
		return "none"
	}
	return "invalid"
}

// Claim is the answer to ClaimNotice.
type Claim struct {
	Action   Action
	Incident string
	// Version is the pinned version (send, already sent) or the visible
	// version the decision was made at (none).
	Version    uint64
	Status     store.Status
	Cohorts    []snapshot.Cohort // shared: read only
	Notice     Notice
	NoticeID   string
	NotifiedAt time.Time
	// Replayed: the claim repeats an earlier claim under the same
	// idempotency key (a wave run again): the same notice, handed out
	// before, not a new one.
	Replayed bool
}

// Store is what a Service needs of the store: incidents' heads and the
// notification ledger it reads and claims into.
type Store interface {
	store.Heads
	store.Ledger
}

// Service answers status reads and notice claims.
type Service struct {
	store    Store
	versions Versions
	keyer    Keyer
	now      func() time.Time
	renders  renderCache
}

// Option configures a Service.
type Option func(*Service)

// WithClock sets the clock used for notification times.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// New returns a Service.
func New(st Store, versions Versions, keyer Keyer, opts ...Option) *Service {
	s := &Service{store: st, versions: versions, keyer: keyer, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// MaxSubjectIDBytes bounds subject ids accepted from tokens and the notifier.
const MaxSubjectIDBytes = 128

// MaxIdempotencyKeyBytes bounds idempotency keys.
const MaxIdempotencyKeyBytes = 256

// CheckSubject refuses a subject id that is empty or longer than
// MaxSubjectIDBytes, with an error wrapping ErrInvalidArgument. Every
// domain call that takes a subject id (reads, claims, restores, erasure)
// checks it.
func CheckSubject(subjectID string) error {
	if subjectID == "" || len(subjectID) > MaxSubjectIDBytes {
		return fmt.Errorf("%w: subject id must be 1 to %d bytes", ErrInvalidArgument, MaxSubjectIDBytes)
	}
	return nil
}

// Status returns the subject's answer for one incident, read at atLeast or
// a later version.
func (s *Service) Status(ctx context.Context, incident, subjectID string, atLeast uint64) (Answer, error) {
	if err := CheckSubject(subjectID); err != nil {
		return Answer{}, err
	}
	view, err := s.read(ctx, incident, s.keyer.SubjectKey(subjectID), nil)
	if err != nil {
		return Answer{}, err
	}
	if atLeast > view.Visible {
		// This replica may not have applied a publish that another one
		// answered from: ask the store itself (invariant 4).
		if view, err = s.read(store.WithFresh(ctx), incident, s.keyer.SubjectKey(subjectID), nil); err != nil {
			return Answer{}, err
		}
	}
	if view.Erased {
		return Answer{}, ErrErased
	}
	if atLeast > view.Visible {
		return Answer{}, fmt.Errorf("%w: version %d requested, %d is the newest", ErrVersionAhead, atLeast, view.Visible)
	}
	return s.answer(ctx, incident, view)
}

// Statuses returns the subject's answer for every incident with a published
// version, sorted by incident id.
func (s *Service) Statuses(ctx context.Context, subjectID string) ([]Answer, error) {
	if err := CheckSubject(subjectID); err != nil {
		return nil, err
	}
	heads, err := s.store.Incidents(ctx)
	if err != nil {
		return nil, Unavailable(err)
	}
	key := s.keyer.SubjectKey(subjectID)
	out := make([]Answer, 0, len(heads))
	for _, h := range heads {
		if h.Visible == 0 {
			continue
		}
		view, err := s.read(ctx, h.Incident, key, nil)
		if err != nil {
			return nil, err
		}
		if view.Erased {
			return nil, ErrErased
		}
		a, err := s.answer(ctx, h.Incident, view)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// read returns the subject's view of a served incident.
func (s *Service) read(ctx context.Context, incident string, key store.Key, idem *store.IdemKey) (store.View, error) {
	return ReadView(ctx, s.store, incident, key, idem)
}

// ReadView reads a subject's view of a served incident from the ledger:
// ErrNotFound if the incident is unknown or has no published version, an
// error wrapping store.ErrUnavailable if the store cannot say (invariant 5).
func ReadView(ctx context.Context, l store.Ledger, incident string, key store.Key, idem *store.IdemKey) (store.View, error) {
	view, err := l.Read(ctx, incident, key, idem)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.View{}, ErrNotFound
	case err != nil:
		return store.View{}, Unavailable(err)
	case view.Visible == 0:
		return store.View{}, ErrNotFound
	}
	return view, nil
}

func (s *Service) answer(ctx context.Context, incident string, view store.View) (Answer, error) {
	visible, err := s.version(ctx, incident, view.Visible)
	if err != nil {
		return Answer{}, err
	}
	a := Answer{
		Incident:      incident,
		IncidentTitle: visible.Spec.Incident.Title,
		Version:       view.Visible,
		VisibleStatus: view.Record.Status,
	}
	from, rec, noticeID := visible, view.Record, ""
	if p := view.Pin; p != nil {
		// Invariant 3: answer from the pinned version's record.
		if from, err = s.version(ctx, incident, p.Version); err != nil {
			return Answer{}, err
		}
		rec, noticeID = p.Record, p.NoticeID
		a.NotifiedVersion, a.NotifiedAt, a.NoticeID = p.Version, p.NotifiedAt, p.NoticeID
		a.UpdatePending = p.Record.Status != view.Record.Status
	}
	a.Status = rec.Status
	a.Cohorts, a.Notice = s.renders.render(from.Spec, rec, a.NotifiedVersion, noticeID)
	return a, nil
}

// version loads a version's immutable data. A version that a visible
// pointer or a pin refers to must exist: if it cannot be loaded the answer
// is unavailable, never a guess.
func (s *Service) version(ctx context.Context, incident string, v uint64) (*snapshot.Version, error) {
	ver, err := s.versions.Get(ctx, incident, v)
	if err != nil {
		return nil, Unavailable(err)
	}
	return ver, nil
}

// Unavailable wraps err so that it maps to UNAVAILABLE: when the store
// cannot establish the answer, the caller is told so (invariant 5).
func Unavailable(err error) error {
	if errors.Is(err, store.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}

// MaxClaimAttempts bounds the compare-and-set retries of one pin write (a
// claim, or a restore of a lost pin).
const MaxClaimAttempts = 8

// ErrContended: a claim lost its compare-and-set too many times in a row.
var ErrContended = errors.New("claim contended, retry")

// Claim decides whether a notice is due for the subject at the visible
// version and, if so, pins the subject to it and returns the notice.
func (s *Service) Claim(ctx context.Context, incident, subjectID, idempotencyKey string) (Claim, error) {
	if err := CheckSubject(subjectID); err != nil {
		return Claim{}, err
	}
	if idempotencyKey == "" || len(idempotencyKey) > MaxIdempotencyKeyBytes {
		return Claim{}, fmt.Errorf("%w: idempotency key must be 1 to %d bytes", ErrInvalidArgument, MaxIdempotencyKeyBytes)
	}
	key, idem := s.keyer.SubjectKey(subjectID), s.keyer.IdemKey(idempotencyKey)
	for attempt := 0; attempt < MaxClaimAttempts; attempt++ {
		view, err := s.read(ctx, incident, key, &idem)
		if err != nil {
			return Claim{}, err
		}
		if view.Erased {
			// A closed account is never notified (and never pinned again).
			return Claim{Action: ActionNone, Incident: incident, Version: view.Visible, Status: store.NotAffected}, nil
		}
		if view.Replay != nil {
			// Invariant 9: the same key gets the same answer.
			c, err := s.claimAnswer(ctx, incident, ActionSend, *view.Replay)
			c.Replayed = true
			return c, err
		}
		if view.Pin == nil && view.Record.Status == store.NotAffected {
			c := Claim{Action: ActionNone, Incident: incident, Version: view.Visible, Status: store.NotAffected}
			return c, nil
		}
		if view.Pin != nil && view.Pin.Record.Status == view.Record.Status {
			return s.claimAnswer(ctx, incident, ActionAlreadySent, *view.Pin)
		}
		// Load the version before pinning to it, so that a pin never points
		// at a version that cannot be rendered.
		if _, err := s.version(ctx, incident, view.Visible); err != nil {
			return Claim{}, err
		}
		noticeID, err := newNoticeID(view.Visible)
		if err != nil {
			return Claim{}, err
		}
		next := store.Pin{
			Version:    view.Visible,
			Record:     view.Record,
			NoticeID:   noticeID,
			NotifiedAt: s.now().UTC().Truncate(time.Millisecond),
		}
		err = s.store.ClaimPin(ctx, incident, key, view.Pin, next, idem)
		switch {
		case err == nil:
			return s.claimAnswer(ctx, incident, ActionSend, next)
		case errors.Is(err, store.ErrConflict):
			continue // another claim moved the pin: decide again
		case errors.Is(err, store.ErrNotFound):
			return Claim{}, ErrNotFound
		default:
			return Claim{}, Unavailable(err)
		}
	}
	return Claim{}, ErrContended
}

func (s *Service) claimAnswer(ctx context.Context, incident string, action Action, p store.Pin) (Claim, error) {
	ver, err := s.version(ctx, incident, p.Version)
	if err != nil {
		return Claim{}, err
	}
	c := Claim{
		Action:     action,
		Incident:   incident,
		Version:    p.Version,
		Status:     p.Record.Status,
		NoticeID:   p.NoticeID,
		NotifiedAt: p.NotifiedAt,
	}
	c.Cohorts, c.Notice = s.renders.render(ver.Spec, p.Record, p.Version, p.NoticeID)
	return c, nil
}

// Render returns the cohorts and the notice of a record at one version, the
// same text for the email and the app. The notice of an affected subject is
// the notice of its first cohort in spec order, with that cohort's support
// contact; a notified answer's body ends with a footer stating the notice id
// and version (breach emails carry no links).
func Render(spec *snapshot.Spec, r store.Record, version uint64, noticeID string) ([]snapshot.Cohort, Notice) {
	cohorts, n := renderRecord(spec, r, noticeID != "")
	if noticeID != "" {
		n.Body = withFooter(n.Body, noticeID, version)
	}
	return cohorts, n
}

// renderRecord is Render without the footer: what depends on the spec and
// the record only (and on whether the subject was notified), so that it can
// be cached per version (renderCache).
func renderRecord(spec *snapshot.Spec, r store.Record, notified bool) ([]snapshot.Cohort, Notice) {
	var cohorts []snapshot.Cohort
	var n Notice
	for i, c := range spec.Cohorts {
		if r.Cohorts&(1<<uint(i)) == 0 {
			continue
		}
		cohorts = append(cohorts, c)
	}
	switch r.Status {
	case store.Affected:
		if len(cohorts) > 0 {
			n = Notice{Subject: cohorts[0].Notice.Subject, Body: cohorts[0].Notice.Body, SupportContact: cohorts[0].SupportContact}
		}
	case store.UnderReview:
		n = Notice{Subject: spec.UnderReviewNotice.Subject, Body: spec.UnderReviewNotice.Body}
	default:
		n = Notice{Subject: spec.NotAffectedNotice.Subject, Body: spec.NotAffectedNotice.Body}
		if c := spec.CorrectionNotice; c != nil && notified {
			// A notified not-affected record is a correction (a subject
			// never notified is due nothing): it gets the spec's words
			// for those told otherwise before.
			n = Notice{Subject: c.Subject, Body: c.Body}
		}
	}
	return cohorts, n
}

// withFooter appends the notice footer to body, in one allocation:
// "<body>\n\nReference: notice <id>, snapshot version <v>."
func withFooter(body, noticeID string, version uint64) string {
	const (
		ref = "\n\nReference: notice "
		ver = ", snapshot version "
	)
	body = trimNewlines(body)
	var num [20]byte
	v := strconv.AppendUint(num[:0], version, 10)
	var b strings.Builder
	b.Grow(len(body) + len(ref) + len(noticeID) + len(ver) + len(v) + 1)
	b.WriteString(body)
	b.WriteString(ref)
	b.WriteString(noticeID)
	b.WriteString(ver)
	b.Write(v)
	b.WriteByte('.')
	return b.String()
}

func trimNewlines(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}

var noticeEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newNoticeID returns an unguessable id such as "v3-7KQ2M9XW4TABCD".
func newNoticeID(version uint64) (string, error) {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("notice id: %w", err)
	}
	return fmt.Sprintf("v%d-%s", version, noticeEncoding.EncodeToString(b[:])), nil
}
