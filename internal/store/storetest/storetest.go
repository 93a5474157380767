// Package storetest is the conformance suite every store.Store
// implementation must pass. An engine's test is three lines:
//
//	func TestConformance(t *testing.T) {
//		storetest.RunConformance(t, func(t *testing.T) store.Store { return openFresh(t) })
//	}
//
// The suite checks the invariants that live in the store (docs/contract.md):
// immutable, verified versions whose numbers are never reused; atomic
// visibility of a publish; compare-and-set publish that only moves forward;
// forward-only, compare-and-set, idempotent pins; and the error contract
// (ErrNotFound, ErrConflict, ErrNotStaged, ErrVerify, ErrUnavailable).
//
// Where store.go is silent, the suite pins these down:
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
//   - a tombstone applies to incidents created after it too, and Tombstone
//     counts the pins it removed (0 the second time).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
		{"DeleteVersion", testDeleteVersion},
		{"DeleteRacingClaims", testDeleteRacingClaims},
		{"Audit", testAudit},
		{"AuditAppendOnly", testAuditAppendOnly},
		{"Tombstone", testTombstone},
		{"TombstoneRacingClaims", testTombstoneRacingClaims},
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

func testEmpty(t *testing.T, s store.Store) {
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	heads, err := s.Incidents(ctx)
	if err != nil {
		t.Fatalf("incidents: %v", err)
	}
	if len(heads) != 0 {
		t.Errorf("fresh store lists %d incidents, want 0", len(heads))
	}
}

func testUnknownIncident(t *testing.T, s store.Store) {
	ctx := context.Background()
	// Another incident exists, so the store is not merely empty.
	m := manifest("known", 1)
	load(t, s, "known", m, newKeyGen(1).entries(10, m), 10)
	publish(t, s, "known", 1, 0)

	const inc = "unknown"
	key := newKeyGen(2).key()
	_, err := s.Head(ctx, inc)
	wantErr(t, "Head", err, store.ErrNotFound)
	_, err = s.Versions(ctx, inc)
	wantErr(t, "Versions", err, store.ErrNotFound)
	_, _, err = s.Version(ctx, inc, 1)
	wantErr(t, "Version", err, store.ErrNotFound)
	err = s.Scan(ctx, inc, 1, func(store.Entry) error { return nil })
	wantErr(t, "Scan", err, store.ErrNotFound)
	_, err = s.Publish(ctx, inc, 1, 0, "ops", t0)
	wantErr(t, "Publish", err, store.ErrNotFound)
	_, err = s.Read(ctx, inc, key, nil)
	wantErr(t, "Read", err, store.ErrNotFound)
	_, err = s.Records(ctx, inc, 1, []store.Key{key})
	wantErr(t, "Records", err, store.ErrNotFound)
	err = s.ClaimPin(ctx, inc, key, nil, pinOf(1, store.Record{Status: store.Affected, Cohorts: 1}, "n-1"), newKeyGen(3).idem())
	wantErr(t, "ClaimPin", err, store.ErrNotFound)
	err = s.Pins(ctx, inc, func(store.Key, store.Pin) error { return nil })
	wantErr(t, "Pins", err, store.ErrNotFound)
	_, err = s.Read(ctx, "", key, nil)
	wantErr(t, "Read of an empty incident id", err, store.ErrNotFound)

	heads, err := s.Incidents(ctx)
	if err != nil {
		t.Fatalf("incidents: %v", err)
	}
	if len(heads) != 1 || heads[0].Incident != "known" {
		t.Errorf("incidents after failed calls on an unknown one: %+v, want only %q", heads, "known")
	}
}

func testRoundTrip(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "round-trip"
	m := manifest(inc, 3)
	g := newKeyGen(10)
	entries := g.entries(1000, m)

	st, err := s.Stage(ctx, stageReq(inc))
	if err != nil {
		t.Fatalf("stage: %v", err)
	}
	if st.Version() != 1 {
		t.Fatalf("first version of a new incident is %d, want 1", st.Version())
	}
	head, err := s.Head(ctx, inc)
	if err != nil {
		t.Fatalf("head while staging: %v", err)
	}
	if head != (store.Head{Incident: inc, Visible: 0, Latest: 1}) {
		t.Errorf("head while staging: %+v", head)
	}
	vi, _, err := s.Version(ctx, inc, 1)
	if err != nil {
		t.Fatalf("version while staging: %v", err)
	}
	if vi.State != store.StateStaging {
		t.Errorf("state while loading: %s, want staging", vi.State)
	}
	put(t, st, entries, 128)
	want := store.VersionInfo{
		Incident:  inc,
		Version:   1,
		State:     store.StateStaged,
		Digest:    digestOf(t, m, entries),
		Counts:    countsOf(m, entries),
		CreatedBy: "ops@example.test",
		CreatedAt: t0,
		Source:    "upload",
	}
	info, err := st.Commit(ctx, m, want.Digest, uint64(len(entries)))
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	if d := diffInfo(info, want); d != "" {
		t.Errorf("commit returned info: %s", d)
	}
	if info.Counts.Entries != 1000 || info.Counts.Affected+info.Counts.UnderReview != 1000 || len(info.Counts.PerCohort) != 3 {
		t.Errorf("counts: %+v", info.Counts)
	}

	gotInfo, gotM, err := s.Version(ctx, inc, 1)
	if err != nil {
		t.Fatalf("version: %v", err)
	}
	if d := diffInfo(gotInfo, want); d != "" {
		t.Errorf("Version info: %s", d)
	}
	if string(gotM.Spec) != string(m.Spec) || gotM.Cohorts != m.Cohorts || !slices.Equal(gotM.Practices, m.Practices) {
		t.Errorf("manifest: got %+v, want %+v", gotM, m)
	}
	list, err := s.Versions(ctx, inc)
	if err != nil {
		t.Fatalf("versions: %v", err)
	}
	if len(list) != 1 {
		t.Fatalf("versions: %d, want 1", len(list))
	}
	if d := diffInfo(list[0], want); d != "" {
		t.Errorf("Versions[0]: %s", d)
	}

	got := scanAll(t, s, inc, 1)
	if d := diffEntries(got, sortedEntries(entries)); d != "" {
		t.Errorf("scan: %s", d)
	}

	// Records: present keys in any order, absent keys NotAffected.
	keys := []store.Key{entries[5].Key, g.key(), entries[999].Key, g.key(), entries[0].Key}
	recs, err := s.Records(ctx, inc, 1, keys)
	if err != nil {
		t.Fatalf("records: %v", err)
	}
	wantRecs := []store.Record{entries[5].Record, {}, entries[999].Record, {}, entries[0].Record}
	if !slices.Equal(recs, wantRecs) {
		t.Errorf("records: got %+v, want %+v", recs, wantRecs)
	}
	if recs, err := s.Records(ctx, inc, 1, nil); err != nil || len(recs) != 0 {
		t.Errorf("records of no keys: %v, %v", recs, err)
	}

	// Staged, not yet published: invisible to readers.
	if v := read(t, s, inc, entries[0].Key, nil); v.Visible != 0 || v.Record != (store.Record{}) {
		t.Errorf("read of a staged, unpublished version: %+v, want nothing visible", v)
	}
	pub := publish(t, s, inc, 1, 0)
	want.State, want.PublishedBy, want.PublishedAt = store.StatePublished, "ops@example.test", t0.Add(time.Hour)
	if d := diffInfo(pub, want); d != "" {
		t.Errorf("publish returned info: %s", d)
	}
	if gotInfo, _, _ := s.Version(ctx, inc, 1); diffInfo(gotInfo, want) != "" {
		t.Errorf("Version after publish: %s", diffInfo(gotInfo, want))
	}
	for _, e := range entries[:50] {
		v := read(t, s, inc, e.Key, nil)
		if v.Visible != 1 || v.Record != e.Record || v.Pin != nil || v.Replay != nil {
			t.Fatalf("read %x: %+v, want visible 1 record %+v", e.Key, v, e.Record)
		}
	}
}

