package snapshot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/impact-health/impact/internal/store"
)

// auditTimeout bounds the recording of an audit event, which goes on when
// the caller's context has ended (a canceled upload is still recorded).
const auditTimeout = 10 * time.Second

// OutcomeInvalid is the audit outcome of an upload rejected by validation.
const OutcomeInvalid = "invalid"

// OutcomeCorrectionsNotAccepted is the audit outcome of a publish refused
// because it would correct more notified subjects than accepted.
const OutcomeCorrectionsNotAccepted = "corrections_not_accepted"

// outcomeOf classifies an action's error for the audit trail.
func outcomeOf(err error) string {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return OutcomeInvalid
	}
	var ce *CorrectionsError
	if errors.As(err, &ce) {
		return OutcomeCorrectionsNotAccepted
	}
	var re *ReviewError
	if errors.As(err, &re) {
		return strings.ToLower(re.Reason)
	}
	return store.OutcomeOf(err)
}

// record appends e to the audit trail, stamped now and with the outcome of
// actionErr, and returns the error the action's caller should get. A
// failed action is recorded on a best-effort basis and its own error
// returned. A successful action whose event cannot be recorded is reported
// as failed to record (wrapping the store's error, so UNAVAILABLE): the
// action stands, and the operator learns that the trail misses it.
func (s *Service) record(ctx context.Context, e store.AuditEvent, actionErr error) error {
	return Record(ctx, s.st, s.now(), e, actionErr, outcomeOf(actionErr))
}

// Record appends e to st's audit trail at time at with the given outcome,
// the way every domain service records its actions (see Service.record):
// best effort when actionErr is not nil (actionErr is returned), else an
// error saying that the action succeeded but is missing from the trail.
// The event is recorded even if ctx has ended.
func Record(ctx context.Context, st store.AuditLog, at time.Time, e store.AuditEvent, actionErr error, outcome string) error {
	e.At, e.Outcome = at.UTC(), outcome
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	err := st.AppendAudit(actx, e)
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

// Audit returns, oldest first, up to limit audit events after afterSeq,
// of one incident or of all (incident ""); see store.AuditLog.ListAudit.
func (s *Service) Audit(ctx context.Context, incident string, afterSeq uint64, limit int) ([]store.AuditEvent, error) {
	es, err := s.st.ListAudit(ctx, incident, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	return es, nil
}

// countsDetail summarises a version's counts for the audit trail.
func countsDetail(c store.Counts) string {
	return fmt.Sprintf("%d entries (%d affected, %d under review)", c.Entries, c.Affected, c.UnderReview)
}

// versionsDetail lists version numbers, "v1, v4", the first few only.
func versionsDetail(vs []uint64) string {
	const show = 12
	if len(vs) == 0 {
		return "none"
	}
	parts := make([]string, 0, min(len(vs), show)+1)
	for i, v := range vs {
		if i == show {
			parts = append(parts, fmt.Sprintf("and %d more", len(vs)-show))
			break
		}
		parts = append(parts, fmt.Sprintf("v%d", v))
	}
	return strings.Join(parts, ", ")
}
