package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/store"
)

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
	Load(t, s, "known", m, newKeyGen(1).entries(10, m), 10)
	Publish(t, s, "known", 1, 0)

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
	_, err = s.Publish(ctx, store.PublishRequest{Incident: inc, Version: 1, ExpectVisible: 0, Actor: "ops", At: T0})
	wantErr(t, "Publish", err, store.ErrNotFound)
	_, err = s.Read(ctx, inc, key, nil)
	wantErr(t, "Read", err, store.ErrNotFound)
	_, err = s.Records(ctx, inc, 1, []store.Key{key})
	wantErr(t, "Records", err, store.ErrNotFound)
	err = s.ClaimPin(ctx, inc, key, nil, PinAt(1, store.Record{Status: store.Affected, Cohorts: 1}, "n-1"), newKeyGen(3).idem())
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
		Digest:    Digest(t, m, entries),
		Counts:    countsOf(m, entries),
		CreatedBy: "ops@example.test",
		CreatedAt: T0,
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
	if v := Read(t, s, inc, entries[0].Key, nil); v.Visible != 0 || v.Record != (store.Record{}) {
		t.Errorf("read of a staged, unpublished version: %+v, want nothing visible", v)
	}
	pub := Publish(t, s, inc, 1, 0)
	want.State, want.PublishedBy, want.PublishedAt = store.StatePublished, "ops@example.test", T0.Add(time.Hour)
	if d := diffInfo(pub, want); d != "" {
		t.Errorf("publish returned info: %s", d)
	}
	if gotInfo, _, _ := s.Version(ctx, inc, 1); diffInfo(gotInfo, want) != "" {
		t.Errorf("Version after publish: %s", diffInfo(gotInfo, want))
	}
	for _, e := range entries[:50] {
		v := Read(t, s, inc, e.Key, nil)
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
	Load(t, s, inc, m, entries, 10)
	for _, ver := range []uint64{0, 2, 1 << 40} {
		_, _, err := s.Version(ctx, inc, ver)
		wantErr(t, fmt.Sprintf("Version v%d", ver), err, store.ErrNotFound)
		err = s.Scan(ctx, inc, ver, func(store.Entry) error { return nil })
		wantErr(t, fmt.Sprintf("Scan v%d", ver), err, store.ErrNotFound)
		_, err = s.Records(ctx, inc, ver, []store.Key{entries[0].Key})
		wantErr(t, fmt.Sprintf("Records v%d", ver), err, store.ErrNotFound)
		_, err = s.Publish(ctx, store.PublishRequest{Incident: inc, Version: ver, ExpectVisible: 0, Actor: "ops", At: T0})
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
	if _, err := st3.Commit(ctx, m, Digest(t, m, e3), 30); err != nil {
		t.Fatalf("commit v3: %v", err)
	}
	if _, err := st2.Commit(ctx, m, Digest(t, m, e2), 25); err != nil {
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
	good := Digest(t, m, entries)
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
		{"digest of other content", entries, m, Digest(t, m, oneMore[1:]), 100},
		{"count too high", entries, m, good, 101},
		{"count too low", entries, m, good, 99},
		{"zero digest", entries, m, store.Digest{}, 100},
		{"spec differs from loaded spec", entries, other, good, 100},
		{"duplicate key collapses", dup, m, Digest(t, m, dup), 100},
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
			_, err = s.Publish(ctx, store.PublishRequest{Incident: inc, Version: st.Version(), ExpectVisible: 0, Actor: "ops", At: T0})
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
			if vi := Load(t, s, inc, m, entries, 50); vi.Version != st.Version()+1 {
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
		_, err = s.Publish(ctx, store.PublishRequest{Incident: inc, Version: ver, ExpectVisible: 0, Actor: "ops", At: T0})
		wantErr(t, fmt.Sprintf("Publish v%d", ver), err, store.ErrNotStaged)
	}
	if h, _ := s.Head(ctx, inc); h.Visible != 0 {
		t.Errorf("visible %d", h.Visible)
	}
	// Committing the staging version afterwards still works.
	if _, err := staging.Commit(ctx, m, Digest(t, m, entries), 10); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if _, err := aborted.Commit(ctx, m, Digest(t, m, entries), 10); err == nil {
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
	info1, err := st.Commit(ctx, m, Digest(t, m, e1), 300)
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
	if _, err := st.Commit(ctx, m, Digest(t, m, changed), 2); err == nil {
		t.Error("second commit succeeded")
	}
	if err := st.Abort(ctx); err != nil {
		t.Errorf("abort after commit: %v (want a no-op)", err)
	}
	if info, _, _ := s.Version(ctx, inc, 1); info.State != store.StateStaged {
		t.Errorf("abort after commit changed state to %s", info.State)
	}
	check("after put, commit and abort on a committed stager")

	Publish(t, s, inc, 1, 0)
	if err := st.Put(ctx, changed); err == nil {
		t.Error("put after publish succeeded")
	}
	// Later versions with overlapping keys do not touch v1.
	e2 := append(slices.Clone(changed), e1[1:]...)
	Load(t, s, inc, m, e2, 100)
	Publish(t, s, inc, 2, 1)
	Load(t, s, inc, m, changed, 100)
	check("after later versions")
	if d := diffEntries(scanAll(t, s, inc, 2), sortedEntries(e2)); d != "" {
		t.Errorf("v2: %s", d)
	}
}

func testScanStops(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "scan-stop"
	m := manifest(inc, 1)
	e := newKeyGen(160).entries(10000, m)
	Load(t, s, inc, m, e, 2500)
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
		Load(t, s, id, m, e, 10)
	}
	Load(t, s, "zz-last", m, e[:5], 10)
	Publish(t, s, "mmh-2025-12", 1, 0)
	Publish(t, s, "zz-last", 2, 0)
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
	Load(t, s, "a-first", m, []store.Entry{{Key: e[0].Key, Record: store.Record{Status: store.UnderReview, Cohorts: 1}}}, 1)
	Publish(t, s, "a-first", 2, 0)
	if v := Read(t, s, "a-first", e[0].Key, nil); v.Visible != 2 || v.Record.Status != store.UnderReview {
		t.Errorf("a-first: %+v", v)
	}
	if v := Read(t, s, "mmh-2025-12", e[0].Key, nil); v.Visible != 1 || v.Record != e[0].Record {
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
	info := Load(t, s, inc, m, entries, 5000)
	if !equalCounts(info.Counts, countsOf(m, entries)) || info.Counts.Entries != n {
		t.Errorf("counts %+v, want %+v", info.Counts, countsOf(m, entries))
	}
	if d := diffEntries(scanAll(t, s, inc, 1), sortedEntries(entries)); d != "" {
		t.Fatalf("scan: %s", d)
	}
	Publish(t, s, inc, 1, 0)
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
		if v := Read(t, s, inc, k, nil); v.Record != byKey[k] {
			t.Fatalf("read %x: %+v, want %+v", k, v.Record, byKey[k])
		}
	}
}
