package status

import (
	"context"

	"github.com/impact-health/impact/internal/store"
)

// AnswerView returns the answer Status gives for a view read elsewhere (a
// batch read, store.LedgerBatch): the same pinned status, cohorts, notice,
// notice id, notified time, update pending and visible status. The view
// must be of a subject that is not erased, at a published visible version.
// The practice view builds its answers here, so that what a practice is
// told about a patient is what the patient is told.
func (s *Service) AnswerView(ctx context.Context, incident string, view store.View) (Answer, error) {
	if view.Erased {
		return Answer{}, ErrErased
	}
	if view.Visible == 0 {
		return Answer{}, ErrNotFound
	}
	return s.answer(ctx, incident, view)
}
