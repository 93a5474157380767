package store

import (
	"context"
	"time"
)

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
	// PracticeCounts, indexed like Practices, are computed by the loader
	// and verified by Commit against the stored records (nil: not
	// computed, as for versions staged before they existed).
	PracticeCounts []PracticeCount `json:",omitempty"`
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

// StageRequest starts a new version.
type StageRequest struct {
	Incident  string
	CreatedBy string
	Source    string
	At        time.Time
	// Lease is how long the stage survives its loader's last renewal
	// (0: DefaultStageLease). See the Stage leases section of lease.go.
	Lease time.Duration
	// Pacer, when set, paces the Stager's own work (write pipelines or
	// transactions, chunks of the read-back in Commit) so that a load
	// gives way to the reads the process serves: see Pacer. A Yield error
	// stops the Put or Commit.
	Pacer Pacer
}

// Stager loads one version. Put may be called many times; Commit verifies the
// loaded content against the expected count and digest and marks the version
// staged, or aborts it. A Stager is not safe for concurrent use.
//
// The stage is held by a lease (StageRequest.Lease) that the Stager renews
// in the background while the context given to Stage lives, until Commit or
// Abort returns. Put and Commit fail with ErrLeaseExpired once the lease is
// lost; a version whose lease expired is left to Retention.CollectStages.
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

// PublishRequest asks to make Version of Incident visible, if the visible
// version is still ExpectVisible. Actor and At are recorded on the version
// as PublishedBy and PublishedAt.
type PublishRequest struct {
	Incident      string
	Version       uint64
	ExpectVisible uint64
	Actor         string
	At            time.Time
}

// Heads reads incidents' heads: the read-only part of Versions that the
// readiness probe, the visible-version gauge and the read path need.
type Heads interface {
	// Incidents lists every incident with its head, sorted by id.
	Incidents(ctx context.Context) ([]Head, error)
	// Head returns one incident's head (ErrNotFound if unknown).
	Head(ctx context.Context, incident string) (Head, error)
}

// Versions is the role of the snapshot versions: allocating and loading
// versions, reading them whole, and moving the visible version forward.
type Versions interface {
	Heads

	// Stage allocates the next version number of the incident (creating the
	// incident on first use) and returns a Stager to load it, holding the
	// stage's lease until ctx ends or the Stager commits or aborts.
	Stage(ctx context.Context, req StageRequest) (Stager, error)
	// Versions lists every version of an incident, oldest first.
	Versions(ctx context.Context, incident string) ([]VersionInfo, error)
	// Version returns one version's info and manifest.
	Version(ctx context.Context, incident string, version uint64) (VersionInfo, Manifest, error)
	// Scan calls fn for every entry of a staged or published version, in
	// increasing key order. A non-nil error from fn stops the scan.
	Scan(ctx context.Context, incident string, version uint64, fn func(Entry) error) error
	// Publish makes a staged (or previously published) version visible, if
	// the visible version is req.ExpectVisible (else ErrConflict) and
	// req.Version is greater than it (else ErrConflict). ErrNotStaged if the
	// version is not loaded whole.
	Publish(ctx context.Context, req PublishRequest) (VersionInfo, error)
}
