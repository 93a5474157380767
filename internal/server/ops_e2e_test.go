package server_test

// End-to-end tests of retention (GcSnapshots), the audit trail
// (ListAuditEvents) and account closure (EraseSubject), through gRPC and
// REST.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/testutil/testclient"
)

func TestGcSnapshots(t *testing.T) {
	e := startEnv(t)
	e.WaitReady(t)
	spec := testclient.DemoSpec(t)
	for range 4 {
		if _, err := e.upload(spec, csvOf(rosterV1())); err != nil {
			t.Fatal(err)
		}
	}
	e.publish(1, 0)
	e.publish(2, 1)
	ctx := testclient.WithToken(context.Background(), e.adminTk)
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
	a, err := pub.GetMyStatus(testclient.WithToken(context.Background(), e.Token(t, sid(0))), &impactv1.GetMyStatusRequest{IncidentId: demo.IncidentID})
	if err != nil || a.GetAnswer().GetNotifiedVersion() != 2 || a.GetAnswer().GetVersion() != 3 {
		t.Fatalf("pinned subject after gc: %v, %v", a, err)
	}
	if _, err := snaps.DiffSnapshots(ctx, &impactv1.DiffSnapshotsRequest{IncidentId: demo.IncidentID, Version: 3, Against: 1}); grpcstatus.Code(err) != codes.NotFound {
		t.Errorf("diff against a removed version: %v, want NOT_FOUND", err)
	}

	// REST, same rules: upload v5, so that v3 (visible) and v4, v5 stay.
	if _, err := e.upload(spec, csvOf(rosterV2())); err != nil {
		t.Fatal(err)
	}
	code, _, body := e.rest(http.MethodPost, e.Addrs.AdminHTTP, "/v1/incidents/"+demo.IncidentID+"/snapshots:gc", e.adminTk, `{"keep_last": 2}`)
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
	for _, tok := range []string{e.Token(t, "ops-bob", auth.ScopeNotify), e.Token(t, sid(1))} {
		if _, err := snaps.GcSnapshots(testclient.WithToken(context.Background(), tok), &impactv1.GcSnapshotsRequest{IncidentId: demo.IncidentID}); grpcstatus.Code(err) != codes.PermissionDenied {
			t.Errorf("gc without impact.admin: %v, want PERMISSION_DENIED", err)
		}
		if code, _, _ := e.rest(http.MethodPost, e.Addrs.AdminHTTP, "/v1/incidents/"+demo.IncidentID+"/snapshots:gc", tok, `{}`); code != http.StatusForbidden {
			t.Errorf("REST gc without impact.admin: %d, want 403", code)
		}
	}
	if _, err := snaps.GcSnapshots(ctx, &impactv1.GcSnapshotsRequest{IncidentId: "no-such-incident"}); grpcstatus.Code(err) != codes.NotFound {
		t.Errorf("gc of an unknown incident: %v, want NOT_FOUND", err)
	}
}

