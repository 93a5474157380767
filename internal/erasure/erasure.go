// Package erasure is account closure: a patient who closes their account
// has their data deleted from Impact.
//
// Erasure is recorded as a tombstone under the subject's key (the HMAC of
// the subject id; the raw id is kept nowhere), through the store's Erasure
// role (Tombstone, Tombstoned): the tombstone is how erasure is recorded.
// Three rooms honour it: this package writes it; package status answers an
// erased subject's reads with status.ErrErased (NOT_FOUND) and its claims
// with nothing due; package snapshot leaves tombstoned subjects' rows out of
// every upload and rollback it loads.
package erasure

import (
	"context"
	"fmt"

	"github.com/impact-health/impact/internal/audit"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
)

// Keyer turns a subject id into its store key (package auth implements it).
type Keyer interface {
	SubjectKey(subjectID string) store.Key
}

// Service closes accounts. It is safe for concurrent use.
type Service struct {
	st    store.Erasure
	keyer Keyer
	audit *audit.Recorder
}

// New returns a Service that records tombstones in st and every erasure
// in the audit trail through rec.
func New(st store.Erasure, keyer Keyer, rec *audit.Recorder) *Service {
	return &Service{st: st, keyer: keyer, audit: rec}
}

// Erase closes a subject's account: it records a tombstone under the
// subject's key and removes the subject's pins and idempotency records in
// every incident. From then on status reads for the subject fail with
// status.ErrErased (NOT_FOUND), claims answer status.ActionNone without
// pinning, and snapshot uploads and rollbacks drop the subject's rows.
// Records in versions already loaded are immutable; they go when
// retention deletes those versions. Erasing twice is fine (the second
// removes nothing).
//
// The erasure is recorded in the audit trail (store.AuditErase) with the
// actor and the number of pins removed, never the subject.
func (s *Service) Erase(ctx context.Context, subjectID, actor string) (pinsRemoved int, err error) {
	if err := status.CheckSubject(subjectID); err != nil {
		return 0, err
	}
	n, err := s.st.Tombstone(ctx, s.keyer.SubjectKey(subjectID))
	if err != nil {
		err = status.Unavailable(err)
	}
	ev := store.AuditEvent{Action: store.AuditErase, Actor: actor, Detail: fmt.Sprintf("account closed: %d pins removed", n)}
	return n, s.audit.Record(ctx, ev, err)
}
