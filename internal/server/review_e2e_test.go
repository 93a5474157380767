package server_test

// The MMH timeline with a correction, under review: four eyes on every
// publish (--publish-approvals 2), corrections counted and accepted.

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/server"
	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/testutil/impacttest"
	"github.com/impact-health/impact/internal/testutil/testclient"
)

// errorReason returns a gRPC error's code and ErrorInfo reason and metadata.
func errorReason(err error) (codes.Code, string, map[string]string) {
	st := status.Convert(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return st.Code(), info.GetReason(), info.GetMetadata()
		}
	}
	return st.Code(), "", nil
}

func TestMMHTimelineWithCorrection(t *testing.T) {
	e := startEnvWith(t, impacttest.Options{
		Config:           server.Config{RequestTimeout: 2 * time.Second},
		PublishApprovals: 2, ApprovalTTL: time.Hour,
	}, clientCreds{})
	e.WaitReady(t)
	alice := testclient.WithToken(context.Background(), e.adminTk)
	bobTk := e.Token(t, "ops-bob", auth.ScopeAdmin)
	bob := testclient.WithToken(context.Background(), bobTk)
	notifier := testclient.WithToken(context.Background(), e.Token(t, "notifier-1", auth.ScopeNotify))
	snapshots := impactv1.NewSnapshotServiceClient(e.admin)
	notices := impactv1.NewNoticeServiceClient(e.admin)
	inc := demo.IncidentID
	spec := testclient.DemoSpec(t)

	// v1: requested by alice, approved by bob over REST.
	if _, err := e.upload(spec, csvOf(rosterV1())); err != nil {
		t.Fatal(err)
	}
	p, err := snapshots.PublishSnapshot(alice, &impactv1.PublishSnapshotRequest{IncidentId: inc, Version: 1, ExpectedVisibleVersion: proto.Uint32(0)})
	if err != nil || p.GetPending().GetState() != impactv1.PublishRequestState_PENDING || p.GetSnapshot() != nil || p.GetPending().GetApprovalsRequired() != 2 {
		t.Fatalf("publish v1 as a request: %v %v", p, err)
	}
	code, _, body := e.rest("POST", e.Addrs.AdminHTTP, "/v1/incidents/"+inc+"/snapshots/1:approve", bobTk, `{}`)
	if code != 200 {
		t.Fatalf("REST approve: %d %s", code, body)
	}
	var approved struct {
		Snapshot struct{ Visible bool } `json:"snapshot"`
	}
	if err := json.Unmarshal(body, &approved); err != nil || !approved.Snapshot.Visible {
		t.Fatalf("REST approve answer: %s (%v)", body, err)
	}

	// Wave 1: everybody affected or under review is notified.
	for i := 0; i < 40; i++ {
		if _, ok := rosterV1()[sid(i)]; !ok {
			continue
		}
		if _, err := notices.ClaimNotice(notifier, &impactv1.ClaimNoticeRequest{IncidentId: inc, SubjectId: sid(i), IdempotencyKey: "w1:" + sid(i)}); err != nil {
			t.Fatal(err)
		}
	}

	// v2 corrects two notified patients; the diff says so first.
	if _, err := e.upload(spec, csvOf(rosterV2())); err != nil {
		t.Fatal(err)
	}
	diff, err := snapshots.DiffSnapshots(alice, &impactv1.DiffSnapshotsRequest{IncidentId: inc, Version: 2, Against: 1})
	if err != nil {
		t.Fatal(err)
	}
	nc := diff.GetNotifiedChanges()
	if nc.GetTotal() != 2 || nc.GetNotified() != uint32(len(rosterV1())) || len(nc.GetTransitions()) != 2 ||
		fmt.Sprint(nc.GetTransitions()[0].GetFrom(), nc.GetTransitions()[0].GetTo()) != "AFFECTED NOT_AFFECTED" ||
		fmt.Sprint(nc.GetTransitions()[1].GetFrom(), nc.GetTransitions()[1].GetTo()) != "AFFECTED UNDER_REVIEW" {
		t.Fatalf("notified changes: %v", nc)
	}

	// Without acceptance, or accepting fewer: refused, nothing requested.
	for _, accept := range []uint32{0, 1} {
		_, err = snapshots.PublishSnapshot(alice, &impactv1.PublishSnapshotRequest{IncidentId: inc, Version: 2, ExpectedVisibleVersion: proto.Uint32(1), AcceptCorrections: accept})
		if c, reason, md := errorReason(err); c != codes.FailedPrecondition || reason != "CORRECTIONS_NOT_ACCEPTED" || md["corrections"] != "2" {
			t.Fatalf("publish v2 accepting %d: %v", accept, err)
		}
	}
	if l, err := snapshots.ListPublishRequests(alice, &impactv1.ListPublishRequestsRequest{IncidentId: inc}); err != nil || len(l.GetRequests()) != 0 {
		t.Fatalf("a refused publish left a request: %v %v", l, err)
	}
	// A notifier can neither request nor approve.
	_, err = snapshots.PublishSnapshot(notifier, &impactv1.PublishSnapshotRequest{IncidentId: inc, Version: 2, ExpectedVisibleVersion: proto.Uint32(1), AcceptCorrections: 2})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("notifier publish: %v", err)
	}
	if _, err := snapshots.PublishSnapshot(alice, &impactv1.PublishSnapshotRequest{IncidentId: inc, Version: 2, ExpectedVisibleVersion: proto.Uint32(1), AcceptCorrections: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := snapshots.ApprovePublish(notifier, &impactv1.ApprovePublishRequest{IncidentId: inc, Version: 2}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("notifier approval: %v", err)
	}
	_, err = snapshots.ApprovePublish(alice, &impactv1.ApprovePublishRequest{IncidentId: inc, Version: 2})
	if c, reason, _ := errorReason(err); c != codes.FailedPrecondition || reason != snapshot.ReasonOwnRequest {
		t.Fatalf("own approval: %v", err)
	}
	_, err = snapshots.ApprovePublish(bob, &impactv1.ApprovePublishRequest{IncidentId: inc, Version: 9})
	if c, reason, _ := errorReason(err); c != codes.FailedPrecondition || reason != snapshot.ReasonRequestUnknown {
		t.Fatalf("approval of an unknown request: %v", err)
	}
	code, _, body = e.rest("GET", e.Addrs.AdminHTTP, "/v1/incidents/"+inc+"/publish-requests", bobTk, "")
	var listed struct {
		Requests []struct {
			Version           uint32 `json:"version"`
			RequestedBy       string `json:"requested_by"`
			AcceptCorrections uint32 `json:"accept_corrections"`
		} `json:"requests"`
	}
	if err := json.Unmarshal(body, &listed); code != 200 || err != nil || len(listed.Requests) != 1 ||
		listed.Requests[0].Version != 2 || listed.Requests[0].RequestedBy != "ops-alice" || listed.Requests[0].AcceptCorrections != 2 {
		t.Fatalf("REST publish requests: %d %s (%v)", code, body, err)
	}
	a, err := snapshots.ApprovePublish(bob, &impactv1.ApprovePublishRequest{IncidentId: inc, Version: 2})
	if err != nil || a.GetSnapshot().GetVersion() != 2 || !a.GetSnapshot().GetVisible() || a.GetSnapshot().GetPublishedBy() != "ops-bob" {
		t.Fatalf("approval of v2: %v %v", a, err)
	}
	// The corrected patient is answered from the notice, update pending.
	g, err := impactv1.NewStatusServiceClient(e.public).GetMyStatus(testclient.WithToken(context.Background(), e.Token(t, sid(6))),
		&impactv1.GetMyStatusRequest{IncidentId: inc, AtLeastVersion: 2})
	if err != nil || g.GetAnswer().GetStatus() != impactv1.Status_AFFECTED || !g.GetAnswer().GetUpdatePending() || g.GetAnswer().GetVisibleStatus() != impactv1.Status_NOT_AFFECTED {
		t.Fatalf("corrected patient: %v %v", g, err)
	}

	// A request lapses when the visible version moves: a rollback to v1
	// (requested by bob, approved by alice) supersedes alice's v3.
	if _, err := e.upload(spec, csvOf(rosterV2())); err != nil { // v3
		t.Fatal(err)
	}
	// (The two corrections are not sent yet: v3 makes them too.)
	if _, err := snapshots.PublishSnapshot(alice, &impactv1.PublishSnapshotRequest{IncidentId: inc, Version: 3, ExpectedVisibleVersion: proto.Uint32(2), AcceptCorrections: 2}); err != nil {
		t.Fatal(err)
	}
	back, err := snapshots.DiffSnapshots(bob, &impactv1.DiffSnapshotsRequest{IncidentId: inc, Version: 1, Against: 2})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := snapshots.RollbackSnapshot(bob, &impactv1.RollbackSnapshotRequest{IncidentId: inc, ToVersion: 1, ExpectedVisibleVersion: proto.Uint32(2),
		AcceptCorrections: back.GetNotifiedChanges().GetTotal()})
	if err != nil || rb.GetPending().GetVersion() != 4 || rb.GetPending().GetSource() != "rollback of v1" || rb.GetSnapshot().GetState() != impactv1.SnapshotState_STAGED {
		t.Fatalf("rollback request: %v %v", rb, err)
	}
	if _, err := snapshots.ApprovePublish(alice, &impactv1.ApprovePublishRequest{IncidentId: inc, Version: 4}); err != nil {
		t.Fatal(err)
	}
	_, err = snapshots.ApprovePublish(bob, &impactv1.ApprovePublishRequest{IncidentId: inc, Version: 3})
	if c, reason, _ := errorReason(err); c != codes.FailedPrecondition || reason != snapshot.ReasonRequestLapsed {
		t.Fatalf("approval of a lapsed request: %v", err)
	}
	l, err := snapshots.ListSnapshots(alice, &impactv1.ListSnapshotsRequest{IncidentId: inc})
	if err != nil || l.GetVisibleVersion() != 4 {
		t.Fatalf("visible after the rollback: %v %v", l, err)
	}
}
