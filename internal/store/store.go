// Package store defines the storage contract of Impact: immutable, numbered
// snapshot versions per incident, a visible-version pointer that only moves
// forward by compare-and-set, and the notification ledger (pins).
//
// Stores never see a raw subject id: subjects are identified by Key, a
// truncated HMAC-SHA256 of the id under a server-side pepper (see package
// auth). Every implementation (store/embedded, store/redis) passes the shared
// conformance suite in store/storetest.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors every implementation returns (wrapped or not) so that the domain and
// the transport can tell them apart with errors.Is.
var (
	// ErrNotFound: the incident or version does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a compare-and-set lost (visible version or pin changed).
	ErrConflict = errors.New("conflict")
	// ErrNotStaged: the version is not in the state the operation needs
	// (publishing a version that is still loading, or aborted).
	ErrNotStaged = errors.New("version is not staged")
	// ErrVerify: a loaded version does not match the expected count or digest.
	ErrVerify = errors.New("verification failed")
	// ErrUnavailable: the store cannot be reached or did not answer in time.
	ErrUnavailable = errors.New("store unavailable")
	// ErrPinned: the version is referenced by a pin or is visible, and is kept.
	ErrPinned = errors.New("version is retained")
)

// KeySize is the length in bytes of a subject key.
const KeySize = 16

// Key identifies a subject inside a store: HMAC-SHA256(pepper, subject_id)
// truncated to 128 bits. It is not reversible without the pepper.
type Key [KeySize]byte

// IdemKey identifies an idempotency key, hashed like a subject key.
type IdemKey [KeySize]byte

// Status of a subject at one version. NotAffected is never stored in a
// roster: a subject absent from a version is not affected at that version.
type Status uint8

const (
	NotAffected Status = 0
	Affected    Status = 1
	UnderReview Status = 2
)

func (s Status) String() string {
	switch s {
	case NotAffected:
		return "not_affected"
	case Affected:
		return "affected"
	case UnderReview:
		return "under_review"
	}
	return "invalid"
}

// MaxCohorts is the number of cohorts one incident spec may define: cohort
// membership is a bit set in a uint64.
const MaxCohorts = 64

// Record is one roster entry at one version. Cohorts is a bit set over the
// index of the cohort in the version's spec (bit i = spec.cohorts[i]).
// Practice is 0 for none, or 1 + the index into Manifest.Practices.
type Record struct {
	Status   Status
	Cohorts  uint64
	Practice uint32
}

// Entry is a roster entry with its subject key.
type Entry struct {
	Key    Key
	Record Record
}

// State is the life cycle of a version.
type State uint8

const (
	StateStaging   State = 1 // being loaded
	StateStaged    State = 2 // loaded and verified
	StatePublished State = 3 // has been visible
	StateAborted   State = 4 // load failed or abandoned
)

func (s State) String() string {
	switch s {
	case StateStaging:
		return "staging"
	case StateStaged:
		return "staged"
	case StatePublished:
		return "published"
	case StateAborted:
		return "aborted"
	}
	return "invalid"
}

// Counts summarises a version's roster. PerCohort is indexed like the spec's
// cohorts: [i][0] affected members, [i][1] under-review members.
type Counts struct {
	Entries     uint64
	Affected    uint64
	UnderReview uint64
	PerCohort   [][2]uint64
}

// Add counts one record.
func (c *Counts) Add(r Record, cohorts int) {
	if len(c.PerCohort) < cohorts {
		c.PerCohort = append(c.PerCohort, make([][2]uint64, cohorts-len(c.PerCohort))...)
	}
	c.Entries++
	col := 0
	switch r.Status {
	case Affected:
		c.Affected++
	case UnderReview:
		c.UnderReview++
		col = 1
	}
	for i := 0; i < cohorts; i++ {
		if r.Cohorts&(1<<uint(i)) != 0 {
			c.PerCohort[i][col]++
		}
	}
}

// Manifest is the per-version metadata that records refer to: the canonical
// incident spec (JSON, owned by package snapshot) and the practice dictionary.
type Manifest struct {
	Spec      []byte
	Cohorts   int // number of cohorts in Spec
	Practices []string
}

// VersionInfo describes one version of an incident.
type VersionInfo struct {
	Incident    string
	Version     uint64
	State       State
	Digest      Digest
	Counts      Counts
	CreatedBy   string
	CreatedAt   time.Time
	PublishedBy string
	PublishedAt time.Time
	Source      string // "upload" or "rollback of vN"
}

// Head is an incident's visible version (0 while none was published).
type Head struct {
	Incident string
	Visible  uint64
	Latest   uint64 // highest version number allocated
}

// Pin is the notification ledger entry of one subject: the version its
// latest notice was rendered from, and a copy of its record at that version
// (records are immutable, so the copy is exact and saves a read).
type Pin struct {
	Version    uint64
	Record     Record
	NoticeID   string
	NotifiedAt time.Time
}