func testUnknownVersion(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "unknown-version"
	m := manifest(inc, 1)
	entries := newKeyGen(20).entries(10, m)
	load(t, s, inc, m, entries, 10)
	for _, ver := range []uint64{0, 2, 1 << 40} {
		_, _, err := s.Version(ctx, inc, ver)
		wantErr(t, fmt.Sprintf("Version v%d", ver), err, store.ErrNotFound)
		err = s.Scan(ctx, inc, ver, func(store.Entry) error { return nil })
		wantErr(t, fmt.Sprintf("Scan v%d", ver), err, store.ErrNotFound)
		_, err = s.Records(ctx, inc, ver, []store.Key{entries[0].Key})
		wantErr(t, fmt.Sprintf("Records v%d", ver), err, store.ErrNotFound)
		_, err = s.Publish(ctx, inc, ver, 0, "ops", t0)
		wantErr(t, fmt.Sprintf("Publish v%d", ver), err, store.ErrNotFound)
	}
	if h, _ := s.Head(ctx, inc); h.Visible != 0 || h.Latest != 1 {
		t.Errorf("head after failed publishes: %+v", h)
	}
}

func testNumbersNeverReused(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "numbers"
	m := manifest(inc, 2)
	g := newKeyGen(30)

	st1, err := s.Stage(ctx, stageReq(inc))
	if err != nil {
		t.Fatal(err)
	}
	put(t, st1, g.entries(20, m), 20)
	if err := st1.Abort(ctx); err != nil {
		t.Fatalf("abort: %v", err)
	}
	if err := st1.Abort(ctx); err != nil {
		t.Errorf("second abort: %v", err)
	}
	// Two loads in flight at once get distinct numbers.
	st2, err := s.Stage(ctx, stageReq(inc))
	if err != nil {
		t.Fatal(err)
	}
	st3, err := s.Stage(ctx, stageReq(inc))
	if err != nil {
		t.Fatal(err)
	}
	if st1.Version() != 1 || st2.Version() != 2 || st3.Version() != 3 {
		t.Fatalf("versions %d, %d, %d; want 1, 2, 3 (never reused after abort)", st1.Version(), st2.Version(), st3.Version())
	}
	e3 := g.entries(30, m)
	put(t, st3, e3, 7)
	e2 := g.entries(25, m)
	put(t, st2, e2, 7)
	if _, err := st3.Commit(ctx, m, digestOf(t, m, e3), 30); err != nil {
		t.Fatalf("commit v3: %v", err)
	}
	if _, err := st2.Commit(ctx, m, digestOf(t, m, e2), 25); err != nil {
		t.Fatalf("commit v2: %v", err)
	}
	// Loads interleaved: each version holds exactly its own entries.
	if d := diffEntries(scanAll(t, s, inc, 2), sortedEntries(e2)); d != "" {
		t.Errorf("v2: %s", d)
	}
	if d := diffEntries(scanAll(t, s, inc, 3), sortedEntries(e3)); d != "" {
		t.Errorf("v3: %s", d)
	}

	// Concurrent Stage calls never share a number.
	const n = 8
	got := make([]uint64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			st, err := s.Stage(ctx, stageReq(inc))
			if err != nil {
				t.Errorf("concurrent stage: %v", err)
				return
			}
			got[i] = st.Version()
			_ = st.Abort(ctx)
		})
	}
	wg.Wait()
	slices.Sort(got)
	for i, v := range got {
		if v != uint64(4+i) {
			t.Fatalf("concurrent stages got versions %v, want 4..%d each once", got, 3+n)
		}
	}

	list, err := s.Versions(ctx, inc)
	if err != nil {
		t.Fatal(err)
	}
	var states []store.State
	for i, vi := range list {
		if vi.Version != uint64(i+1) || vi.Incident != inc {
			t.Fatalf("versions list not oldest first: %d at %d", vi.Version, i)
		}
		states = append(states, vi.State)
	}
	wantStates := []store.State{store.StateAborted, store.StateStaged, store.StateStaged}
	for range n {
		wantStates = append(wantStates, store.StateAborted)
	}
	if !slices.Equal(states, wantStates) {
		t.Errorf("states %v, want %v", states, wantStates)
	}
	if h, _ := s.Head(ctx, inc); h.Latest != 3+n || h.Visible != 0 {
		t.Errorf("head %+v, want latest %d, visible 0", h, 3+n)
	}
	st, err := s.Stage(ctx, stageReq(inc))
	if err != nil {
		t.Fatal(err)
	}
	if st.Version() != 4+n {
		t.Errorf("next version %d, want %d", st.Version(), 4+n)
	}
}

