package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Audit actions: the ops actions the audit trail records.
const (
	AuditUpload    = "upload"     // a snapshot upload (staged, or rejected)
	AuditPublish   = "publish"    // a publish (compare-and-set on the visible version)
	AuditRollback  = "rollback"   // a rollback (a copy of an older version, published)
	AuditGC        = "gc"         // a retention run (versions removed)
	AuditClaimWave = "claim_wave" // a stream of notice claims (ClaimNotices), one event per incident
	AuditRestore   = "restore"    // a re-import of wave outbox lines (RestoreNotices), one event per incident
	AuditErase     = "erase"      // an account closure (EraseSubject)
)

// Audit outcomes: OutcomeOK, or the class of the error an action failed
// with (OutcomeOf).
const (
	OutcomeOK = "ok"
)

// MaxAuditPage is the most events ListAudit returns at once.
const MaxAuditPage = 1000

// AuditEvent is one entry of the audit trail: an ops action, who did it,
// when, and on what. It never holds a subject id or a subject key: an
// account closure is recorded without saying whose.
type AuditEvent struct {
	// Seq is the event's number, assigned by AppendAudit: 1 for a store's
	// first event, then one more per event, in append order.
	Seq uint64
	// At is when the action happened.
	At time.Time
	// Actor is the token subject of the operator (or notifier) who acted.
	Actor string
	// Action is one of the Audit* constants.
	Action string
	// Incident is the incident acted on ("" for an erase, which concerns
	// every incident).
	Incident string
	// Version and Digest are the version acted on (staged, published,
	// claimed at), 0 and zero when none.
	Version uint64
	Digest  Digest
	// Outcome is OutcomeOK or the class of the error the action failed
	// with (OutcomeOf).
	Outcome string
	// Detail is a short, human-readable summary: counts, version numbers.
	Detail string
}

// OutcomeOf classifies an action's error for the audit trail, by the
// store's sentinel errors and never by its text: "ok" for nil, then
// "not_found", "conflict", "not_staged", "verify_failed", "pinned",
// "unavailable", "canceled" or "error".
func OutcomeOf(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrConflict):
		return "conflict"
	case errors.Is(err, ErrNotStaged):
		return "not_staged"
	case errors.Is(err, ErrVerify):
		return "verify_failed"
	case errors.Is(err, ErrPinned):
		return "pinned"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return "unavailable"
	}
	return "error"
}

// auditDoc is the stored form of an event (its Seq is the store's key).
type auditDoc struct {
	At       time.Time `json:"at"`
	Actor    string    `json:"actor,omitempty"`
	Action   string    `json:"action"`
	Incident string    `json:"incident,omitempty"`
	Version  uint64    `json:"version,omitempty"`
	Digest   string    `json:"digest,omitempty"`
	Outcome  string    `json:"outcome,omitempty"`
	Detail   string    `json:"detail,omitempty"`
}

// MarshalAudit encodes an event for storage (without its Seq, which the
// store keys it by). Times are kept to the nanosecond, in UTC.
func MarshalAudit(e AuditEvent) ([]byte, error) {
	d := auditDoc{At: e.At.UTC(), Actor: e.Actor, Action: e.Action, Incident: e.Incident,
		Version: e.Version, Outcome: e.Outcome, Detail: e.Detail}
	if e.Digest != (Digest{}) {
		d.Digest = e.Digest.String()
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode audit event: %w", err)
	}
	return b, nil
}

// UnmarshalAudit decodes what MarshalAudit encoded, with the event's Seq.
func UnmarshalAudit(seq uint64, b []byte) (AuditEvent, error) {
	var d auditDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return AuditEvent{}, fmt.Errorf("decode audit event %d: %w", seq, err)
	}
	e := AuditEvent{Seq: seq, At: d.At, Actor: d.Actor, Action: d.Action, Incident: d.Incident,
		Version: d.Version, Outcome: d.Outcome, Detail: d.Detail}
	if d.Digest != "" {
		dg, err := ParseDigest(d.Digest)
		if err != nil {
			return AuditEvent{}, fmt.Errorf("decode audit event %d: %w", seq, err)
		}
		e.Digest = dg
	}
	return e, nil
}

// AuditLimit bounds a ListAudit limit: <= 0 or more than MaxAuditPage
// means MaxAuditPage.
func AuditLimit(limit int) int {
	if limit <= 0 || limit > MaxAuditPage {
		return MaxAuditPage
	}
	return limit
}

// AuditLog is the role of the append-only audit trail.
type AuditLog interface {
	// AppendAudit appends an event to the audit trail, numbering it (e.Seq
	// is ignored): 1 for the store's first event, then one more each time,
	// so that a gap would show. The trail is append-only: no method changes
	// or removes an event, and stores never trim it.
	AppendAudit(ctx context.Context, e AuditEvent) error
	// ListAudit returns, in Seq order, up to limit events with Seq greater
	// than afterSeq: of one incident, or of every incident and none when
	// incident is "" (see AuditLimit for limit). An incident with no events
	// (or unknown) has an empty list.
	ListAudit(ctx context.Context, incident string, afterSeq uint64, limit int) ([]AuditEvent, error)
}
