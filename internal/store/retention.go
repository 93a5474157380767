package store

import "context"

// Retention removes versions that are neither visible nor pinned.
type Retention interface {
	// DeleteVersion removes a version (retention): its records, manifest
	// and info, and the idempotency records that replay claims at it. It
	// refuses with ErrPinned, changing nothing, the visible version and any
	// version a subject's pin refers to; a claim racing the deletion either
	// makes it refuse or fails with ErrConflict itself, so a pin never
	// refers to a deleted version. ErrNotFound if the version does not exist
	// (or was deleted already). The numbers of deleted versions are never
	// allocated again.
	DeleteVersion(ctx context.Context, incident string, version uint64) error
	// CollectStages aborts every version of the incident left staging whose
	// lease expired (its loader died or stopped renewing) and deletes the
	// records of aborted versions, in bounded batches. It returns the
	// versions it aborted or finished cleaning. A version whose loader still
	// renews its lease is never touched. Interrupted (store unreachable), it
	// returns the error and a later call finishes the job; collected
	// versions stay listed as aborted and their numbers are never reused.
	// ErrNotFound if the incident is unknown.
	CollectStages(ctx context.Context, incident string) ([]uint64, error)
}
