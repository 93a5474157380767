package store

import (
	"context"
	"time"
)

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

// Ledger is the role of the notification ledger: the read path's View, the
// records of a version by key, and the pins that claims write.
type Ledger interface {
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
}
