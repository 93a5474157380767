package store

import "context"

// Erasure records account closures (tombstones) and answers whether a
// subject's account was closed.
type Erasure interface {
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
