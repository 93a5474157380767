package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/impact-health/impact/internal/store"
)

// sameView compares two views, pins by content.
func sameView(a, b store.View) bool {
	return a.Visible == b.Visible && a.Record == b.Record && a.Erased == b.Erased && samePin(a.Pin, b.Pin) && a.Replay == nil && b.Replay == nil
}

// readManyMatches checks that ReadMany of keys answers, for each key, what
// Read answers for it, all at the visible version want.
func readManyMatches(t *testing.T, s store.Store, incident string, keys []store.Key, want uint64) []store.View {
	t.Helper()
	got, err := s.ReadMany(context.Background(), incident, keys)
	if err != nil {
		t.Fatalf("ReadMany %s (%d keys): %v", incident, len(keys), err)
	}
	if len(got) != len(keys) {
		t.Fatalf("ReadMany %s: %d views for %d keys", incident, len(got), len(keys))
	}
	for i, k := range keys {
		one := Read(t, s, incident, k, nil)
		if !sameView(got[i], one) || got[i].Visible != want {
			t.Fatalf("ReadMany %s [%d]: %+v (pin %s), Read says %+v (pin %s), visible want v%d",
				incident, i, got[i], fmtPin(got[i].Pin), one, fmtPin(one.Pin), want)
		}
	}
	return got
}

// testReadMany: a batch read answers exactly what one Read per key does,
// at one visible version, for present, absent, pinned, erased and repeated
// keys, across many buckets; an unknown incident is ErrNotFound.
func testReadMany(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, err := s.ReadMany(ctx, "no-such-incident", []store.Key{{1}}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReadMany of an unknown incident: %v, want ErrNotFound", err)
	}
	const inc = "batch"
	m := manifest(inc, 3)
	g := newKeyGen(900)
	e1 := g.entries(3000, m)
	st, err := s.Stage(ctx, stageReq(inc))
	if err != nil {
		t.Fatal(err)
	}
	// Staged, nothing visible: views at version 0, no records.
	put(t, st, e1, 1000)
	if _, err := st.Commit(ctx, m, Digest(t, m, e1), uint64(len(e1))); err != nil {
		t.Fatal(err)
	}
	for _, v := range readManyMatches(t, s, inc, []store.Key{e1[0].Key, g.key()}, 0) {
		if v.Record.Status != store.NotAffected {
			t.Fatalf("a record before any publish: %+v", v)
		}
	}
	if vs, err := s.ReadMany(ctx, inc, nil); err != nil || len(vs) != 0 {
		t.Errorf("ReadMany of no keys: %v, %v", vs, err)
	}
	Publish(t, s, inc, 1, 0)

	// Pins on some subjects (one a correction notice: not in the roster).
	absent := g.keys(2000)
	pinned := []store.Key{e1[1].Key, e1[2].Key, absent[0]}
	for i, k := range pinned {
		r := e1[1+i%2].Record
		if i == 2 {
			r = store.Record{}
		}
		if err := s.ClaimPin(ctx, inc, k, nil, PinAt(1, r, "n-batch-"+string(rune('a'+i))), g.idem()); err != nil {
			t.Fatal(err)
		}
	}
	// An erased subject, in the roster and pinned.
	if err := s.ClaimPin(ctx, inc, e1[3].Key, nil, PinAt(1, e1[3].Record, "n-erased"), g.idem()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Tombstone(ctx, e1[3].Key); err != nil {
		t.Fatal(err)
	}

	var keys []store.Key
	for i := 0; i < len(e1); i++ {
		keys = append(keys, e1[i].Key, absent[i%len(absent)])
	}
	keys = append(keys, e1[1].Key, e1[1].Key) // repeated
	got := readManyMatches(t, s, inc, keys, 1)
	if !got[6].Erased || got[6].Pin != nil {
		t.Errorf("erased subject: %+v", got[6])
	}
	if got[2].Pin == nil || got[2].Record != e1[1].Record {
		t.Errorf("pinned subject: %+v", got[2])
	}

	// A new visible version: every record from it.
	e2 := append(g.entries(10, m), e1[:100]...)
	Load(t, s, inc, m, e2, 50)
	Publish(t, s, inc, 2, 1)
	readManyMatches(t, s, inc, keys[:500], 2)

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadMany(ctx, inc, keys[:3]); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("ReadMany after Close: %v, want ErrUnavailable", err)
	}
}

// testPracticeCounts: a manifest's per-practice counts round-trip with the
// version, and a commit whose counts do not match the stored records is
// refused (ErrVerify) and aborted.
func testPracticeCounts(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "practice-counts"
	m := manifest(inc, 3)
	g := newKeyGen(901)
	e := g.entries(500, m)
	c := store.NewPracticeCounter(len(m.Practices), m.Cohorts)
	for _, x := range e {
		if err := c.Add(x.Record); err != nil {
			t.Fatal(err)
		}
	}
	m.PracticeCounts = c.Counts()
	info := Load(t, s, inc, m, e, 100)
	_, got, err := s.Version(ctx, inc, info.Version)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.PracticeCounts) != len(m.Practices) {
		t.Fatalf("practice counts %+v, want %+v", got.PracticeCounts, m.PracticeCounts)
	}
	var total uint64
	for i, pc := range got.PracticeCounts {
		want := m.PracticeCounts[i]
		if pc.Affected != want.Affected || pc.UnderReview != want.UnderReview || len(pc.PerCohort) != 3 {
			t.Errorf("practice %d: %+v, want %+v", i, pc, want)
		}
		for j := range pc.PerCohort {
			if pc.PerCohort[j] != want.PerCohort[j] {
				t.Errorf("practice %d cohort %d: %v, want %v", i, j, pc.PerCohort[j], want.PerCohort[j])
			}
		}
		total += pc.Affected + pc.UnderReview
	}
	if total == 0 || total > uint64(len(e)) {
		t.Errorf("%d entries counted in practices, of %d", total, len(e))
	}

	bad := m
	bad.PracticeCounts = append([]store.PracticeCount(nil), m.PracticeCounts...)
	bad.PracticeCounts[0].Affected++
	st, err := s.Stage(ctx, stageReq(inc))
	if err != nil {
		t.Fatal(err)
	}
	put(t, st, e, 100)
	if _, err := st.Commit(ctx, bad, Digest(t, m, e), uint64(len(e))); !errors.Is(err, store.ErrVerify) {
		t.Fatalf("commit with wrong practice counts: %v, want ErrVerify", err)
	}
	vi, _, err := s.Version(ctx, inc, st.Version())
	if err != nil || vi.State != store.StateAborted {
		t.Errorf("after a refused commit: %+v, %v; want aborted", vi, err)
	}
}
