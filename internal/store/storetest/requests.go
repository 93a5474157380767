package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/store"
)

// testPublishRequests: pending publish requests round-trip, one per
// version; approvals are added once each, also when concurrent; deleting
// removes the request and its approvals.
func testPublishRequests(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "requests"
	m := manifest(inc, 1)
	g := newKeyGen(180)
	Load(t, s, inc, m, g.entries(4, m), 8)
	Load(t, s, inc, m, g.entries(4, m), 8)

	if rs, err := s.ListPublishRequests(ctx, inc); err != nil || len(rs) != 0 {
		t.Fatalf("no requests yet: %v %v", rs, err)
	}
	if rs, err := s.ListPublishRequests(ctx, "no-such-incident"); err != nil || len(rs) != 0 {
		t.Fatalf("unknown incident: %v %v", rs, err)
	}
	_, err := s.GetPublishRequest(ctx, inc, 1)
	wantErr(t, "get of no request", err, store.ErrNotFound)
	_, err = s.ApprovePublishRequest(ctx, inc, 1, "bob")
	wantErr(t, "approve of no request", err, store.ErrNotFound)
	wantErr(t, "request on an unknown incident", s.PutPublishRequest(ctx, store.PendingPublish{Incident: "no-such-incident", Version: 1}), store.ErrNotFound)

	r2 := store.PendingPublish{Incident: inc, Version: 2, ExpectVisible: 0, AcceptCorrections: 312, RequestedBy: "alice",
		RequestedAt: T0, ExpiresAt: T0.Add(24 * time.Hour), Source: "upload", ApprovedBy: []string{"ignored"}}
	r1 := store.PendingPublish{Incident: inc, Version: 1, RequestedBy: "carol", RequestedAt: T0.Add(time.Minute), ExpiresAt: T0.Add(time.Hour), Source: "rollback of v0"}
	for _, r := range []store.PendingPublish{r2, r1} {
		if err := s.PutPublishRequest(ctx, r); err != nil {
			t.Fatalf("put v%d: %v", r.Version, err)
		}
	}
	wantErr(t, "a second request for v2", s.PutPublishRequest(ctx, r2), store.ErrConflict)
	r2.ApprovedBy = nil
	same := func(what string, got, want store.PendingPublish) {
		t.Helper()
		if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) || !got.RequestedAt.Equal(want.RequestedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
			t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
		}
	}
	got, err := s.GetPublishRequest(ctx, inc, 2)
	if err != nil {
		t.Fatal(err)
	}
	same("get v2", got, r2)
	rs, err := s.ListPublishRequests(ctx, inc)
	if err != nil || len(rs) != 2 {
		t.Fatalf("list: %v %v", rs, err)
	}
	same("list[0]", rs[0], r1)
	same("list[1]", rs[1], r2)

	// Approvals: once each, in order.
	if got, err = s.ApprovePublishRequest(ctx, inc, 2, "bob"); err != nil || !slices.Equal(got.ApprovedBy, []string{"bob"}) {
		t.Fatalf("approve bob: %+v %v", got, err)
	}
	if got, err = s.ApprovePublishRequest(ctx, inc, 2, "bob"); err != nil || !slices.Equal(got.ApprovedBy, []string{"bob"}) {
		t.Fatalf("approve bob twice: %+v %v", got, err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if _, err := s.ApprovePublishRequest(ctx, inc, 2, fmt.Sprintf("admin-%d", i)); err != nil {
				t.Errorf("concurrent approve: %v", err)
			}
		})
	}
	wg.Wait()
	got, err = s.GetPublishRequest(ctx, inc, 2)
	if err != nil || len(got.ApprovedBy) != 9 || got.ApprovedBy[0] != "bob" {
		t.Fatalf("after concurrent approvals: %+v %v", got, err)
	}
	if got, _ := s.GetPublishRequest(ctx, inc, 1); len(got.ApprovedBy) != 0 {
		t.Fatalf("approvals of v2 leaked into v1: %+v", got)
	}

	// Delete, and a new request for the version starts with no approvals.
	if err := s.DeletePublishRequest(ctx, inc, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePublishRequest(ctx, inc, 2); err != nil {
		t.Fatalf("delete twice: %v", err)
	}
	_, err = s.GetPublishRequest(ctx, inc, 2)
	wantErr(t, "get after delete", err, store.ErrNotFound)
	if err := s.PutPublishRequest(ctx, r2); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetPublishRequest(ctx, inc, 2); err != nil || len(got.ApprovedBy) != 0 {
		t.Fatalf("a new request after delete: %+v %v", got, err)
	}
}
