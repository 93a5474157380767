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

// PinReader is the part of Ledger that PinRecords reads.
type PinReader interface {
	Records(ctx context.Context, incident string, version uint64, keys []Key) ([]Record, error)
	Pins(ctx context.Context, incident string, fn func(Key, Pin) error) error
}

// PinRecords calls fn for every pin of the incident together with the
// subject's record at version (NotAffected when absent there), reading the
// records batch keys at a time: one pass over the pins, never the roster.
// afterBatch, when not nil, runs after each batch's calls (a caller that
// must renew something while it counts). The first error stops the pass.
func PinRecords(ctx context.Context, l PinReader, incident string, version uint64, batch int,
	fn func(Key, Pin, Record) error, afterBatch func() error) error {
	keys := make([]Key, 0, batch)
	pins := make([]Pin, 0, batch)
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		recs, err := l.Records(ctx, incident, version, keys)
		if err != nil {
			return err
		}
		for i, r := range recs {
			if err := fn(keys[i], pins[i], r); err != nil {
				return err
			}
		}
		keys, pins = keys[:0], pins[:0]
		if afterBatch != nil {
			return afterBatch()
		}
		return nil
	}
	err := l.Pins(ctx, incident, func(k Key, p Pin) error {
		keys, pins = append(keys, k), append(pins, p)
		if len(keys) == batch {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}
