package status

import (
	"context"
	"fmt"

	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/store"
)

// Erase closes a subject's account (patients who close their account have
// their data deleted): it
// records a tombstone under the subject's key (the HMAC; the raw id is kept
// nowhere) and removes the subject's pins and idempotency records in every
// incident. From then on status reads for the subject fail with ErrErased
// (NOT_FOUND), claims answer ActionNone without pinning, and snapshot
// uploads and rollbacks drop the subject's rows (snapshot.Service). Records
// in versions already loaded are immutable; they go when GC removes those
// versions. Erasing twice is fine (the second removes nothing).
//
// The erasure is recorded in the audit trail (store.AuditErase) with the
// actor and the number of pins removed, never the subject.
func (s *Service) Erase(ctx context.Context, subjectID, actor string) (pinsRemoved int, err error) {
	if err := checkSubject(subjectID); err != nil {
		return 0, err
	}
	n, err := s.store.Tombstone(ctx, s.keyer.SubjectKey(subjectID))
	if err != nil {
		err = unavailable(err)
	}
	ev := store.AuditEvent{Action: store.AuditErase, Actor: actor, Detail: fmt.Sprintf("account closed: %d pins removed", n)}
	return n, snapshot.Record(ctx, s.store, s.now(), ev, err, store.OutcomeOf(err))
}
