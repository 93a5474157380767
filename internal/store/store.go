// Package store defines the storage contract of Impact: immutable, numbered
// snapshot versions per incident, a visible-version pointer that only moves
// forward by compare-and-set, and the notification ledger (pins).
//
// Stores never see a raw subject id: subjects are identified by Key, a
// truncated HMAC-SHA256 of the id under a server-side pepper (see package
// auth). Every implementation (store/embedded, store/redis) passes the shared
// conformance suite in store/storetest, and so does the decorator
// store/instrumented.
//
// The contract is cut into roles, each in the file of its name (Heads
// with Versions, Pinger here), so that every caller asks only for what it
// uses:
//
//	Heads      incidents and their heads
//	Versions   Heads, plus stage, list, read and scan versions, publish
//	Ledger     the read view, records by key, pins and claims
//	Retention  delete a version that is neither visible nor pinned
//	AuditLog   the append-only audit trail
//	Erasure    tombstones of closed accounts
//	Fences     publish fences: no claim slips between a publish's count and its flip
//	PublishRequests  publishes waiting for other admins' approval
//	Pinger     reachability
//
// Store is their union plus Close: what an engine implements.
package store

import (
	"context"
	"errors"
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

// Store is the storage contract every engine (store/embedded, store/redis)
// and the instrumented decorator implement: the union of the roles, plus
// the engine's lifecycle. Every method is safe for concurrent use. Domain
// packages and the transport ask for the roles they use, not for Store.
type Store interface {
	Versions
	Ledger
	Retention
	AuditLog
	Erasure
	Fences
	PublishRequests
	Pinger
	LedgerBatch // practice.go

	// Close releases the engine's resources.
	Close() error
}

// Pinger reports whether the store is reachable.
type Pinger interface {
	// Ping reports whether the store is reachable (ErrUnavailable if not).
	Ping(ctx context.Context) error
}