func testVerifyFailure(t *testing.T, s store.Store) {
	ctx := context.Background()
	m := manifest("verify", 2)
	g := newKeyGen(40)
	entries := g.entries(100, m)
	good := digestOf(t, m, entries)
	dup := append(slices.Clone(entries[:99]), store.Entry{Key: entries[0].Key, Record: entries[0].Record})
	other := m
	other.Spec = []byte(`{"other":true}`)
	oneMore := append(slices.Clone(entries), store.Entry{Key: g.key(), Record: store.Record{Status: store.Affected}})
	badPractice := slices.Clone(entries)
	badPractice[3].Record.Practice = uint32(len(m.Practices) + 1)

	tests := []struct {
		name      string
		put       []store.Entry
		commitM   store.Manifest
		digest    store.Digest
		wantCount uint64
	}{
		{"digest of other content", entries, m, digestOf(t, m, oneMore[1:]), 100},
		{"count too high", entries, m, good, 101},
		{"count too low", entries, m, good, 99},
		{"zero digest", entries, m, store.Digest{}, 100},
		{"spec differs from loaded spec", entries, other, good, 100},
		{"duplicate key collapses", dup, m, digestOf(t, m, dup), 100},
		{"loader missed one stored entry", oneMore, m, good, 100},
		{"practice out of dictionary", badPractice, m, good, 100},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inc := fmt.Sprintf("verify-%d", i)
			st, err := s.Stage(ctx, stageReq(inc))
			if err != nil {
				t.Fatal(err)
			}
			put(t, st, tc.put, 30)
			_, err = st.Commit(ctx, tc.commitM, tc.digest, tc.wantCount)
			wantErr(t, "commit", err, store.ErrVerify)
			info, _, err := s.Version(ctx, inc, st.Version())
			if err != nil {
				t.Fatal(err)
			}
			if info.State != store.StateAborted {
				t.Errorf("state after failed verification: %s, want aborted", info.State)
			}
			_, err = s.Publish(ctx, inc, st.Version(), 0, "ops", t0)
			wantErr(t, "publish of a version that failed verification", err, store.ErrNotStaged)
			if err := st.Abort(ctx); err != nil {
				t.Errorf("abort after failed commit: %v", err)
			}
			if err := st.Put(ctx, entries[:1]); err == nil {
				t.Error("put after a failed commit succeeded")
			}
			if h, _ := s.Head(ctx, inc); h.Visible != 0 {
				t.Errorf("visible %d after failed load", h.Visible)
			}
			// The version number is spent: the next load gets the next one.
			if vi := load(t, s, inc, m, entries, 50); vi.Version != st.Version()+1 {
				t.Errorf("next version %d, want %d", vi.Version, st.Version()+1)
			}
		})
	}
}

func testUnreadableVersions(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "unreadable"
	m := manifest(inc, 1)
	g := newKeyGen(50)
	entries := g.entries(10, m)
	aborted, err := s.Stage(ctx, stageReq(inc))
	if err != nil {
		t.Fatal(err)
	}
	put(t, aborted, entries, 10)
	if err := aborted.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	staging, err := s.Stage(ctx, stageReq(inc))
	if err != nil {
		t.Fatal(err)
	}
	put(t, staging, entries, 10)
	for _, ver := range []uint64{aborted.Version(), staging.Version()} {
		err := s.Scan(ctx, inc, ver, func(store.Entry) error { return nil })
		wantErr(t, fmt.Sprintf("Scan v%d", ver), err, store.ErrNotStaged)
		_, err = s.Records(ctx, inc, ver, []store.Key{entries[0].Key})
		wantErr(t, fmt.Sprintf("Records v%d", ver), err, store.ErrNotStaged)
		_, err = s.Publish(ctx, inc, ver, 0, "ops", t0)
		wantErr(t, fmt.Sprintf("Publish v%d", ver), err, store.ErrNotStaged)
	}
	if h, _ := s.Head(ctx, inc); h.Visible != 0 {
		t.Errorf("visible %d", h.Visible)
	}
	// Committing the staging version afterwards still works.
	if _, err := staging.Commit(ctx, m, digestOf(t, m, entries), 10); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if _, err := aborted.Commit(ctx, m, digestOf(t, m, entries), 10); err == nil {
		t.Error("commit of an aborted version succeeded")
	}
	if info, _, _ := s.Version(ctx, inc, aborted.Version()); info.State != store.StateAborted {
		t.Errorf("aborted version is now %s", info.State)
	}
}

func testImmutability(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "immutable"
	m := manifest(inc, 2)
	g := newKeyGen(60)
	e1 := g.entries(300, m)
	st, err := s.Stage(ctx, stageReq(inc))
	if err != nil {
		t.Fatal(err)
	}
	put(t, st, e1, 100)
	info1, err := st.Commit(ctx, m, digestOf(t, m, e1), 300)
	if err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		if d := diffEntries(scanAll(t, s, inc, 1), sortedEntries(e1)); d != "" {
			t.Errorf("%s: v1 content changed: %s", when, d)
		}
		info, _, err := s.Version(ctx, inc, 1)
		if err != nil {
			t.Fatal(err)
		}
		if info.Digest != info1.Digest || !equalCounts(info.Counts, info1.Counts) {
			t.Errorf("%s: v1 digest or counts changed", when)
		}
		// The digest still verifies against what the store holds.
		_, err = store.Verify(m, info.Digest, info.Counts.Entries, func(fn func(store.Entry) error) error {
			return s.Scan(ctx, inc, 1, fn)
		})
		if err != nil {
			t.Errorf("%s: v1 no longer verifies: %v", when, err)
		}
	}

	changed := []store.Entry{{Key: e1[0].Key, Record: store.Record{Status: store.UnderReview, Cohorts: 2}}, {Key: g.key(), Record: store.Record{Status: store.Affected, Cohorts: 1}}}
	if err := st.Put(ctx, changed); err == nil {
		t.Error("put after commit succeeded")
	}
	if _, err := st.Commit(ctx, m, digestOf(t, m, changed), 2); err == nil {
		t.Error("second commit succeeded")
	}
	if err := st.Abort(ctx); err != nil {
		t.Errorf("abort after commit: %v (want a no-op)", err)
	}
	if info, _, _ := s.Version(ctx, inc, 1); info.State != store.StateStaged {
		t.Errorf("abort after commit changed state to %s", info.State)
	}
	check("after put, commit and abort on a committed stager")

	publish(t, s, inc, 1, 0)
	if err := st.Put(ctx, changed); err == nil {
		t.Error("put after publish succeeded")
	}
	// Later versions with overlapping keys do not touch v1.
	e2 := append(slices.Clone(changed), e1[1:]...)
	load(t, s, inc, m, e2, 100)
	publish(t, s, inc, 2, 1)
	load(t, s, inc, m, changed, 100)
	check("after later versions")
	if d := diffEntries(scanAll(t, s, inc, 2), sortedEntries(e2)); d != "" {
		t.Errorf("v2: %s", d)
	}
}

