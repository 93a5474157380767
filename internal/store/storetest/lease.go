package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/store"
)

// Stage leases: the suite uses short leases and waits for them in real
// time; it asserts what a store decides, never how long it took.

// leaseStage stages a version of incident with a lease of d, renewed while
// ctx lives, and puts entries into it.
func leaseStage(t *testing.T, s store.Store, ctx context.Context, incident string, d time.Duration, entries []store.Entry) store.Stager {
	t.Helper()
	req := stageReq(incident)
	req.Lease = d
	st, err := s.Stage(ctx, req)
	if err != nil {
		t.Fatalf("stage %s: %v", incident, err)
	}
	if err := st.Put(ctx, entries); err != nil {
		t.Fatalf("put v%d: %v", st.Version(), err)
	}
	return st
}

// stateOf returns the state of one version as Versions lists it.
func stateOf(t *testing.T, s store.Store, incident string, v uint64) store.State {
	t.Helper()
	vs, err := s.Versions(context.Background(), incident)
	if err != nil {
		t.Fatalf("versions %s: %v", incident, err)
	}
	for _, vi := range vs {
		if vi.Version == v {
			return vi.State
		}
	}
	t.Fatalf("v%d is not listed", v)
	return 0
}

// collectUntil calls CollectStages until it reports v (failing t after a
// generous bound: a lease that never expires is the failure).
func collectUntil(t *testing.T, s store.Store, incident string, v uint64, lease time.Duration) {
	t.Helper()
	deadline := time.Now().Add(20*time.Second + 10*lease)
	for {
		got, err := s.CollectStages(context.Background(), incident)
		if err != nil {
			t.Fatalf("collect %s: %v", incident, err)
		}
		if slices.Contains(got, v) {
			return
		}
		if len(got) > 0 {
			t.Fatalf("collect %s: collected %v, want only v%d", incident, got, v)
		}
		if time.Now().After(deadline) {
			t.Fatalf("v%d was never collected, its loader stopped renewing", v)
		}
		time.Sleep(lease / 4)
	}
}

// testLeaseLapsedCollected: a stage whose loader stopped renewing (its
// context ended, no Abort) becomes collectable after its lease: it is
// aborted, listed as such, unreadable, its number is not reused, its
// stager can neither put nor commit, and other versions are untouched.
func testLeaseLapsedCollected(t *testing.T, s store.Store) {
	const inc = "lease-lapsed"
	const lease = 300 * time.Millisecond
	m := manifest(inc, 2)
	g := newKeyGen(610)
	kept := g.entries(50, m)
	Load(t, s, inc, m, kept, 0)
	e := g.entries(3000, m)
	ctx, cancel := context.WithCancel(context.Background())
	st := leaseStage(t, s, ctx, inc, lease, e)
	v := st.Version()
	cancel() // the loader dies: nothing renews the lease any more

	collectUntil(t, s, inc, v, lease)
	if got := stateOf(t, s, inc, v); got != store.StateAborted {
		t.Errorf("collected v%d is %s, want aborted", v, got)
	}
	bg := context.Background()
	wantErr(t, "Scan of a collected version", s.Scan(bg, inc, v, func(store.Entry) error { return nil }), store.ErrNotStaged)
	wantErr(t, "Put after collection", st.Put(bg, e[:1]), store.ErrNotStaged)
	_, err := st.Commit(bg, m, Digest(t, m, e), uint64(len(e)))
	wantErr(t, "Commit after collection", err, store.ErrNotStaged)
	if err := st.Abort(bg); err != nil {
		t.Errorf("Abort after collection: %v", err)
	}
	if got, err := s.CollectStages(bg, inc); err != nil || len(got) != 0 {
		t.Errorf("second collection: %v, %v; want nothing", got, err)
	}
	if got := scanAll(t, s, inc, 1); diffEntries(got, sortedEntries(kept)) != "" {
		t.Errorf("collection changed v1: %s", diffEntries(got, sortedEntries(kept)))
	}
	next, err := s.Stage(bg, stageReq(inc))
	if err != nil {
		t.Fatal(err)
	}
	if next.Version() != v+1 {
		t.Errorf("stage after collection got v%d, want v%d (numbers are never reused)", next.Version(), v+1)
	}
	_ = next.Abort(bg)
	_, err = s.CollectStages(bg, "no-such-incident")
	wantErr(t, "CollectStages of an unknown incident", err, store.ErrNotFound)
}

