// Package audit is Impact's audit trail: the one Recorder through which
// every ops action (upload, publish, rollback, gc, claim wave, erase) is
// recorded, and through which the trail is read back (ListAuditEvents).
//
// An event says who acted, when, on what incident and version, with what
// outcome, and a short detail (counts, version numbers). It never holds a
// subject id or a subject key: an account closure is recorded without
// saying whose. The Recorder uses only the store's AuditLog role.
package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/impact-health/impact/internal/store"
)

// recordTimeout bounds the recording of an event, which goes on when the
// caller's context has ended (a canceled upload is still recorded).
const recordTimeout = 10 * time.Second

// Recorder appends ops actions to the audit trail and reads it back. It is
// safe for concurrent use.
type Recorder struct {
	log store.AuditLog
	now func() time.Time
}

// Option configures a Recorder.
type Option func(*Recorder)

// WithClock sets the clock that stamps events.
func WithClock(now func() time.Time) Option { return func(r *Recorder) { r.now = now } }

// New returns a Recorder over the store's audit log.
func New(log store.AuditLog, opts ...Option) *Recorder {
	r := &Recorder{log: log, now: time.Now}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Record appends e to the trail, stamped now, and returns the error the
// action's caller should get. e.Outcome, when empty, is the class of
// actionErr (store.OutcomeOf); a caller that classifies its own errors
// (an upload rejected by validation) sets it.
//
// A failed action (actionErr not nil) is recorded on a best-effort basis
// and its own error returned. A successful action whose event cannot be
// recorded is reported as failed to record, wrapping the store's error (so
// UNAVAILABLE): the action stands, and the operator learns that the trail
// misses it. The event is recorded even if ctx has ended.
func (r *Recorder) Record(ctx context.Context, e store.AuditEvent, actionErr error) error {
	e.At = r.now().UTC()
	if e.Outcome == "" {
		e.Outcome = store.OutcomeOf(actionErr)
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	err := r.log.AppendAudit(actx, e)
	switch {
	case actionErr != nil:
		return actionErr
	case err != nil:
		what := e.Action
		if e.Version != 0 {
			what = fmt.Sprintf("%s of %s v%d", e.Action, e.Incident, e.Version)
		}
		return fmt.Errorf("%s done, but the audit trail could not record it: %w", what, err)
	}
	return nil
}

// List returns, oldest first, up to limit events after afterSeq, of one
// incident or of all (incident ""); see store.AuditLog.ListAudit.
func (r *Recorder) List(ctx context.Context, incident string, afterSeq uint64, limit int) ([]store.AuditEvent, error) {
	es, err := r.log.ListAudit(ctx, incident, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	return es, nil
}