func testPublishCAS(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "cas"
	m := manifest(inc, 1)
	g := newKeyGen(70)
	entries := g.entries(20, m)
	load(t, s, inc, m, entries, 20) // v1
	load(t, s, inc, m, entries, 20) // v2
	staging, err := s.Stage(ctx, stageReq(inc))
	if err != nil { // v3
		t.Fatal(err)
	}
	put(t, staging, entries, 20)
	aborted, err := s.Stage(ctx, stageReq(inc))
	if err != nil { // v4
		t.Fatal(err)
	}
	if err := aborted.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	load(t, s, inc, m, entries, 20) // v5

	steps := []struct {
		version, expect uint64
		want            error
		visible         uint64 // visible after the step
	}{
		{2, 1, store.ErrConflict, 0},  // stale expectation: nothing visible yet
		{3, 0, store.ErrNotStaged, 0}, // still loading
		{4, 0, store.ErrNotStaged, 0}, // aborted
		{9, 0, store.ErrNotFound, 0},
		{1, 0, nil, 1},
		{2, 0, store.ErrConflict, 1}, // stale expectation
		{1, 1, store.ErrConflict, 1}, // not after the visible version
		{2, 1, nil, 2},
		{1, 2, store.ErrConflict, 2}, // backwards
		{2, 2, store.ErrConflict, 2}, // same again
		{5, 1, store.ErrConflict, 2}, // stale expectation
		{5, 2, nil, 5},
		{2, 5, store.ErrConflict, 5}, // backwards, over a gap
	}
	published := map[uint64]bool{}
	for i, step := range steps {
		info, err := s.Publish(ctx, inc, step.version, step.expect, fmt.Sprintf("op-%d", i), t0.Add(timeStep(i)))
		if step.want == nil {
			if err != nil {
				t.Fatalf("step %d: publish v%d expect v%d: %v", i, step.version, step.expect, err)
			}
			if info.State != store.StatePublished || info.Version != step.version || info.PublishedBy != fmt.Sprintf("op-%d", i) || !info.PublishedAt.Equal(t0.Add(timeStep(i))) {
				t.Errorf("step %d: info %+v", i, info)
			}
			published[step.version] = true
		} else {
			wantErr(t, fmt.Sprintf("step %d: publish v%d expect v%d", i, step.version, step.expect), err, step.want)
		}
		h, err := s.Head(ctx, inc)
		if err != nil {
			t.Fatal(err)
		}
		if h.Visible != step.visible || h.Latest != 5 {
			t.Fatalf("step %d: head %+v, want visible %d latest 5", i, h, step.visible)
		}
		if v := read(t, s, inc, entries[0].Key, nil); v.Visible != step.visible {
			t.Fatalf("step %d: read at visible %d, want %d", i, v.Visible, step.visible)
		}
	}
	list, err := s.Versions(ctx, inc)
	if err != nil {
		t.Fatal(err)
	}
	wantStates := []store.State{store.StatePublished, store.StatePublished, store.StateStaging, store.StateAborted, store.StatePublished}
	for i, vi := range list {
		if vi.State != wantStates[i] {
			t.Errorf("v%d state %s, want %s", vi.Version, vi.State, wantStates[i])
		}
		if !published[vi.Version] && (vi.PublishedBy != "" || !vi.PublishedAt.IsZero()) {
			t.Errorf("v%d never published but has publisher %q at %s", vi.Version, vi.PublishedBy, vi.PublishedAt)
		}
	}
	// A failed publish leaves the publish record of v1 as it was.
	if list[0].PublishedBy != "op-4" || !list[0].PublishedAt.Equal(t0.Add(timeStep(4))) {
		t.Errorf("v1 published by %q at %s, want op-4 at %s", list[0].PublishedBy, list[0].PublishedAt, t0.Add(timeStep(4)))
	}
}

func timeStep(i int) time.Duration { return time.Duration(i) * time.Second }

