package notice

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
)

// RestoreOutcome says what a restore did with one outbox line.
type RestoreOutcome int

const (
	// Restored: the pin was written again.
	Restored RestoreOutcome = iota + 1
	// Present: the ledger already holds this notice.
	Present
	// KeptNewer: the ledger holds a newer notice for the subject.
	KeptNewer
)

// Notified is one notice as the claim answered it and a wave outbox file
// recorded it.
type Notified struct {
	SubjectID  string
	Version    uint64
	NoticeID   string
	Status     store.Status
	NotifiedAt time.Time
}

// Restore re-creates the pin of a notice that was sent, if the ledger lost
// it. Redis acknowledges writes that a failover can lose, so the ledger
// does not depend on the store alone: the wave files the notifier writes
// are the outbox, and re-importing them restores lost pins. It is forward-only (a pin at a newer version, or a
// different notice at the same version, is kept) and idempotent (a restore
// is recorded under an idempotency key derived from the notice id). The
// record pinned is the subject's record at the notice's version, which must
// still exist and must agree with the status the notice was sent for.
func (s *Service) Restore(ctx context.Context, incident string, n Notified) (RestoreOutcome, error) {
	if err := status.CheckSubject(n.SubjectID); err != nil {
		return 0, err
	}
	if n.Version == 0 || !strings.HasPrefix(n.NoticeID, fmt.Sprintf("v%d-", n.Version)) || len(n.NoticeID) > 64 {
		return 0, fmt.Errorf("%w: notice id must be the one the claim returned for that version", status.ErrInvalidArgument)
	}
	if n.NotifiedAt.IsZero() {
		return 0, fmt.Errorf("%w: notified_at is required", status.ErrInvalidArgument)
	}
	key := s.keyer.SubjectKey(n.SubjectID)
	idem := s.keyer.IdemKey("restore\x00" + n.NoticeID)
	recs, err := s.st.Records(ctx, incident, n.Version, []store.Key{key})
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrNotStaged):
		return 0, fmt.Errorf("%w: version %d of the notice is not available", status.ErrNotFound, n.Version)
	case err != nil:
		return 0, status.Unavailable(err)
	}
	rec := recs[0]
	if rec.Status != n.Status {
		return 0, fmt.Errorf("%w: the notice's status differs from the subject's record at version %d", status.ErrInvalidArgument, n.Version)
	}
	for attempt := 0; attempt < status.MaxClaimAttempts; attempt++ {
		view, err := status.ReadView(ctx, s.st, incident, key, &idem)
		if err != nil {
			return 0, err
		}
		switch p := view.Pin; {
		case view.Replay != nil, p != nil && p.NoticeID == n.NoticeID:
			return Present, nil
		case p != nil && p.Version >= n.Version:
			return KeptNewer, nil
		}
		next := store.Pin{Version: n.Version, Record: rec, NoticeID: n.NoticeID, NotifiedAt: n.NotifiedAt.UTC()}
		err = s.st.ClaimPin(ctx, incident, key, view.Pin, next, idem)
		switch {
		case err == nil:
			return Restored, nil
		case errors.Is(err, store.ErrConflict):
			continue
		case errors.Is(err, store.ErrNotFound):
			return 0, status.ErrNotFound
		default:
			return 0, status.Unavailable(err)
		}
	}
	return 0, status.ErrContended
}

// Restoration counts the lines of one restore (a RestoreNotices stream) in
// one incident, for the audit trail.
type Restoration struct {
	Incident                     string
	Restored, Present, KeptNewer int
}

// Add counts one line's outcome.
func (r *Restoration) Add(o RestoreOutcome) {
	switch o {
	case Restored:
		r.Restored++
	case Present:
		r.Present++
	case KeptNewer:
		r.KeptNewer++
	}
}

// RecordRestore records a restore in the audit trail (store.AuditRestore):
// who ran it, the incident and the counts per outcome; restoreErr, if the
// restore ended with an error (an invalid line), sets the outcome. Lines
// are not recorded one by one, and no event names a subject or a notice.
// It returns restoreErr, or an error if a restore that succeeded could not
// be recorded.
func (s *Service) RecordRestore(ctx context.Context, actor string, r Restoration, restoreErr error) error {
	ev := store.AuditEvent{Action: store.AuditRestore, Actor: actor, Incident: r.Incident,
		Detail: fmt.Sprintf("%d lines: restored %d, present %d, kept newer %d", r.Restored+r.Present+r.KeptNewer, r.Restored, r.Present, r.KeptNewer)}
	return s.audit.Record(ctx, ev, restoreErr)
}
