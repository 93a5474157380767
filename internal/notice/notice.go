// Package notice is the operator side of the notification ledger: the
// progress of an incident's notices (Stats), the restore of pins the
// ledger lost from the notifier's wave outbox files (Restore), and the
// bookkeeping of notice waves for the audit trail (Wave, RecordWave).
//
// The claim decision itself, and the patient reads it must never
// contradict, are package status; this package builds on its vocabulary
// (status.Claim, status.ErrNotFound, status.CheckSubject) and reads and
// writes the same store roles, Heads and Ledger, through the same
// fail-closed rules.
package notice

import (
	"github.com/impact-health/impact/internal/audit"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
)

// Store is what a Service needs of the store: incidents' heads, and the
// ledger's records, pins and claims.
type Store interface {
	store.Heads
	store.Ledger
}

// Service serves the ledger's operator side. It is safe for concurrent use.
type Service struct {
	st       Store
	versions status.Versions
	keyer    status.Keyer
	audit    *audit.Recorder
}

// New returns a Service over st, reading versions' specs through versions
// (snapshot.Catalog) and recording waves through rec.
func New(st Store, versions status.Versions, keyer status.Keyer, rec *audit.Recorder) *Service {
	return &Service{st: st, versions: versions, keyer: keyer, audit: rec}
}
