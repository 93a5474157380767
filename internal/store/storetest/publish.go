package storetest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/store"
)

func testPublishCAS(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "cas"
	m := manifest(inc, 1)
	g := newKeyGen(70)
	entries := g.entries(20, m)
	Load(t, s, inc, m, entries, 20) // v1
	Load(t, s, inc, m, entries, 20) // v2
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
	Load(t, s, inc, m, entries, 20) // v5

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
		info, err := s.Publish(ctx, store.PublishRequest{Incident: inc, Version: step.version, ExpectVisible: step.expect, Actor: fmt.Sprintf("op-%d", i), At: T0.Add(timeStep(i))})
		if step.want == nil {
			if err != nil {
				t.Fatalf("step %d: publish v%d expect v%d: %v", i, step.version, step.expect, err)
			}
			if info.State != store.StatePublished || info.Version != step.version || info.PublishedBy != fmt.Sprintf("op-%d", i) || !info.PublishedAt.Equal(T0.Add(timeStep(i))) {
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
		if v := Read(t, s, inc, entries[0].Key, nil); v.Visible != step.visible {
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
	if list[0].PublishedBy != "op-4" || !list[0].PublishedAt.Equal(T0.Add(timeStep(4))) {
		t.Errorf("v1 published by %q at %s, want op-4 at %s", list[0].PublishedBy, list[0].PublishedAt, T0.Add(timeStep(4)))
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
	Load(t, s, inc, m, e1, 50)
	Publish(t, s, inc, 1, 0)
	Load(t, s, inc, m, e2, 50)
	Publish(t, s, inc, 2, 1)

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
	info, err := st.Commit(ctx, m1, Digest(t, m, e1), uint64(len(e1)))
	if err != nil {
		t.Fatal(err)
	}
	v1, _, _ := s.Version(ctx, inc, 1)
	if info.Version != 3 || info.Digest != v1.Digest || info.Source != "rollback of v1" {
		t.Errorf("rollback version %+v", info)
	}
	Publish(t, s, inc, 3, 2)
	for _, e := range e1[:10] {
		if v := Read(t, s, inc, e.Key, nil); v.Visible != 3 || v.Record != e.Record {
			t.Fatalf("after rollback: %+v, want visible 3, record %+v", v, e.Record)
		}
	}
	for _, e := range e2[:10] {
		if v := Read(t, s, inc, e.Key, nil); v.Visible != 3 || v.Record != (store.Record{}) {
			t.Fatalf("after rollback, a v2-only subject: %+v, want not affected at 3", v)
		}
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
	Load(t, s, inc, m, e1, 500)
	Publish(t, s, inc, 1, 0)

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
	Load(t, s, inc, m, e2, 100)
	publishing.Store(true)
	Publish(t, s, inc, 2, 1)
	published.Store(true)
	wg.Wait()
	if saw[2].Load() < readers*after {
		t.Errorf("readers saw v2 %d times after its publish, want at least %d", saw[2].Load(), readers*after)
	}
	t.Logf("reads at v1: %d, at v2: %d", saw[1].Load(), saw[2].Load())
}
