// Package storetest is the conformance suite every store.Store
// implementation must pass. An engine's test is three lines:
//
//	func TestConformance(t *testing.T) {
//		storetest.RunConformance(t, func(t *testing.T) store.Store { return openFresh(t) })
//	}
//
// The suite checks the invariants that live in the store: immutable,
// verified versions whose numbers are never reused; atomic visibility of a
// publish; compare-and-set publish that only moves forward; forward-only,
// compare-and-set, idempotent pins; and the error contract
// (ErrNotFound, ErrConflict, ErrNotStaged, ErrVerify, ErrUnavailable).
//
// Where the role interfaces (Versions, Ledger, Retention, AuditLog,
// Erasure) are silent, the suite pins these down:
//   - an incident's first version is 1; Stage on a new incident creates it,
//     with Head{Visible: 0, Latest: 1}; an empty incident id is unknown;
//   - Scan, Records and Publish of a version still staging or aborted fail
//     with ErrNotStaged; of a version never allocated, with ErrNotFound;
//   - Put, Commit after the stager committed or aborted fail; Abort after
//     Commit (successful or not) returns nil and changes nothing;
//   - ClaimPin compares old with the current pin by NoticeID only, and
//     accepts next.Version equal to the current pin's; a claim that fails
//     records nothing under its idempotency key; a replay is per subject
//     (the same idempotency key read for another subject replays nothing);
//   - times (CreatedAt, PublishedAt, NotifiedAt) round-trip at least to the
//     millisecond, compared with time.Time.Equal;
//   - a canceled context makes Read, Publish and ClaimPin fail, changing
//     nothing; after Close every call fails with ErrUnavailable;
//   - Scan and Pins callbacks may call the store, and their error is
//     returned as is;
//   - DeleteVersion of a version that is gone, or never was, fails with
//     ErrNotFound; a deletion that a racing claim makes refuse may also
//     make that claim fail (both back off, neither wins: safe);
//   - audit events are numbered 1, 2, 3... per store; ListAudit of an
//     unknown incident is empty, and limit 0 means store.MaxAuditPage;
//   - a stage's lease is renewed while the context given to Stage lives;
//     once it lapsed, Put and Commit fail with ErrLeaseExpired (an
//     ErrNotStaged) and CollectStages aborts the version (listed aborted,
//     number not reused); a stage whose loader renews is never collected;
//   - a tombstone applies to incidents created after it too, and Tombstone
//     counts the pins it removed (0 the second time);
//   - a Stager yields to StageRequest.Pacer at least once while it loads
//     and commits 5,000 entries, busy or not, and a Yield error stops the
//     load with it.
//
// RunConformance is the registry of the checks; each lives in the file of
// its role: versions.go (stage, load, scan, list), publish.go (the visible
// version), ledger.go (read view, pins, claims), retention.go, audit.go,
// erasure.go, lease.go (stage leases and their collection), lifecycle.go (canceled contexts, a closed store).
package storetest

import (
	"errors"
	"testing"

	"github.com/impact-health/impact/internal/store"
)

// RunConformance runs the suite. open must return a fresh, empty store,
// isolated from every other store it returned, and must arrange (with
// t.Cleanup) to close it and release what it holds. Subtests may close the
// store themselves (to check the closed-store errors), so Close must
// tolerate a second call; the suite ignores the error of that call.
// Subtests run one after the other.
func RunConformance(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Empty", testEmpty},
		{"UnknownIncident", testUnknownIncident},
		{"StageCommitRoundTrip", testRoundTrip},
		{"UnknownVersion", testUnknownVersion},
		{"VersionNumbersNeverReused", testNumbersNeverReused},
		{"VerifyFailureAborts", testVerifyFailure},
		{"UnreadableVersions", testUnreadableVersions},
		{"Immutability", testImmutability},
		{"PublishCAS", testPublishCAS},
		{"RollbackIsANewVersion", testRollback},
		{"ReadView", testReadView},
		{"AtomicVisibility", testAtomicVisibility},
		{"Pins", testPins},
		{"IdempotentReplay", testIdempotentReplay},
		{"PinsIteration", testPinsIteration},
		{"ConcurrentClaims", testConcurrentClaims},
		{"ClaimsRacingPublish", testClaimsRacingPublish},
		{"ScanStops", testScanStops},
		{"IncidentsListing", testIncidents},
		{"LargeLoad", testLargeLoad},
		{"StagePacer", testStagePacer},
		{"DeleteVersion", testDeleteVersion},
		{"DeleteRacingClaims", testDeleteRacingClaims},
		{"Audit", testAudit},
		{"AuditAppendOnly", testAuditAppendOnly},
		{"Tombstone", testTombstone},
		{"TombstoneRacingClaims", testTombstoneRacingClaims},
		{"Fences", testFences},
		{"PublishRequests", testPublishRequests},
		{"LeaseLapsedCollected", testLeaseLapsedCollected},
		{"LiveStageKept", testLiveStageKept},
		{"CommitAfterLeaseLoss", testCommitAfterLeaseLoss},
		{"ReadMany", testReadMany},
		{"PracticeCounts", testPracticeCounts},
		{"CanceledContext", testCanceledContext},
		{"ClosedStore", testClosedStore},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			if s == nil {
				t.Fatal("open returned a nil store")
			}
			tc.fn(t, s)
		})
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error %v, want %v", what, err, target)
	}
}
