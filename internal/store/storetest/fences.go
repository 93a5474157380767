package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/store"
)

// testFences: a fence makes ClaimPin refuse pins at the versions it covers
// (and only those), only while it lasts and until it is lifted; Fence
// compares the visible version; fences of other ids are independent.
func testFences(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "fences"
	m := manifest(inc, 1)
	g := newKeyGen(170)
	keys := g.keys(6)
	r := store.Record{Status: store.Affected, Cohorts: 1}
	Load(t, s, inc, m, withRecord(keys, r), 8)
	Publish(t, s, inc, 1, 0)
	Load(t, s, inc, m, withRecord(keys, r), 8)

	wantErr(t, "fence of an unknown incident", s.Fence(ctx, "no-such-incident", 0, "a", time.Minute), store.ErrNotFound)
	wantErr(t, "fence expecting v0 while v1 is visible", s.Fence(ctx, inc, 0, "a", time.Minute), store.ErrConflict)
	if err := s.Fence(ctx, inc, 1, "a", time.Minute); err != nil {
		t.Fatalf("fence: %v", err)
	}
	claim := func(i int, v uint64) error {
		return s.ClaimPin(ctx, inc, keys[i], nil, PinAt(v, r, "n"+string(rune('a'+i))), g.idem())
	}
	wantErr(t, "claim at the fenced visible version", claim(0, 1), store.ErrConflict)
	if v := Read(t, s, inc, keys[0], nil); v.Pin != nil {
		t.Fatalf("a refused claim left a pin: %s", fmtPin(v.Pin))
	}
	// A version after the fenced one is not covered.
	if err := claim(1, 2); err != nil {
		t.Fatalf("claim at v2, above the fence: %v", err)
	}
	// A second fence; lifting the first leaves the second in force.
	if err := s.Fence(ctx, inc, 1, "b", time.Minute); err != nil {
		t.Fatalf("fence b: %v", err)
	}
	if err := s.Unfence(ctx, inc, "a"); err != nil {
		t.Fatalf("unfence a: %v", err)
	}
	wantErr(t, "claim while fence b holds", claim(2, 1), store.ErrConflict)
	if err := s.Unfence(ctx, inc, "b"); err != nil {
		t.Fatalf("unfence b: %v", err)
	}
	if err := s.Unfence(ctx, inc, "b"); err != nil {
		t.Fatalf("unfence of a lifted fence: %v", err)
	}
	if err := claim(2, 1); err != nil {
		t.Fatalf("claim once the fences are lifted: %v", err)
	}
	// An expired fence refuses nothing. (The ttl is far below any
	// store's round trip plus the sleep; no timing is asserted beyond that
	// a fence is over once its ttl has passed.)
	if err := s.Fence(ctx, inc, 1, "c", 5*time.Millisecond); err != nil {
		t.Fatalf("fence c: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	if err := claim(3, 1); err != nil {
		t.Fatalf("claim after the fence expired: %v", err)
	}
	// Renewing a fence by its id keeps it in force.
	if err := s.Fence(ctx, inc, 1, "d", 5*time.Millisecond); err != nil {
		t.Fatalf("fence d: %v", err)
	}
	if err := s.Fence(ctx, inc, 1, "d", time.Minute); err != nil {
		t.Fatalf("renew fence d: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	wantErr(t, "claim under a renewed fence", claim(4, 1), store.ErrConflict)
	// A publish moves the visible version: the fence still covers v1, and
	// a new fence must name the new visible version.
	Publish(t, s, inc, 2, 1)
	wantErr(t, "claim at v1 after the publish, fence d still live", claim(4, 1), store.ErrConflict)
	if err := claim(5, 2); err != nil {
		t.Fatalf("claim at the new visible version: %v", err)
	}
	wantErr(t, "new fence naming the old visible version", s.Fence(ctx, inc, 1, "e", time.Minute), store.ErrConflict)
	// A live fence is renewed although the visible version moved, and
	// still covers v1 only.
	if err := s.Fence(ctx, inc, 1, "d", time.Minute); err != nil {
		t.Fatalf("renew fence d after the publish: %v", err)
	}
	wantErr(t, "claim at v1 under the renewed fence", claim(4, 1), store.ErrConflict)
	if err := claim(4, 2); err != nil {
		t.Fatalf("claim at v2 under a fence of v1: %v", err)
	}
}
