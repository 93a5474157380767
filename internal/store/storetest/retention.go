package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/impact-health/impact/internal/store"
)

// testDeleteVersion: DeleteVersion never removes the visible version or a
// pinned one; a removed version is gone for every call (Version, Scan,
// Records, Publish, ClaimPin, Versions), its replays go with it, and its
// number is never allocated again.
func testDeleteVersion(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "retention"
	m := manifest(inc, 2)
	g := newKeyGen(210)
	e := g.entries(40, m)
	for range 4 {
		Load(t, s, inc, m, e, 40)
	}
	Publish(t, s, inc, 1, 0)
	claim := func(k store.Key, old *store.Pin, p store.Pin, idem store.IdemKey) {
		t.Helper()
		if err := s.ClaimPin(ctx, inc, k, old, p, idem); err != nil {
			t.Fatalf("claim %s: %v", p.NoticeID, err)
		}
	}
	// e[0] is pinned at v1; e[1] was pinned at v1 (idempotency key a), then
	// moved to v2 (key b): a's replay refers to v1, which no pin does.
	a, b := g.idem(), g.idem()
	p0 := PinAt(1, e[0].Record, "n-0")
	claim(e[0].Key, nil, p0, g.idem())
	p1 := PinAt(1, e[1].Record, "n-1")
	claim(e[1].Key, nil, p1, a)
	Publish(t, s, inc, 2, 1)
	p1b := PinAt(2, e[1].Record, "n-1b")
	claim(e[1].Key, &p1, p1b, b)
	Publish(t, s, inc, 3, 2)

	for _, tc := range []struct {
		v    uint64
		want error
		why  string
	}{
		{3, store.ErrPinned, "visible"},
		{1, store.ErrPinned, "pinned by e[0]"},
		{2, store.ErrPinned, "pinned by e[1]"},
		{0, store.ErrNotFound, "never allocated"},
		{99, store.ErrNotFound, "never allocated"},
	} {
		wantErr(t, fmt.Sprintf("DeleteVersion v%d (%s)", tc.v, tc.why), s.DeleteVersion(ctx, inc, tc.v), tc.want)
	}
	wantErr(t, "DeleteVersion of an unknown incident", s.DeleteVersion(ctx, "no-such-incident", 1), store.ErrNotFound)
	// Refusals change nothing.
	for v := uint64(1); v <= 4; v++ {
		if d := diffEntries(scanAll(t, s, inc, v), sortedEntries(e)); d != "" {
			t.Fatalf("v%d after refused deletions: %s", v, d)
		}
	}
	if v := Read(t, s, inc, e[1].Key, &a); !samePin(v.Replay, &p1) || !samePin(v.Pin, &p1b) {
		t.Errorf("after refused deletions: replay %s pin %s", fmtPin(v.Replay), fmtPin(v.Pin))
	}

	// v4 is staged, unpinned, not visible: removed.
	if err := s.DeleteVersion(ctx, inc, 4); err != nil {
		t.Fatalf("delete v4: %v", err)
	}
	_, _, err := s.Version(ctx, inc, 4)
	wantErr(t, "Version of a deleted version", err, store.ErrNotFound)
	wantErr(t, "Scan of a deleted version", s.Scan(ctx, inc, 4, func(store.Entry) error { return nil }), store.ErrNotFound)
	_, err = s.Records(ctx, inc, 4, []store.Key{e[0].Key})
	wantErr(t, "Records of a deleted version", err, store.ErrNotFound)
	_, err = s.Publish(ctx, store.PublishRequest{Incident: inc, Version: 4, ExpectVisible: 3, Actor: "ops", At: T0})
	wantErr(t, "Publish of a deleted version", err, store.ErrNotFound)
	wantErr(t, "second DeleteVersion", s.DeleteVersion(ctx, inc, 4), store.ErrNotFound)
	// A claim at a deleted version fails and leaves nothing.
	late := g.idem()
	err = s.ClaimPin(ctx, inc, e[2].Key, nil, PinAt(4, e[2].Record, "late"), late)
	wantErr(t, "ClaimPin at a deleted version", err, store.ErrConflict)
	if v := Read(t, s, inc, e[2].Key, &late); v.Pin != nil || v.Replay != nil {
		t.Errorf("a refused claim at a deleted version left pin %s replay %s", fmtPin(v.Pin), fmtPin(v.Replay))
	}

	// Move e[0] on: v1 is no longer pinned and goes, with a's replay.
	p0b := PinAt(3, e[0].Record, "n-0b")
	claim(e[0].Key, &p0, p0b, g.idem())
	if err := s.DeleteVersion(ctx, inc, 1); err != nil {
		t.Fatalf("delete v1 once unpinned: %v", err)
	}
	if v := Read(t, s, inc, e[1].Key, &a); v.Replay != nil {
		t.Errorf("replay of a claim at deleted v1 remains: %s", fmtPin(v.Replay))
	}
	if v := Read(t, s, inc, e[1].Key, &b); !samePin(v.Replay, &p1b) || !samePin(v.Pin, &p1b) {
		t.Errorf("replay at v2 after deleting v1: replay %s pin %s, want both %s", fmtPin(v.Replay), fmtPin(v.Pin), fmtPin(&p1b))
	}
	// Remaining versions are whole, reads go on at the visible version.
	if d := diffEntries(scanAll(t, s, inc, 2), sortedEntries(e)); d != "" {
		t.Errorf("v2 after deleting v1 and v4: %s", d)
	}
	if v := Read(t, s, inc, e[5].Key, nil); v.Visible != 3 || v.Record != e[5].Record {
		t.Errorf("read after deletions: %+v", v)
	}
	list, err := s.Versions(ctx, inc)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, vi := range list {
		got = append(got, vi.Version)
	}
	if !slices.Equal(got, []uint64{2, 3}) {
		t.Errorf("versions after deleting v1 and v4: %v, want [2 3]", got)
	}

	// Numbers are never reused, also after deleting the latest version,
	// and an aborted version can be deleted.
	st, err := s.Stage(ctx, stageReq(inc))
	if err != nil {
		t.Fatal(err)
	}
	if st.Version() != 5 {
		t.Errorf("stage after deleting v4 got v%d, want v5", st.Version())
	}
	if err := st.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteVersion(ctx, inc, 5); err != nil {
		t.Errorf("delete an aborted version: %v", err)
	}
	if info := Load(t, s, inc, m, e[:3], 3); info.Version != 6 {
		t.Errorf("next version %d, want 6", info.Version)
	}
	if h, err := s.Head(ctx, inc); err != nil || h.Visible != 3 || h.Latest != 6 {
		t.Errorf("head %+v, %v; want visible 3, latest 6", h, err)
	}
}

