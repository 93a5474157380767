package store

import (
	"context"
	"time"
)

// Fences is the store role that lets a publish count the notified subjects
// it corrects with no claim slipping in between the count and the flip.
//
// A fence covers an incident's versions up to and including its visible
// version for a lease: while it lasts, ClaimPin refuses (ErrConflict) any
// pin at a covered version, in the same atomic step that would write the
// pin (on a Redis Cluster, where the fence lives in another slot than the
// pin, the claim reads the fences right after its write and undoes itself
// if fenced: one of the fence's pin scan and the claim's read sees the
// other). A publish sets a fence, then reads the pins, then flips the
// visible version while the lease, measured from before Fence was sent,
// still has a margin left: every pin at an old version that exists at the
// flip was there when the pins were read. After the flip the publish renews
// its fence for a short grace, so that a claim decided at the old visible
// version but written after the flip is refused too (it decides again, at
// the new version); a refused publish lifts its fence at once, and a
// crashed publisher's fence expires by itself.
type Fences interface {
	// Fence sets fence id on incident covering the versions up to visible,
	// for ttl from when the store applies it, if visible is the incident's
	// visible version (else ErrConflict; ErrNotFound for an unknown
	// incident). If fence id is live already it is renewed instead: its
	// deadline becomes ttl from now, it keeps the versions it covers, and
	// the visible version is not compared (it may have moved since).
	// Fences of other ids are left alone; expired ones may be removed.
	Fence(ctx context.Context, incident string, visible uint64, id string, ttl time.Duration) error
	// Unfence lifts fence id of incident, if it is there.
	Unfence(ctx context.Context, incident, id string) error
}