func TestAuditTrailEndToEnd(t *testing.T) {
	e, _ := startPublished(t)
	snaps := impactv1.NewSnapshotServiceClient(e.admin)
	ctx := testclient.WithToken(context.Background(), e.adminTk)
	if _, err := snaps.PublishSnapshot(ctx, &impactv1.PublishSnapshotRequest{IncidentId: demo.IncidentID, Version: 1, ExpectedVisibleVersion: proto.Uint32(0)}); grpcstatus.Code(err) != codes.FailedPrecondition {
		t.Fatalf("stale publish: %v", err)
	}
	// A wave by the notifier: two notices due, one subject not affected.
	notifier := e.Token(t, "notifier-1", auth.ScopeNotify)
	stream, err := impactv1.NewNoticeServiceClient(e.admin).ClaimNotices(testclient.WithToken(context.Background(), notifier))
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1, 39} {
		if err := stream.Send(&impactv1.ClaimNoticesRequest{IncidentId: demo.IncidentID, SubjectId: sid(i), IdempotencyKey: "wave-1:" + sid(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := snaps.GcSnapshots(ctx, &impactv1.GcSnapshotsRequest{IncidentId: demo.IncidentID}); err != nil {
		t.Fatal(err)
	}

	resp, err := snaps.ListAuditEvents(ctx, &impactv1.ListAuditEventsRequest{IncidentId: demo.IncidentID})
	if err != nil {
		t.Fatal(err)
	}
	type ev struct{ actor, action, outcome, detail string }
	want := []ev{
		{"ops-alice", "upload", "ok", "staged: 34 entries (30 affected, 4 under review)"},
		{"ops-alice", "publish", "ok", "visible v0 -> v1"},
		{"ops-alice", "publish", "conflict", "expected visible v0"},
		{"notifier-1", "claim_wave", "ok", "3 claims: send 2 new, 0 replayed, already sent 0, none 1"},
		{"ops-alice", "gc", "ok", "keep last 3: removed none; kept v1"},
	}
	var got []ev
	for i, x := range resp.GetEvents() {
		got = append(got, ev{x.GetActor(), x.GetAction(), x.GetOutcome(), x.GetDetail()})
		if x.GetSeq() != uint64(i+1) || x.GetTime() == nil || x.GetIncidentId() != demo.IncidentID {
			t.Errorf("event %d: %v", i, x)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("audit trail:\n got %v\nwant %v", got, want)
	}
	if w := resp.GetEvents()[3]; w.GetVersion() != 1 || w.GetDigest() == "" || w.GetDigest() != resp.GetEvents()[0].GetDigest() {
		t.Errorf("wave event names version %d digest %q, want v1 and the upload's digest", w.GetVersion(), w.GetDigest())
	}
	if resp.GetNextAfterSeq() != 5 {
		t.Errorf("next_after_seq %d, want 5", resp.GetNextAfterSeq())
	}
	// Paging.
	page, err := snaps.ListAuditEvents(ctx, &impactv1.ListAuditEventsRequest{AfterSeq: 2, PageSize: 2})
	if err != nil || len(page.GetEvents()) != 2 || page.GetEvents()[0].GetSeq() != 3 || page.GetNextAfterSeq() != 4 {
		t.Errorf("page after 2, size 2: %v, %v", page, err)
	}
	if _, err := snaps.ListAuditEvents(ctx, &impactv1.ListAuditEventsRequest{PageSize: 5000}); grpcstatus.Code(err) != codes.InvalidArgument {
		t.Errorf("page size 5000: %v, want INVALID_ARGUMENT", err)
	}

	// REST.
	code, _, body := e.rest(http.MethodGet, e.Addrs.AdminHTTP, "/v1/audit?incident_id="+demo.IncidentID+"&after_seq=3", e.adminTk, "")
	if code != http.StatusOK {
		t.Fatalf("REST audit: %d %s", code, body)
	}
	var rest struct {
		Events []struct {
			Seq    string `json:"seq"`
			Actor  string `json:"actor"`
			Action string `json:"action"`
		} `json:"events"`
		NextAfterSeq string `json:"next_after_seq"`
	}
	if err := json.Unmarshal(body, &rest); err != nil {
		t.Fatal(err)
	}
	if len(rest.Events) != 2 || rest.Events[0].Seq != "4" || rest.Events[0].Actor != "notifier-1" || rest.Events[1].Action != "gc" || rest.NextAfterSeq != "5" {
		t.Errorf("REST audit: %s", body)
	}
	// Never a subject id.
	for i := 0; i < 40; i++ {
		if bytes.Contains(body, []byte(sid(i))) {
			t.Fatalf("audit trail holds subject id %s", sid(i))
		}
	}
	// impact.admin only.
	for _, tok := range []string{notifier, e.Token(t, sid(0))} {
		if code, _, _ := e.rest(http.MethodGet, e.Addrs.AdminHTTP, "/v1/audit", tok, ""); code != http.StatusForbidden {
			t.Errorf("REST audit without impact.admin: %d, want 403", code)
		}
	}
}

func TestEraseSubject(t *testing.T) {
	e, spec := startPublished(t)
	ctx := testclient.WithToken(context.Background(), e.adminTk)
	notices := impactv1.NewNoticeServiceClient(e.admin)
	if c, err := notices.ClaimNotice(ctx, &impactv1.ClaimNoticeRequest{IncidentId: demo.IncidentID, SubjectId: sid(0), IdempotencyKey: "w1:0"}); err != nil || c.GetClaim().GetAction() != impactv1.ClaimAction_SEND {
		t.Fatalf("claim: %v, %v", c, err)
	}
	pub := impactv1.NewStatusServiceClient(e.public)
	statusPath := "/v1/incidents/" + demo.IncidentID + "/status"
	if code, _, body := e.rest(http.MethodGet, e.Addrs.HTTP, statusPath, e.Token(t, sid(0)), ""); code != http.StatusOK {
		t.Fatalf("status before erasure: %d %s", code, body)
	}

	// gRPC.
	subjects := impactv1.NewSubjectServiceClient(e.admin)
	resp, err := subjects.EraseSubject(ctx, &impactv1.EraseSubjectRequest{SubjectId: sid(0)})
	if err != nil || resp.GetPinsRemoved() != 1 {
		t.Fatalf("erase: %v, %v; want 1 pin removed", resp, err)
	}
	// REST, a subject never notified.
	code, _, body := e.rest(http.MethodPost, e.Addrs.AdminHTTP, "/v1/subjects:erase", e.adminTk, `{"subject_id": "`+sid(1)+`"}`)
	if code != http.StatusOK {
		t.Fatalf("REST erase: %d %s", code, body)
	}
	var rest struct {
		PinsRemoved int `json:"pins_removed"`
	}
	if err := json.Unmarshal(body, &rest); err != nil || rest.PinsRemoved != 0 {
		t.Errorf("REST erase: %s (%v)", body, err)
	}

	// Both erased subjects now read NOT_FOUND on both transports.
	for _, i := range []int{0, 1} {
		tok := e.Token(t, sid(i))
		if _, err := pub.GetMyStatus(testclient.WithToken(context.Background(), tok), &impactv1.GetMyStatusRequest{IncidentId: demo.IncidentID}); grpcstatus.Code(err) != codes.NotFound {
			t.Errorf("%s: GetMyStatus after erasure: %v, want NOT_FOUND", sid(i), err)
		}
		if _, err := pub.ListMyStatuses(testclient.WithToken(context.Background(), tok), &impactv1.ListMyStatusesRequest{}); grpcstatus.Code(err) != codes.NotFound {
			t.Errorf("%s: ListMyStatuses after erasure: %v, want NOT_FOUND", sid(i), err)
		}
		if code, _, body := e.rest(http.MethodGet, e.Addrs.HTTP, statusPath, tok, ""); code != http.StatusNotFound {
			t.Errorf("%s: REST status after erasure: %d %s, want 404", sid(i), code, body)
		}
		c, err := notices.ClaimNotice(ctx, &impactv1.ClaimNoticeRequest{IncidentId: demo.IncidentID, SubjectId: sid(i), IdempotencyKey: "w2"})
		if err != nil || c.GetClaim().GetAction() != impactv1.ClaimAction_NONE {
			t.Errorf("%s: claim after erasure: %v, %v; want NONE", sid(i), c, err)
		}
	}
	// Others are untouched.
	if a, err := pub.GetMyStatus(testclient.WithToken(context.Background(), e.Token(t, sid(2))), &impactv1.GetMyStatusRequest{IncidentId: demo.IncidentID}); err != nil || a.GetAnswer().GetStatus() != impactv1.Status_AFFECTED {
		t.Errorf("another subject: %v, %v", a, err)
	}
	// Again: idempotent.
	if resp, err := subjects.EraseSubject(ctx, &impactv1.EraseSubjectRequest{SubjectId: sid(0)}); err != nil || resp.GetPinsRemoved() != 0 {
		t.Errorf("second erase: %v, %v", resp, err)
	}
	// The next upload drops both rows.
	info, err := e.upload(spec, csvOf(rosterV1()))
	if err != nil || info.GetEntries() != 32 {
		t.Fatalf("upload after erasures: %v, %v; want 32 of 34 rows", info, err)
	}

	// impact.admin only; a subject id is required.
	for _, tok := range []string{e.Token(t, "notifier-1", auth.ScopeNotify), e.Token(t, sid(3))} {
		if _, err := subjects.EraseSubject(testclient.WithToken(context.Background(), tok), &impactv1.EraseSubjectRequest{SubjectId: sid(3)}); grpcstatus.Code(err) != codes.PermissionDenied {
			t.Errorf("erase without impact.admin: %v, want PERMISSION_DENIED", err)
		}
		if code, _, _ := e.rest(http.MethodPost, e.Addrs.AdminHTTP, "/v1/subjects:erase", tok, `{"subject_id": "`+sid(3)+`"}`); code != http.StatusForbidden {
			t.Errorf("REST erase without impact.admin: %d, want 403", code)
		}
	}
	if _, err := subjects.EraseSubject(ctx, &impactv1.EraseSubjectRequest{}); grpcstatus.Code(err) != codes.InvalidArgument {
		t.Errorf("erase without a subject: %v, want INVALID_ARGUMENT", err)
	}
	if a, err := pub.GetMyStatus(testclient.WithToken(context.Background(), e.Token(t, sid(3))), &impactv1.GetMyStatusRequest{IncidentId: demo.IncidentID}); err != nil || a.GetAnswer().GetStatus() != impactv1.Status_AFFECTED {
		t.Errorf("a refused erase changed the subject: %v, %v", a, err)
	}

	// The audit trail records the erasures, never whom.
	audit, err := impactv1.NewSnapshotServiceClient(e.admin).ListAuditEvents(ctx, &impactv1.ListAuditEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	erasures := 0
	for _, ev := range audit.GetEvents() {
		if ev.GetAction() == "erase" {
			erasures++
			if ev.GetActor() != "ops-alice" || ev.GetIncidentId() != "" {
				t.Errorf("erase event: %v", ev)
			}
		}
		if strings.Contains(ev.String(), sid(0)) || strings.Contains(ev.String(), sid(1)) {
			t.Errorf("audit event names an erased subject: %v", ev)
		}
	}
	if erasures != 3 {
		t.Errorf("%d erase events, want 3", erasures)
	}
	// Nor do the logs.
	for _, i := range []int{0, 1} {
		if strings.Contains(e.logs.String(), sid(i)) {
			t.Errorf("logs hold the erased subject id %s", sid(i))
		}
	}
}
