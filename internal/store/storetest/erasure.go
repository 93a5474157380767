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

// testTombstone: a tombstone removes the subject's pins and replays in
// every incident, marks its reads Erased (in incidents created later too),
// refuses its claims, and is idempotent; other subjects are untouched.
func testTombstone(t *testing.T, s store.Store) {
	ctx := context.Background()
	m := manifest("tomb-a", 1)
	g := newKeyGen(240)
	e := g.entries(20, m)
	other := g.key()
	for _, inc := range []string{"tomb-a", "tomb-b"} {
		Load(t, s, inc, m, e, 20)
		Publish(t, s, inc, 1, 0)
	}
	a, b, c := g.idem(), g.idem(), g.idem()
	p0 := PinAt(1, e[0].Record, "n-0")
	p1 := PinAt(1, e[1].Record, "n-1")
	for _, cl := range []struct {
		inc  string
		key  store.Key
		pin  store.Pin
		idem store.IdemKey
	}{{"tomb-a", e[0].Key, p0, a}, {"tomb-b", e[0].Key, p0, b}, {"tomb-a", e[1].Key, p1, c}} {
		if err := s.ClaimPin(ctx, cl.inc, cl.key, nil, cl.pin, cl.idem); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.Tombstoned(ctx, []store.Key{e[0].Key, e[1].Key, other}); err != nil || !slices.Equal(got, []bool{false, false, false}) {
		t.Fatalf("Tombstoned before any tombstone: %v, %v", got, err)
	}

	n, err := s.Tombstone(ctx, e[0].Key)
	if err != nil || n != 2 {
		t.Fatalf("Tombstone: %d pins removed, %v; want 2 (one per incident)", n, err)
	}
	for _, r := range []struct {
		inc  string
		idem store.IdemKey
	}{{"tomb-a", a}, {"tomb-b", b}} {
		v := Read(t, s, r.inc, e[0].Key, &r.idem)
		if !v.Erased || v.Pin != nil || v.Replay != nil || v.Visible != 1 {
			t.Errorf("%s: read of an erased subject: %+v, want Erased at visible 1, no pin, no replay", r.inc, v)
		}
	}
	if v := Read(t, s, "tomb-a", e[1].Key, &c); v.Erased || !samePin(v.Pin, &p1) || !samePin(v.Replay, &p1) || v.Record != e[1].Record {
		t.Errorf("another subject after a tombstone: %+v", v)
	}
	var pinned []store.Key
	if err := s.Pins(ctx, "tomb-a", func(k store.Key, _ store.Pin) error { pinned = append(pinned, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(pinned) != 1 || pinned[0] != e[1].Key {
		t.Errorf("pins after the tombstone: %x, want only e[1]'s", pinned)
	}
	if got, err := s.Tombstoned(ctx, []store.Key{e[0].Key, e[1].Key, other, e[0].Key}); err != nil || !slices.Equal(got, []bool{true, false, false, true}) {
		t.Errorf("Tombstoned: %v, %v", got, err)
	}
	if got, err := s.Tombstoned(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("Tombstoned of no keys: %v, %v", got, err)
	}
	// Claims are refused and leave nothing.
	late := g.idem()
	wantErr(t, "ClaimPin of an erased subject", s.ClaimPin(ctx, "tomb-a", e[0].Key, nil, PinAt(1, e[0].Record, "late"), late), store.ErrConflict)
	if v := Read(t, s, "tomb-a", e[0].Key, &late); v.Pin != nil || v.Replay != nil {
		t.Errorf("a refused claim left pin %s replay %s", fmtPin(v.Pin), fmtPin(v.Replay))
	}
	// Idempotent.
	if n, err := s.Tombstone(ctx, e[0].Key); err != nil || n != 0 {
		t.Errorf("second Tombstone: %d, %v; want 0, nil", n, err)
	}
	// A subject never notified, and an incident created afterwards.
	if n, err := s.Tombstone(ctx, other); err != nil || n != 0 {
		t.Errorf("Tombstone of a subject with no pins: %d, %v", n, err)
	}
	Load(t, s, "tomb-c", m, append(slices.Clone(e), store.Entry{Key: other, Record: store.Record{Status: store.Affected, Cohorts: 1}}), 21)
	Publish(t, s, "tomb-c", 1, 0)
	for _, k := range []store.Key{e[0].Key, other} {
		if v := Read(t, s, "tomb-c", k, nil); !v.Erased {
			t.Errorf("incident created after the tombstone: %+v, want Erased", v)
		}
		wantErr(t, "ClaimPin in an incident created after the tombstone", s.ClaimPin(ctx, "tomb-c", k, nil, PinAt(1, store.Record{Status: store.Affected, Cohorts: 1}, "c"), g.idem()), store.ErrConflict)
	}
	// Versions are immutable: their records stay until they are deleted.
	if d := diffEntries(scanAll(t, s, "tomb-a", 1), sortedEntries(e)); d != "" {
		t.Errorf("a tombstone changed a version: %s", d)
	}
}

// testTombstoneRacingClaims: claims and tombstones of the same subjects at
// once never leave a pin of a tombstoned subject.
func testTombstoneRacingClaims(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "tomb-race"
	const n = 48
	m := manifest(inc, 1)
	e := newKeyGen(250).entries(n, m)
	Load(t, s, inc, m, e, n)
	Publish(t, s, inc, 1, 0)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, en := range e {
		wg.Go(func() {
			<-start
			err := s.ClaimPin(ctx, inc, en.Key, nil, PinAt(1, en.Record, fmt.Sprintf("n-%d", i)), workerIdem(i, 1))
			if err != nil && !errors.Is(err, store.ErrConflict) {
				t.Errorf("claim racing a tombstone: %v", err)
			}
		})
		wg.Go(func() {
			<-start
			if _, err := s.Tombstone(ctx, en.Key); err != nil {
				t.Errorf("tombstone: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	left := 0
	if err := s.Pins(ctx, inc, func(store.Key, store.Pin) error { left++; return nil }); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d pins of tombstoned subjects remain", left)
	}
	for i, en := range e {
		idem := workerIdem(i, 1)
		if v := Read(t, s, inc, en.Key, &idem); !v.Erased || v.Pin != nil || v.Replay != nil {
			t.Fatalf("subject %d: %+v", i, v)
		}
	}
}
