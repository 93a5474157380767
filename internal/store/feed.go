package store

import (
	"context"
	"time"
)

// Feed is the role of an engine whose writes are also appended, atomically
// with each write, to one change stream that replicas tail, with a registry
// of replicas and their leases (see package store/replica for the protocol
// that serves reads from memory on top of it).
//
// Every change carries a sequence number: 1, 2, 3... with no gap, so that a
// replica notices when the stream was trimmed past what it applied and
// loads again. Lease expiry is measured on the engine's clock (Redis's
// TIME; the embedded store's process's monotonic clock), never on a
// replica's. Both engines implement it (Redis outside a Cluster) and pass
// storetest.RunFeedConformance.
type Feed interface {
	// RenewReplica registers or renews a replica's lease for r.Lease from
	// now on the engine's clock, with its serving state and the last
	// change it applied. It returns the sequence number of the stream's
	// last change at that moment, and whether the replica's entry was live
	// and serving just before (Continuous): if not, writers may have
	// stopped waiting for it, and it must apply every change up to Tail
	// before it answers from memory again. ErrConflict: a newer renewal
	// of the replica was applied (r.Seq is not above the last).
	RenewReplica(ctx context.Context, r ReplicaLease) (Renewal, error)
	// AckReplica records that replica id applied every change up to seq. It
	// changes nothing if the replica's entry is not live (an expired
	// replica must renew first).
	AckReplica(ctx context.Context, id string, seq uint64) error
	// RemoveReplica deletes a replica's entry (a clean shutdown), so that
	// writers stop waiting for it at once.
	RemoveReplica(ctx context.Context, id string) error
	// ReplicaAcks returns the stream's last sequence number and what the
	// live, serving replicas acknowledged. Expired entries are removed.
	ReplicaAcks(ctx context.Context) (Acks, error)
	// Changes returns up to max changes after cursor (the zero cursor: the
	// start of the stream), waiting up to block for the first one, and the
	// cursor to continue from. No change is an empty slice, not an error.
	Changes(ctx context.Context, after FeedCursor, block time.Duration, max int) ([]Change, FeedCursor, error)
	// FeedTail returns the stream's last sequence number and a cursor that
	// reads the changes after it.
	FeedTail(ctx context.Context) (uint64, FeedCursor, error)
	// Tombstones calls fn for every tombstoned key.
	Tombstones(ctx context.Context, fn func(Key) error) error
}

// FeedCursor is an engine's position in its change stream (opaque).
type FeedCursor string

// ReplicaLease is one renewal of a replica's entry.
type ReplicaLease struct {
	ID      string
	Serving bool          // answers reads from memory: writers wait for its acks
	Acked   uint64        // the last change it applied
	Lease   time.Duration // from the engine's now
	// Seq numbers the replica's renewals, increasing: the engine refuses
	// (ErrConflict) a renewal not newer than the last it applied, so that
	// one delayed on the network (sent before a later one that already
	// arrived) cannot overwrite it. 0: unnumbered, always applied.
	Seq uint64
}

// Renewal is what RenewReplica tells a replica.
type Renewal struct {
	Tail       uint64 // the last change's sequence number
	Continuous bool   // the entry was live and serving before this renewal
	Live       int    // live entries in the registry, this one included
}

// Acks summarises the registry for a writer.
type Acks struct {
	Tail    uint64 // the last change's sequence number
	Serving int    // live serving replicas
	MinAck  uint64 // the lowest acknowledgement among them (Tail if none)
}

// ChangeKind names what a change did.
type ChangeKind uint8

// Change kinds.
const (
	// ChangePin: Key's pin in Incident is now Pin (a claim or a restore).
	ChangePin ChangeKind = 1
	// ChangePublish: Incident's visible version is now Version.
	ChangePublish ChangeKind = 2
	// ChangeStaged: Version of Incident was committed (staged): a replica
	// may load it ahead of its publish.
	ChangeStaged ChangeKind = 3
	// ChangeTombstone: Key's account was closed (all its pins go).
	ChangeTombstone ChangeKind = 4
	// ChangeDeleted: Version of Incident was deleted.
	ChangeDeleted ChangeKind = 5
)

func (k ChangeKind) String() string {
	switch k {
	case ChangePin:
		return "pin"
	case ChangePublish:
		return "publish"
	case ChangeStaged:
		return "staged"
	case ChangeTombstone:
		return "tombstone"
	case ChangeDeleted:
		return "deleted"
	}
	return "invalid"
}

// Change is one entry of the change stream.
type Change struct {
	Seq      uint64
	Kind     ChangeKind
	Incident string // empty for ChangeTombstone
	Key      Key    // ChangePin, ChangeTombstone
	Version  uint64 // ChangePublish, ChangeStaged, ChangeDeleted
	Pin      Pin    // ChangePin
}

type freshKey struct{}

// WithFresh marks ctx so that a Ledger read goes to the engine itself, past
// any copy in memory: the read that an at_least_version ahead of a
// replica's copy needs.
func WithFresh(ctx context.Context) context.Context {
	return context.WithValue(ctx, freshKey{}, true)
}

// IsFresh reports whether ctx asks for a read past any copy in memory.
func IsFresh(ctx context.Context) bool {
	v, _ := ctx.Value(freshKey{}).(bool)
	return v
}