// View is everything the read path and the claim decision need about one
// subject, read consistently in one call.
type View struct {
	Visible uint64 // the incident's visible version; 0 if none published
	Record  Record // the subject's record at Visible (NotAffected if absent)
	Pin     *Pin   // nil if the subject was never notified
	// Replay is the pin recorded by an earlier claim with the idempotency
	// key asked for, if any.
	Replay *Pin
	// Erased: the subject's account was closed (Tombstone). Nothing may be
	// answered or claimed for it; Pin and Replay are nil.
	Erased bool
}

// StageRequest starts a new version.
type StageRequest struct {
	Incident  string
	CreatedBy string
	Source    string
	At        time.Time
}

// Stager loads one version. Put may be called many times; Commit verifies the
// loaded content against the expected count and digest and marks the version
// staged, or aborts it. A Stager is not safe for concurrent use.
type Stager interface {
	Version() uint64
	Put(ctx context.Context, entries []Entry) error
	// Commit writes the manifest, verifies what the store holds (count and
	// digest recomputed from the stored records) and marks the version staged.
	// On ErrVerify the version is aborted.
	Commit(ctx context.Context, m Manifest, want Digest, wantCount uint64) (VersionInfo, error)
	// Abort marks the version aborted and drops its records. Safe after Commit
	// failed; a no-op after Commit succeeded.
	Abort(ctx context.Context) error
}

// Store is the storage contract. Every method is safe for concurrent use.
type Store interface {
	// Ping reports whether the store is reachable (ErrUnavailable if not).
	Ping(ctx context.Context) error
	Close() error

	// Incidents lists every incident with its head, sorted by id.
	Incidents(ctx context.Context) ([]Head, error)
	// Head returns one incident's head (ErrNotFound if unknown).
	Head(ctx context.Context, incident string) (Head, error)

	// Stage allocates the next version number of the incident (creating the
	// incident on first use) and returns a Stager to load it.
	Stage(ctx context.Context, req StageRequest) (Stager, error)
	// Versions lists every version of an incident, oldest first.
	Versions(ctx context.Context, incident string) ([]VersionInfo, error)
	// Version returns one version's info and manifest.
	Version(ctx context.Context, incident string, version uint64) (VersionInfo, Manifest, error)
	// Scan calls fn for every entry of a staged or published version, in
	// increasing key order. A non-nil error from fn stops the scan.
	Scan(ctx context.Context, incident string, version uint64, fn func(Entry) error) error
	// Publish makes a staged (or previously published) version visible, if
	// the visible version is expectVisible (else ErrConflict) and version is
	// greater than it (else ErrConflict). ErrNotStaged if not loaded whole.
	Publish(ctx context.Context, incident string, version, expectVisible uint64, actor string, at time.Time) (VersionInfo, error)

	// Read returns the subject's View. idem may be nil.
	Read(ctx context.Context, incident string, key Key, idem *IdemKey) (View, error)
	// Records returns the records of keys at a version (NotAffected for absent).
	Records(ctx context.Context, incident string, version uint64, keys []Key) ([]Record, error)
	// ClaimPin replaces the subject's pin old (nil: none) by next, and
	// records next under idem, atomically. ErrConflict if the current pin is
	// not old (compared by NoticeID) or next.Version is lower than the
	// current pin's version, or if next.Version is not a staged or published
	// version (being or having been deleted, say), or if the subject is
	// tombstoned; ErrNotFound if the version was never allocated. A failed
	// claim changes nothing.
	ClaimPin(ctx context.Context, incident string, key Key, old *Pin, next Pin, idem IdemKey) error
	// Pins calls fn for every pin of the incident, in no particular order.
	Pins(ctx context.Context, incident string, fn func(Key, Pin) error) error

	// DeleteVersion removes a version (retention): its records, manifest
	// and info, and the idempotency records that replay claims at it. It
	// refuses with ErrPinned, changing nothing, the visible version and any
	// version a subject's pin refers to; a claim racing the deletion either
	// makes it refuse or fails with ErrConflict itself, so a pin never
	// refers to a deleted version. ErrNotFound if the version does not exist
	// (or was deleted already). The numbers of deleted versions are never
	// allocated again.
	DeleteVersion(ctx context.Context, incident string, version uint64) error

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

	// Tombstone records that a subject's account was closed, for every
	// incident, then removes its pins and idempotency records in every
	// incident, and returns how many pins it removed. From then on Read
	// reports View.Erased for the key, Tombstoned reports it, and ClaimPin
	// refuses it with ErrConflict; a claim racing the tombstone either
	// comes first (its pin is removed) or is refused. Records of existing
	// versions are immutable and stay until the versions are deleted.
	// Idempotent: a second call finds nothing more to remove.
	Tombstone(ctx context.Context, key Key) (pinsRemoved int, err error)
	// Tombstoned reports, for each key, whether it is tombstoned.
	Tombstoned(ctx context.Context, keys []Key) ([]bool, error)
}
