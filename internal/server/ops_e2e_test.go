package server_test

// End-to-end tests of retention (GcSnapshots), the audit trail
// (ListAuditEvents) and account closure (EraseSubject), through gRPC and
// REST.

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/demo"
)

func demoSpec(t *testing.T) []byte {
	t.Helper()
	var spec bytes.Buffer
	if err := demo.WriteSpec(&spec); err != nil {
		t.Fatal(err)
	}
	return spec.Bytes()
}

func TestGcSnapshots(t *testing.T) {
	e := startEnv(t)
	e.waitReady()
	spec := demoSpec(t)
	for range 4 {
		if _, err := e.upload(spec, csvOf(rosterV1())); err != nil {
			t.Fatal(err)
		}
	}
	e.publish(1, 0)
	e.publish(2, 1)
	ctx := withToken(context.Background(), e.adminTk)
	claim, err := impactv1.NewNoticeServiceClient(e.admin).ClaimNotice(ctx, &impactv1.ClaimNoticeRequest{
		IncidentId: demo.IncidentID, SubjectId: sid(0), IdempotencyKey: "gc-test"})
	if err != nil || claim.GetClaim().GetVersion() != 2 {
		t.Fatalf("claim: %v, %v", claim, err)
	}
	e.publish(3, 2)

	snaps := impactv1.NewSnapshotServiceClient(e.admin)
	// gRPC: keep the newest; v2 is pinned, v3 visible, v4 newest.
	resp, err := snaps.GcSnapshots(ctx, &impactv1.GcSnapshotsRequest{IncidentId: demo.IncidentID, KeepLast: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resp.GetRemoved(), []uint32{1}) || !slices.Equal(resp.GetKept(), []uint32{2, 3, 4}) {
		t.Fatalf("gc: removed %v kept %v, want [1] and [2 3 4]", resp.GetRemoved(), resp.GetKept())
	}
	// The pinned subject still reads from v2.
	pub := impactv1.NewStatusServiceClient(e.public)
	a, err := pub.GetMyStatus(withToken(context.Background(), e.token(sid(0))), &impactv1.GetMyStatusRequest{IncidentId: demo.IncidentID})
	if err != nil || a.GetAnswer().GetNotifiedVersion() != 2 || a.GetAnswer().GetVersion() != 3 {
		t.Fatalf("pinned subject after gc: %v, %v", a, err)
	}
	if _, err := snaps.DiffSnapshots(ctx, &impactv1.DiffSnapshotsRequest{IncidentId: demo.IncidentID, Version: 3, Against: 1}); status.Code(err) != codes.NotFound {
		t.Errorf("diff against a removed version: %v, want NOT_FOUND", err)
	}

	// REST, same rules: upload v5, so that v3 (visible) and v4, v5 stay.
	if _, err := e.upload(spec, csvOf(rosterV2())); err != nil {
		t.Fatal(err)
	}
	code, _, body := e.rest(http.MethodPost, e.addrs.AdminHTTP, "/v1/incidents/"+demo.IncidentID+"/snapshots:gc", e.adminTk, `{"keep_last": 2}`)
	if code != http.StatusOK {
		t.Fatalf("REST gc: %d %s", code, body)
	}
	var got struct {
		IncidentID string   `json:"incident_id"`
		Removed    []uint32 `json:"removed"`
		Kept       []uint32 `json:"kept"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got.IncidentID != demo.IncidentID || len(got.Removed) != 0 || !slices.Equal(got.Kept, []uint32{2, 3, 4, 5}) {
		t.Errorf("REST gc: %s", body)
	}

	// Scope: impact.admin only.
	for _, tok := range []string{e.token("ops-bob", auth.ScopeNotify), e.token(sid(1))} {
		if _, err := snaps.GcSnapshots(withToken(context.Background(), tok), &impactv1.GcSnapshotsRequest{IncidentId: demo.IncidentID}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("gc without impact.admin: %v, want PERMISSION_DENIED", err)
		}
		if code, _, _ := e.rest(http.MethodPost, e.addrs.AdminHTTP, "/v1/incidents/"+demo.IncidentID+"/snapshots:gc", tok, `{}`); code != http.StatusForbidden {
			t.Errorf("REST gc without impact.admin: %d, want 403", code)
		}
	}
	if _, err := snaps.GcSnapshots(ctx, &impactv1.GcSnapshotsRequest{IncidentId: "no-such-incident"}); status.Code(err) != codes.NotFound {
		t.Errorf("gc of an unknown incident: %v, want NOT_FOUND", err)
	}
}