func testRollback(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "rollback"
	m := manifest(inc, 2)
	g := newKeyGen(80)
	e1 := g.entries(50, m)
	e2 := g.entries(50, m)
	load(t, s, inc, m, e1, 50)
	publish(t, s, inc, 1, 0)
	load(t, s, inc, m, e2, 50)
	publish(t, s, inc, 2, 1)

	// Roll back to v1: copy its content into a new version and publish it.
	var copied []store.Entry
	if err := s.Scan(ctx, inc, 1, func(e store.Entry) error { copied = append(copied, e); return nil }); err != nil {
		t.Fatal(err)
	}
	_, m1, err := s.Version(ctx, inc, 1)
	if err != nil {
		t.Fatal(err)
	}
	req := stageReq(inc)
	req.Source = "rollback of v1"
	st, err := s.Stage(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	put(t, st, copied, 16)
	info, err := st.Commit(ctx, m1, digestOf(t, m, e1), uint64(len(e1)))
	if err != nil {
		t.Fatal(err)
	}
	v1, _, _ := s.Version(ctx, inc, 1)
	if info.Version != 3 || info.Digest != v1.Digest || info.Source != "rollback of v1" {
		t.Errorf("rollback version %+v", info)
	}
	publish(t, s, inc, 3, 2)
	for _, e := range e1[:10] {
		if v := read(t, s, inc, e.Key, nil); v.Visible != 3 || v.Record != e.Record {
			t.Fatalf("after rollback: %+v, want visible 3, record %+v", v, e.Record)
		}
	}
	for _, e := range e2[:10] {
		if v := read(t, s, inc, e.Key, nil); v.Visible != 3 || v.Record != (store.Record{}) {
			t.Fatalf("after rollback, a v2-only subject: %+v, want not affected at 3", v)
		}
	}
}

func testReadView(t *testing.T, s store.Store) {
	const inc = "read-view"
	m := manifest(inc, 2)
	g := newKeyGen(90)
	e1 := g.entries(40, m)
	absent := g.key()
	load(t, s, inc, m, e1, 40)
	if v := read(t, s, inc, e1[0].Key, nil); v != (store.View{}) {
		t.Errorf("before any publish: %+v, want the zero view", v)
	}
	publish(t, s, inc, 1, 0)
	if v := read(t, s, inc, absent, nil); v.Visible != 1 || v.Record != (store.Record{}) || v.Pin != nil || v.Replay != nil {
		t.Errorf("absent subject: %+v, want visible 1, not affected", v)
	}
	idem := g.idem()
	if v := read(t, s, inc, e1[1].Key, &idem); v.Visible != 1 || v.Record != e1[1].Record || v.Replay != nil {
		t.Errorf("present subject with an unused idempotency key: %+v", v)
	}
	// A subject dropped in v2 reads NotAffected at v2; its pin stays.
	p := pinOf(1, e1[2].Record, "notice-1")
	if err := s.ClaimPin(context.Background(), inc, e1[2].Key, nil, p, idem); err != nil {
		t.Fatal(err)
	}
	load(t, s, inc, m, e1[3:], 40)
	publish(t, s, inc, 2, 1)
	v := read(t, s, inc, e1[2].Key, nil)
	if v.Visible != 2 || v.Record != (store.Record{}) || !samePin(v.Pin, &p) || v.Replay != nil {
		t.Errorf("dropped, pinned subject: %+v pin %s, want visible 2, not affected, pin %s", v, fmtPin(v.Pin), fmtPin(&p))
	}
}

func testAtomicVisibility(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "atomic"
	m := manifest(inc, 2)
	g := newKeyGen(100)
	both := g.keys(1000)
	only1 := g.keys(100)
	only2 := g.keys(100)
	r1 := store.Record{Status: store.Affected, Cohorts: 1}
	r2 := store.Record{Status: store.UnderReview, Cohorts: 2}
	e1 := append(withRecord(both, r1), withRecord(only1, r1)...)
	e2 := append(withRecord(both, r2), withRecord(only2, r2)...)
	load(t, s, inc, m, e1, 500)
	publish(t, s, inc, 1, 0)

	type subject struct {
		key    store.Key
		r1, r2 store.Record
	}
	var subjects []subject
	for _, k := range both {
		subjects = append(subjects, subject{k, r1, r2})
	}
	for _, k := range only1 {
		subjects = append(subjects, subject{k, r1, store.Record{}})
	}
	for _, k := range only2 {
		subjects = append(subjects, subject{k, store.Record{}, r2})
	}

	var publishing, published atomic.Bool
	var saw [3]atomic.Int64
	const readers, after = 6, 300
	var wg sync.WaitGroup
	for w := range readers {
		wg.Go(func() {
			g := newKeyGen(uint64(1000 + w))
			last, extra := uint64(0), 0
			for extra < after {
				if published.Load() {
					extra++
				}
				sub := subjects[g.r.IntN(len(subjects))]
				v, err := s.Read(ctx, inc, sub.key, nil)
				// Loaded after the read: false means the read ended before
				// Publish was called.
				started := publishing.Load()
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				switch {
				case v.Visible == 1 && v.Record == sub.r1:
				case v.Visible == 2 && v.Record == sub.r2:
					if !started {
						t.Errorf("v2 visible before it was published")
						return
					}
				default:
					t.Errorf("inconsistent view: visible %d, record %+v (v1 record %+v, v2 record %+v)", v.Visible, v.Record, sub.r1, sub.r2)
					return
				}
				if v.Visible < last {
					t.Errorf("visible version went back from %d to %d", last, v.Visible)
					return
				}
				last = v.Visible
				saw[v.Visible].Add(1)
			}
		})
	}
	// Load v2 while readers run; then flip.
	load(t, s, inc, m, e2, 100)
	publishing.Store(true)
	publish(t, s, inc, 2, 1)
	published.Store(true)
	wg.Wait()
	if saw[2].Load() < readers*after {
		t.Errorf("readers saw v2 %d times after its publish, want at least %d", saw[2].Load(), readers*after)
	}
	t.Logf("reads at v1: %d, at v2: %d", saw[1].Load(), saw[2].Load())
}

func testPins(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "pins"
	m := manifest(inc, 2)
	g := newKeyGen(110)
	e := g.entries(5, m)
	load(t, s, inc, m, e, 5)
	load(t, s, inc, m, e[1:], 5)
	load(t, s, inc, m, e, 5)
	publish(t, s, inc, 3, 0)
	key := e[0].Key

	p2 := pinOf(2, store.Record{}, "notice-v2") // a correction: not affected at v2
	p3 := pinOf(3, e[0].Record, "notice-v3")
	p1 := pinOf(1, e[0].Record, "notice-v1")
	steps := []struct {
		name string
		old  *store.Pin
		next store.Pin
		want error
		pin  *store.Pin // the pin after the step
	}{
		{"claim with an old pin when there is none", &p1, p2, store.ErrConflict, nil},
		{"first claim", nil, p2, nil, &p2},
		{"claim with none when there is one", nil, p3, store.ErrConflict, &p2},
		{"claim with a stale old pin", &p1, p3, store.ErrConflict, &p2},
		{"backwards", &p2, p1, store.ErrConflict, &p2},
		{"forward", &p2, p3, nil, &p3},
		{"old pin compared by notice id", &store.Pin{NoticeID: p2.NoticeID, Version: 3}, p1, store.ErrConflict, &p3},
		{"same version again, old given by notice id only", &store.Pin{NoticeID: p3.NoticeID}, pinOf(3, store.Record{Status: store.UnderReview, Cohorts: 2}, "notice-v3b"), nil, nil},
	}
	for i, step := range steps {
		err := s.ClaimPin(ctx, inc, key, step.old, step.next, g.idem())
		if step.want == nil && err != nil {
			t.Fatalf("step %d (%s): %v", i, step.name, err)
		}
		if step.want != nil {
			wantErr(t, fmt.Sprintf("step %d (%s)", i, step.name), err, step.want)
		}
		want := step.pin
		if want == nil && step.want == nil {
			want = &step.next
		}
		if v := read(t, s, inc, key, nil); !samePin(v.Pin, want) {
			t.Fatalf("step %d (%s): pin %s, want %s", i, step.name, fmtPin(v.Pin), fmtPin(want))
		}
	}
	// Other subjects are unaffected.
	if v := read(t, s, inc, e[1].Key, nil); v.Pin != nil {
		t.Errorf("another subject has pin %s", fmtPin(v.Pin))
	}
	// Pins are per incident.
	load(t, s, "pins-other", m, e, 5)
	publish(t, s, "pins-other", 1, 0)
	if v := read(t, s, "pins-other", key, nil); v.Pin != nil {
		t.Errorf("pin leaked into another incident: %s", fmtPin(v.Pin))
	}
}

func testIdempotentReplay(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "idem"
	m := manifest(inc, 1)
	g := newKeyGen(120)
	e := g.entries(3, m)
	load(t, s, inc, m, e, 3)
	publish(t, s, inc, 1, 0)
	load(t, s, inc, m, e, 3)
	publish(t, s, inc, 2, 1)

	a, b, unused := g.idem(), g.idem(), g.idem()
	p1 := pinOf(1, e[0].Record, "n-1")
	p2 := pinOf(2, e[0].Record, "n-2")
	if err := s.ClaimPin(ctx, inc, e[0].Key, nil, p1, a); err != nil {
		t.Fatal(err)
	}
	v := read(t, s, inc, e[0].Key, &a)
	if !samePin(v.Replay, &p1) || !samePin(v.Pin, &p1) {
		t.Fatalf("replay %s pin %s, want both %s", fmtPin(v.Replay), fmtPin(v.Pin), fmtPin(&p1))
	}
	// A conflicting claim records nothing under its key.
	if err := s.ClaimPin(ctx, inc, e[0].Key, nil, p2, b); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("conflicting claim: %v", err)
	}
	if v := read(t, s, inc, e[0].Key, &b); v.Replay != nil {
		t.Errorf("a failed claim left replay %s", fmtPin(v.Replay))
	}
	if err := s.ClaimPin(ctx, inc, e[0].Key, &p1, p2, b); err != nil {
		t.Fatal(err)
	}
	// Each key replays its own claim; the pin is the latest.
	for _, c := range []struct {
		idem   store.IdemKey
		replay *store.Pin
	}{{a, &p1}, {b, &p2}, {unused, nil}} {
		v := read(t, s, inc, e[0].Key, &c.idem)
		if !samePin(v.Replay, c.replay) || !samePin(v.Pin, &p2) {
			t.Errorf("idem %x: replay %s pin %s, want replay %s pin %s", c.idem[:4], fmtPin(v.Replay), fmtPin(v.Pin), fmtPin(c.replay), fmtPin(&p2))
		}
	}
	if v := read(t, s, inc, e[0].Key, nil); v.Replay != nil {
		t.Errorf("replay without an idempotency key: %s", fmtPin(v.Replay))
	}
	// An idempotency key never replays another subject's claim.
	if v := read(t, s, inc, e[1].Key, &a); v.Replay != nil || v.Pin != nil {
		t.Errorf("subject 1 with subject 0's idempotency key: replay %s pin %s", fmtPin(v.Replay), fmtPin(v.Pin))
	}
}

