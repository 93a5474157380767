package snapshot

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/impact-health/impact/internal/audit"
	"github.com/impact-health/impact/internal/store"
)

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

// record appends e to the audit trail through an audit.Recorder over the
// service's store, stamped by the service's clock and with the outcome of
// actionErr, and returns the error the action's caller should get (see
// audit.Recorder.Record).
func (s *Service) record(ctx context.Context, e store.AuditEvent, actionErr error) error {
	e.Outcome = outcomeOf(actionErr)
	return audit.New(s.st, audit.WithClock(s.now)).Record(ctx, e, actionErr)
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
