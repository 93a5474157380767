package store

import "context"

// Pacer paces background work (a load, its read-back) against the reads
// the process serves; package pace implements it. A Stager given one
// (StageRequest.Pacer) calls Yield between units of its work and, while
// Busy, makes its units small and runs them one at a time.
type Pacer interface {
	// Yield returns at once when no read is in flight and pauses while
	// reads are; its error (the context's) stops the work.
	Yield(ctx context.Context) error
	// Busy reports whether reads are in flight.
	Busy() bool
}