// testLiveStageKept: a loader that keeps renewing keeps its stage across
// several leases, however often others collect, and commits it.
func testLiveStageKept(t *testing.T, s store.Store) {
	const inc = "lease-live"
	const lease = 2 * time.Second
	m := manifest(inc, 1)
	g := newKeyGen(620)
	e := g.entries(2400, m)
	ctx := context.Background()
	st := leaseStage(t, s, ctx, inc, lease, e[:100])
	i := 100
	for start := time.Now(); time.Since(start) < 2*lease+lease/3; i += 100 {
		got, err := s.CollectStages(ctx, inc)
		if err != nil {
			t.Fatalf("collect: %v", err)
		}
		if len(got) != 0 {
			t.Fatalf("collected %v while its loader renews its lease", got)
		}
		if i < len(e) {
			if err := st.Put(ctx, e[i:i+100]); err != nil {
				t.Fatalf("put while the lease is renewed: %v", err)
			}
		}
		time.Sleep(lease / 10)
	}
	if i < len(e) {
		if err := st.Put(ctx, e[i:]); err != nil {
			t.Fatalf("put while the lease is renewed: %v", err)
		}
	}
	info, err := st.Commit(ctx, m, Digest(t, m, e), uint64(len(e)))
	if err != nil {
		t.Fatalf("commit of a live stage: %v", err)
	}
	if info.State != store.StateStaged {
		t.Errorf("committed state %s, want staged", info.State)
	}
	if got, err := s.CollectStages(ctx, inc); err != nil || len(got) != 0 {
		t.Errorf("collection after commit: %v, %v; want nothing", got, err)
	}
	if got := scanAll(t, s, inc, info.Version); len(got) != len(e) {
		t.Errorf("committed version holds %d entries, want %d", len(got), len(e))
	}
}

// testCommitAfterLeaseLoss: a loader whose lease lapsed (it stopped
// renewing, then came back) must not commit, even before anyone collected
// its stage; the stage is then collectable.
func testCommitAfterLeaseLoss(t *testing.T, s store.Store) {
	const inc = "lease-lost"
	const lease = 200 * time.Millisecond
	m := manifest(inc, 1)
	e := newKeyGen(630).entries(500, m)
	ctx, cancel := context.WithCancel(context.Background())
	st := leaseStage(t, s, ctx, inc, lease, e)
	cancel()
	time.Sleep(3 * lease) // longer than the lease: it has lapsed
	bg := context.Background()
	_, err := st.Commit(bg, m, Digest(t, m, e), uint64(len(e)))
	if !errors.Is(err, store.ErrLeaseExpired) || !errors.Is(err, store.ErrNotStaged) {
		t.Fatalf("Commit after the lease lapsed: %v, want ErrLeaseExpired (an ErrNotStaged)", err)
	}
	if got := stateOf(t, s, inc, st.Version()); got == store.StateStaged || got == store.StatePublished {
		t.Fatalf("a loader without its lease committed: v%d is %s", st.Version(), got)
	}
	wantErr(t, "Publish of a lapsed stage", publishErr(s, inc, st.Version()), store.ErrNotStaged)
	collectUntil(t, s, inc, st.Version(), lease)
	if got := stateOf(t, s, inc, st.Version()); got != store.StateAborted {
		t.Errorf("collected v%d is %s, want aborted", st.Version(), got)
	}
}

func publishErr(s store.Store, incident string, v uint64) error {
	_, err := s.Publish(context.Background(), store.PublishRequest{Incident: incident, Version: v, Actor: "ops@example.test", At: T0})
	return err
}
