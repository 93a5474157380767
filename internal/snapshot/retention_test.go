package snapshot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/impact-health/impact/internal/store"
)

// gcFixture: v1, v2 published then superseded, v2 pinned by bob; v3 left
// staging (an upload in progress); v4 staged; v5 visible; v6 staged.
func gcFixture(t *testing.T, st store.Store, svc *Service) {
	t.Helper()
	ctx := context.Background()
	roster := func(i int) string {
		return fmt.Sprintf("subject_id,status,cohorts\nalice,affected,northland\nbob,under_review,\nsubject-%d,affected,referrals\n", i)
	}
	upload(t, svc, roster(1))
	upload(t, svc, roster(2))
	stager, err := st.Stage(ctx, store.StageRequest{Incident: incident, CreatedBy: "ops-bob", Source: "upload", At: t0})
	if err != nil {
		t.Fatal(err)
	}
	if stager.Version() != 3 {
		t.Fatalf("staging version %d, want 3", stager.Version())
	}
	for i := 4; i <= 6; i++ {
		upload(t, svc, roster(i))
	}
	for _, p := range []struct{ v, expect uint64 }{{1, 0}, {2, 1}} {
		if _, _, err := svc.Publish(ctx, incident, p.v, p.expect, "ops-alice"); err != nil {
			t.Fatal(err)
		}
	}
	bob := testKeyer.SubjectKey("bob")
	pin := store.Pin{Version: 2, Record: store.Record{Status: store.UnderReview}, NoticeID: "v2-bob", NotifiedAt: t0}
	if err := st.ClaimPin(ctx, incident, bob, nil, pin, store.IdemKey{1}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Publish(ctx, incident, 5, 2, "ops-alice"); err != nil {
		t.Fatal(err)
	}
}

func TestGC(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	svc := newTestService(t, st)
	gcFixture(t, st, svc)
	// v1 is published, so the catalog caches it.
	if _, err := svc.Catalog().Get(ctx, incident, 1); err != nil {
		t.Fatal(err)
	}

	removed, kept, err := svc.GC(ctx, incident, 2, "ops-carol")
	if err != nil {
		t.Fatal(err)
	}
	// v5 and v6 are the two newest; v5 is also visible; v2 is pinned; v3
	// is being loaded.
	if !slices.Equal(removed, []uint64{1, 4}) || !slices.Equal(kept, []uint64{2, 3, 5, 6}) {
		t.Fatalf("GC keep 2: removed %v kept %v, want removed [1 4] kept [2 3 5 6]", removed, kept)
	}
	for _, v := range removed {
		if _, _, err := st.Version(ctx, incident, v); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("removed v%d: Version: %v, want ErrNotFound", v, err)
		}
		// The catalog does not serve a removed version from memory.
		if _, err := svc.Catalog().Get(ctx, incident, v); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("removed v%d: Catalog.Get: %v, want ErrNotFound", v, err)
		}
	}
	_, vs, err := svc.List(ctx, incident)
	if err != nil {
		t.Fatal(err)
	}
	var listed []uint64
	for _, vi := range vs {
		listed = append(listed, vi.Version)
	}
	if !slices.Equal(listed, []uint64{6, 5, 3, 2}) {
		t.Errorf("versions after GC: %v", listed)
	}
	// The pinned version still renders; reads at the visible one go on.
	if len(scanAll(t, st, 2)) != 3 || len(scanAll(t, st, 5)) != 3 {
		t.Error("kept versions lost entries")
	}
	if _, _, err := svc.Rollback(ctx, incident, 1, 5, "ops-carol"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rollback to a removed version: %v, want ErrNotFound", err)
	}

	// Again, with the default (keep 3): v6, v5 are kept as newest, and so
	// would be v3; nothing else is removable.
	removed, kept, err = svc.GC(ctx, incident, 0, "ops-carol")
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 0 || !slices.Equal(kept, []uint64{2, 3, 5, 6}) {
		t.Errorf("second GC: removed %v kept %v", removed, kept)
	}
	// A new version number is never one that was removed.
	if info := upload(t, svc, "subject_id,status,cohorts\nalice,affected,northland\n"); info.Version != 7 {
		t.Errorf("next version %d, want 7", info.Version)
	}

	if _, _, err := svc.GC(ctx, "no-such-incident", 1, "ops-carol"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GC of an unknown incident: %v", err)
	}
}

// blindPins hides every pin from the caller of Pins, as if they were all
// claimed after GC listed them: only the store's own check is left.
type blindPins struct{ store.Store }

func (blindPins) Pins(context.Context, string, func(store.Key, store.Pin) error) error { return nil }

func TestGCKeepsWhatTheStoreRefuses(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	gcFixture(t, st, newTestService(t, st))
	svc := newTestService(t, blindPins{st})
	removed, kept, err := svc.GC(ctx, incident, 1, "ops-carol")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []uint64{1, 4}) || !slices.Equal(kept, []uint64{2, 3, 5, 6}) {
		t.Fatalf("removed %v kept %v, want removed [1 4], kept [2 3 5 6] (v2 refused as pinned)", removed, kept)
	}
	if got := scanAll(t, st, 2); len(got) != 3 {
		t.Errorf("pinned v2 has %d entries after GC", len(got))
	}
}