// testDeleteRacingClaims: claims at a superseded version race its deletion.
// Either the deletion wins (then no claim at the version succeeded and no
// pin refers to it) or it is refused with ErrPinned (then the pins at the
// version are exactly those of the claims that succeeded); never both a
// deleted version and a pin to it.
func testDeleteRacingClaims(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "retention-race"
	const rounds, claimers = 12, 6
	m := manifest(inc, 1)
	g := newKeyGen(220)
	e := g.entries(rounds*claimers, m)
	deleted, refused := 0, 0
	for r := range rounds {
		old := Load(t, s, inc, m, e, len(e)).Version
		Publish(t, s, inc, old, old-1)
		next := Load(t, s, inc, m, e, len(e)).Version
		Publish(t, s, inc, next, old)
		subjects := e[r*claimers : (r+1)*claimers]
		won := make([]bool, claimers)
		var delErr error
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, en := range subjects {
			wg.Go(func() {
				<-start
				err := s.ClaimPin(ctx, inc, en.Key, nil, PinAt(old, en.Record, fmt.Sprintf("r%d-%d", r, i)), workerIdem(i, int64(r)))
				switch {
				case err == nil:
					won[i] = true
				case !errors.Is(err, store.ErrConflict):
					t.Errorf("claim racing a deletion: %v, want nil or ErrConflict", err)
				}
			})
		}
		wg.Go(func() {
			<-start
			delErr = s.DeleteVersion(ctx, inc, old)
		})
		close(start)
		wg.Wait()
		pinned := 0
		err := s.Pins(ctx, inc, func(_ store.Key, p store.Pin) error {
			if p.Version == old {
				pinned++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		wins := 0
		for _, w := range won {
			if w {
				wins++
			}
		}
		switch {
		case delErr == nil:
			deleted++
			if wins > 0 || pinned > 0 {
				t.Fatalf("round %d: v%d deleted, yet %d claims at it succeeded and %d pins refer to it", r, old, wins, pinned)
			}
			if _, _, err := s.Version(ctx, inc, old); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("round %d: deleted v%d still there: %v", r, old, err)
			}
		case errors.Is(delErr, store.ErrPinned):
			refused++
			// A refusal may also be spurious: a claim seen by the deletion
			// may still have backed off (ErrConflict). Then neither won,
			// which is safe; the next deletion attempt decides again.
			if pinned != wins {
				t.Fatalf("round %d: deletion refused with %d claims won and %d pins at v%d", r, wins, pinned, old)
			}
			if d := diffEntries(scanAll(t, s, inc, old), sortedEntries(e)); d != "" {
				t.Fatalf("round %d: refused deletion changed v%d: %s", r, old, d)
			}
		default:
			t.Fatalf("round %d: DeleteVersion: %v, want nil or ErrPinned", r, delErr)
		}
		// Every claim that won stands.
		for i, en := range subjects {
			v := Read(t, s, inc, en.Key, nil)
			if won[i] != (v.Pin != nil) {
				t.Fatalf("round %d subject %d: claim won %v, pin %s", r, i, won[i], fmtPin(v.Pin))
			}
		}
	}
	t.Logf("%d rounds: deletion won %d, refused %d", rounds, deleted, refused)
}