func testPinsIteration(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "pins-list"
	m := manifest(inc, 2)
	g := newKeyGen(130)
	e := g.entries(5000, m)
	load(t, s, inc, m, e, 1000)
	publish(t, s, inc, 1, 0)
	none := 0
	if err := s.Pins(ctx, inc, func(store.Key, store.Pin) error { none++; return nil }); err != nil || none != 0 {
		t.Fatalf("pins before any claim: %d, %v", none, err)
	}
	want := map[store.Key]store.Pin{}
	for i, en := range e {
		if i%3 == 0 {
			want[en.Key] = pinOf(1, en.Record, fmt.Sprintf("n-%d", i))
		}
	}
	// Claimed by a few workers at once, as a notifier does.
	work := make(chan store.Key)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for k := range work {
				if err := s.ClaimPin(ctx, inc, k, nil, want[k], g2idem(w, int64(k[0])<<8|int64(k[1]))); err != nil {
					t.Errorf("claim: %v", err)
				}
			}
		})
	}
	for k := range want {
		work <- k
	}
	close(work)
	wg.Wait()
	got := map[store.Key]store.Pin{}
	err := s.Pins(ctx, inc, func(k store.Key, p store.Pin) error {
		if _, dup := got[k]; dup {
			return fmt.Errorf("pin %x listed twice", k)
		}
		got[k] = p
		if len(got)%500 == 0 { // a callback may call the store
			if v, err := s.Read(ctx, inc, k, nil); err != nil || !samePin(v.Pin, &p) {
				return fmt.Errorf("read inside pins iteration: %s, %v", fmtPin(v.Pin), err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d pins listed, want %d", len(got), len(want))
	}
	for k, p := range want {
		if g, ok := got[k]; !ok || !samePin(&g, &p) {
			t.Fatalf("pin %x: got %s, want %s", k, fmtPin(&g), fmtPin(&p))
		}
	}
	stop := errors.New("stop")
	n := 0
	err = s.Pins(ctx, inc, func(store.Key, store.Pin) error {
		n++
		if n == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 10 {
		t.Errorf("stopping pins iteration: %v after %d calls, want the callback's error after 10", err, n)
	}
}

func testConcurrentClaims(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "race-claims"
	m := manifest(inc, 2)
	g := newKeyGen(140)
	e := g.entries(10, m)
	load(t, s, inc, m, e, 10)
	publish(t, s, inc, 1, 0)
	load(t, s, inc, m, e, 10)
	publish(t, s, inc, 2, 1)
	key := e[0].Key

	const n = 16
	idems := make([]store.IdemKey, 2*n)
	for i := range idems {
		idems[i] = g.idem()
	}
	round := func(old *store.Pin, version uint64, base int) *store.Pin {
		start := make(chan struct{})
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				errs[i] = s.ClaimPin(ctx, inc, key, old, pinOf(version, e[0].Record, fmt.Sprintf("n-%d", base+i)), idems[base+i])
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("claims %d and %d both won", winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, store.ErrConflict):
				t.Fatalf("claim %d: %v, want nil or ErrConflict", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("no claim won")
		}
		want := pinOf(version, e[0].Record, fmt.Sprintf("n-%d", base+winner))
		for i := range n {
			v := read(t, s, inc, key, &idems[base+i])
			if !samePin(v.Pin, &want) {
				t.Fatalf("pin %s, want the winner's %s", fmtPin(v.Pin), fmtPin(&want))
			}
			if i == winner && !samePin(v.Replay, &want) {
				t.Errorf("winner's replay %s", fmtPin(v.Replay))
			}
			if i != winner && v.Replay != nil {
				t.Errorf("loser %d has replay %s", i, fmtPin(v.Replay))
			}
		}
		return &want
	}
	w := round(nil, 1, 0)
	round(w, 2, n)
}

func testClaimsRacingPublish(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "race-publish"
	m := manifest(inc, 2)
	g := newKeyGen(150)
	keys := g.keys(48)
	r1 := store.Record{Status: store.Affected, Cohorts: 1, Practice: 1}
	r2 := store.Record{Status: store.UnderReview, Cohorts: 2, Practice: 2}
	e1 := withRecord(keys[:40], r1) // keys[40:] not affected at v1
	e2 := withRecord(keys[8:], r2)  // keys[:8] not affected at v2
	rec := func(ver uint64, i int) store.Record {
		switch {
		case ver == 1 && i < 40:
			return r1
		case ver == 2 && i >= 8:
			return r2
		}
		return store.Record{}
	}
	load(t, s, inc, m, e1, 48)
	publish(t, s, inc, 1, 0)
	load(t, s, inc, m, e2, 48)

	type claim struct {
		version uint64
		notice  string
	}
	var (
		mu       sync.Mutex
		won      = make([][]claim, len(keys))
		done     atomic.Bool
		seq      atomic.Int64
		wg       sync.WaitGroup
		workers  = 6
		roundsAf = 2
	)
	for w := range workers {
		wg.Go(func() {
			after := 0
			for after < roundsAf {
				if done.Load() {
					after++
				}
				for i, k := range keys {
					v, err := s.Read(ctx, inc, k, nil)
					if err != nil {
						t.Errorf("read: %v", err)
						return
					}
					if v.Visible < 1 || v.Visible > 2 || v.Record != rec(v.Visible, i) {
						t.Errorf("inconsistent view of subject %d: visible %d record %+v", i, v.Visible, v.Record)
						return
					}
					due := v.Pin == nil && v.Record.Status != store.NotAffected ||
						v.Pin != nil && v.Pin.Version < v.Visible && v.Pin.Record != v.Record
					if !due {
						continue
					}
					n := seq.Add(1)
					notice := fmt.Sprintf("w%d-%d", w, n)
					err = s.ClaimPin(ctx, inc, k, v.Pin, pinOf(v.Visible, v.Record, notice), g2idem(w, n))
					switch {
					case err == nil:
						mu.Lock()
						won[i] = append(won[i], claim{v.Visible, notice})
						mu.Unlock()
					case !errors.Is(err, store.ErrConflict):
						t.Errorf("claim: %v", err)
						return
					}
				}
			}
		})
	}
	publish(t, s, inc, 2, 1)
	done.Store(true)
	wg.Wait()

	for i, k := range keys {
		v := read(t, s, inc, k, nil)
		var maxV uint64
		notices := map[string]uint64{}
		for _, c := range won[i] {
			maxV = max(maxV, c.version)
			notices[c.notice] = c.version
		}
		if len(won[i]) == 0 {
			if v.Pin != nil {
				t.Errorf("subject %d: pin %s but no claim won", i, fmtPin(v.Pin))
			}
			continue
		}
		if v.Pin == nil {
			t.Errorf("subject %d: claims won %v but no pin", i, won[i])
			continue
		}
		if ver, ok := notices[v.Pin.NoticeID]; !ok || ver != v.Pin.Version {
			t.Errorf("subject %d: pin %s is not one of the claims that won", i, fmtPin(v.Pin))
		}
		if v.Pin.Version != maxV {
			t.Errorf("subject %d: pin at v%d, but a claim at v%d won (pins only move forward)", i, v.Pin.Version, maxV)
		}
		if v.Pin.Record != rec(v.Pin.Version, i) {
			t.Errorf("subject %d: pin record %+v differs from its version's record %+v", i, v.Pin.Record, rec(v.Pin.Version, i))
		}
	}
}

// g2idem derives a distinct idempotency key per worker and claim.
func g2idem(w int, n int64) store.IdemKey {
	var k store.IdemKey
	k[0] = byte(w)
	for i := 0; i < 8; i++ {
		k[8+i] = byte(n >> (8 * i))
	}
	return k
}

func testScanStops(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "scan-stop"
	m := manifest(inc, 1)
	e := newKeyGen(160).entries(10000, m)
	load(t, s, inc, m, e, 2500)
	stop := errors.New("stop")
	for _, at := range []int{1, 4096, 9999} {
		n := 0
		err := s.Scan(ctx, inc, 1, func(store.Entry) error {
			n++
			if n == at {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || n != at {
			t.Errorf("scan stopped at %d: %v after %d calls, want the callback's error after %d", at, err, n, at)
		}
	}
	// A callback may call the store.
	n := 0
	err := s.Scan(ctx, inc, 1, func(en store.Entry) error {
		n++
		if n%2000 != 0 {
			return nil
		}
		recs, err := s.Records(ctx, inc, 1, []store.Key{en.Key})
		if err != nil || recs[0] != en.Record {
			return fmt.Errorf("records inside scan: %v %v", recs, err)
		}
		_, err = s.Stage(ctx, stageReq("scan-stop-other"))
		return err
	})
	if err != nil || n != len(e) {
		t.Errorf("scan calling the store: %v after %d entries", err, n)
	}
}

func testIncidents(t *testing.T, s store.Store) {
	ctx := context.Background()
	m := manifest("x", 1)
	g := newKeyGen(170)
	e := g.entries(10, m)
	ids := []string{"mmh-2025-12", "a-first", "zz-last", "mmh-2025-11"}
	for _, id := range ids {
		load(t, s, id, m, e, 10)
	}
	load(t, s, "zz-last", m, e[:5], 10)
	publish(t, s, "mmh-2025-12", 1, 0)
	publish(t, s, "zz-last", 2, 0)
	st, err := s.Stage(ctx, stageReq("staging-only"))
	if err != nil {
		t.Fatal(err)
	}
	_ = st
	heads, err := s.Incidents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Head{
		{Incident: "a-first", Visible: 0, Latest: 1},
		{Incident: "mmh-2025-11", Visible: 0, Latest: 1},
		{Incident: "mmh-2025-12", Visible: 1, Latest: 1},
		{Incident: "staging-only", Visible: 0, Latest: 1},
		{Incident: "zz-last", Visible: 2, Latest: 2},
	}
	if !slices.Equal(heads, want) {
		t.Errorf("incidents:\n got %+v\nwant %+v", heads, want)
	}
	for _, h := range want {
		got, err := s.Head(ctx, h.Incident)
		if err != nil || got != h {
			t.Errorf("head %s: %+v, %v; want %+v", h.Incident, got, err, h)
		}
	}
	// Incidents are isolated: the same key reads each incident's record.
	load(t, s, "a-first", m, []store.Entry{{Key: e[0].Key, Record: store.Record{Status: store.UnderReview, Cohorts: 1}}}, 1)
	publish(t, s, "a-first", 2, 0)
	if v := read(t, s, "a-first", e[0].Key, nil); v.Visible != 2 || v.Record.Status != store.UnderReview {
		t.Errorf("a-first: %+v", v)
	}
	if v := read(t, s, "mmh-2025-12", e[0].Key, nil); v.Visible != 1 || v.Record != e[0].Record {
		t.Errorf("mmh-2025-12: %+v", v)
	}
}

func testLargeLoad(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "large"
	const n = 50_000
	m := manifest(inc, 5)
	g := newKeyGen(180)
	entries := g.entries(n, m)
	info := load(t, s, inc, m, entries, 5000)
	if !equalCounts(info.Counts, countsOf(m, entries)) || info.Counts.Entries != n {
		t.Errorf("counts %+v, want %+v", info.Counts, countsOf(m, entries))
	}
	if d := diffEntries(scanAll(t, s, inc, 1), sortedEntries(entries)); d != "" {
		t.Fatalf("scan: %s", d)
	}
	publish(t, s, inc, 1, 0)
	keys := make([]store.Key, 0, 2000)
	want := make([]store.Record, 0, 2000)
	for i := 0; i < 1000; i++ {
		e := entries[g.r.IntN(n)]
		keys = append(keys, e.Key, g.key())
		want = append(want, e.Record, store.Record{})
	}
	got, err := s.Records(ctx, inc, 1, keys)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Error("records of a sample differ from what was loaded")
	}
	byKey := maps.Collect(func(yield func(store.Key, store.Record) bool) {
		for _, e := range entries {
			if !yield(e.Key, e.Record) {
				return
			}
		}
	})
	for i := 0; i < 500; i++ {
		k := keys[i]
		if v := read(t, s, inc, k, nil); v.Record != byKey[k] {
			t.Fatalf("read %x: %+v, want %+v", k, v.Record, byKey[k])
		}
	}
}

func testCanceledContext(t *testing.T, s store.Store) {
	const inc = "canceled"
	m := manifest(inc, 1)
	e := newKeyGen(190).entries(10, m)
	load(t, s, inc, m, e, 10)
	publish(t, s, inc, 1, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Read(ctx, inc, e[0].Key, nil); err == nil {
		t.Error("read with a canceled context succeeded")
	}
	load(t, s, inc, m, e, 10)
	if _, err := s.Publish(ctx, inc, 2, 1, "ops", t0); err == nil {
		t.Error("publish with a canceled context succeeded")
	}
	if h, _ := s.Head(context.Background(), inc); h.Visible != 1 {
		t.Errorf("a publish with a canceled context made v%d visible", h.Visible)
	}
	if err := s.ClaimPin(ctx, inc, e[0].Key, nil, pinOf(1, e[0].Record, "n"), store.IdemKey{}); err == nil {
		t.Error("claim with a canceled context succeeded")
	}
	if v := read(t, s, inc, e[0].Key, nil); v.Pin != nil {
		t.Errorf("a claim with a canceled context left pin %s", fmtPin(v.Pin))
	}
}

func testClosedStore(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "closed"
	m := manifest(inc, 1)
	e := newKeyGen(200).entries(10, m)
	load(t, s, inc, m, e, 10)
	publish(t, s, inc, 1, 0)
	st, err := s.Stage(ctx, stageReq(inc))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	wantErr(t, "Ping", s.Ping(ctx), store.ErrUnavailable)
	_, err = s.Read(ctx, inc, e[0].Key, nil)
	wantErr(t, "Read", err, store.ErrUnavailable)
	_, err = s.Head(ctx, inc)
	wantErr(t, "Head", err, store.ErrUnavailable)
	_, err = s.Records(ctx, inc, 1, []store.Key{e[0].Key})
	wantErr(t, "Records", err, store.ErrUnavailable)
	_, err = s.Publish(ctx, inc, 1, 0, "ops", t0)
	wantErr(t, "Publish", err, store.ErrUnavailable)
	err = s.ClaimPin(ctx, inc, e[0].Key, nil, pinOf(1, e[0].Record, "n"), store.IdemKey{})
	wantErr(t, "ClaimPin", err, store.ErrUnavailable)
	_, err = s.Stage(ctx, stageReq(inc))
	wantErr(t, "Stage", err, store.ErrUnavailable)
	wantErr(t, "Stager.Put", st.Put(ctx, e), store.ErrUnavailable)
}
