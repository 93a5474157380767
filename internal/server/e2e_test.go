package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/server"
	"github.com/impact-health/impact/internal/server/errinfo"
	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/testutil/impacttest"
	"github.com/impact-health/impact/internal/testutil/testclient"
)

// env is one in-process impactd (impacttest) with gRPC connections to its
// patient and ops listeners, its logs and an ops token.
type env struct {
	*impacttest.Env
	t       *testing.T
	public  *grpc.ClientConn
	admin   *grpc.ClientConn
	logs    *testclient.LogBuffer
	adminTk string
}

// clientCreds are the transport credentials the test clients dial the
// patient and ops gRPC listeners with; nil means plaintext.
type clientCreds struct {
	public, admin credentials.TransportCredentials
}

func startEnv(t *testing.T) *env {
	t.Helper()
	return startEnvWith(t, impacttest.Options{Config: server.Config{RequestTimeout: 2 * time.Second}}, clientCreds{})
}

// startEnvWith is startEnv with the server options o (its logs go to
// env.logs) and the clients' credentials c.
func startEnvWith(t *testing.T, o impacttest.Options, c clientCreds) *env {
	t.Helper()
	logs := &testclient.LogBuffer{}
	o.LogWriter = logs
	ie := impacttest.Start(t, o)
	e := &env{Env: ie, t: t, logs: logs}
	e.public = testclient.Dial(t, e.Addrs.GRPC, c.public)
	e.admin = testclient.Dial(t, e.Addrs.AdminGRPC, c.admin)
	e.adminTk = e.Token(t, "ops-alice", auth.ScopeAdmin, auth.ScopeNotify)
	return e
}

// upload stages spec and roster in small chunks (rows straddle chunk
// boundaries).
func (e *env) upload(spec []byte, roster string) (*impactv1.SnapshotInfo, error) {
	ctx := testclient.WithToken(context.Background(), e.adminTk)
	return testclient.Upload(ctx, impactv1.NewSnapshotServiceClient(e.admin), demo.IncidentID, spec, []byte(roster), 100)
}

func (e *env) publish(version, expect uint32) *impactv1.PublishSnapshotResponse {
	e.t.Helper()
	resp, err := testclient.Publish(testclient.WithToken(context.Background(), e.adminTk), impactv1.NewSnapshotServiceClient(e.admin), demo.IncidentID, version, expect)
	if err != nil {
		e.t.Fatalf("publish v%d: %v", version, err)
	}
	return resp
}

// startPublished is startEnv, ready, with the demo spec and rosterV1
// uploaded and published as v1; it returns the env and the spec.
func startPublished(t *testing.T) (*env, []byte) {
	t.Helper()
	e := startEnv(t)
	e.WaitReady(t)
	spec := testclient.DemoSpec(t)
	if _, err := e.upload(spec, csvOf(rosterV1())); err != nil {
		t.Fatal(err)
	}
	e.publish(1, 0)
	return e, spec
}

// rest performs a plaintext REST call and returns the status code,
// headers and body.
func (e *env) rest(method, addr, path, tok, body string) (int, http.Header, []byte) {
	e.t.Helper()
	return call(e.t, http.DefaultClient, method, "http://"+addr+path, tok, body)
}

// subjects of the timeline: s00..s29 affected at v1 (s00-s14 northland,
// s15-s29 referrals), s30-s33 under review, s34-s39 absent at v1.
func sid(i int) string { return fmt.Sprintf("patient-%04d", i) }

type row struct {
	status  store.Status
	cohorts string
}

func rosterV1() map[string]row {
	r := map[string]row{}
	for i := 0; i < 30; i++ {
		c := "northland"
		if i >= 15 {
			c = "referrals"
		}
		r[sid(i)] = row{store.Affected, c}
	}
	for i := 30; i < 34; i++ {
		r[sid(i)] = row{store.UnderReview, ""}
	}
	return r
}

// rosterV2 adds the uploads cohort, corrects patient-0006 to not affected
// and moves patient-0002 to under review.
func rosterV2() map[string]row {
	r := rosterV1()
	delete(r, sid(6))
	r[sid(2)] = row{store.UnderReview, ""}
	r[sid(4)] = row{store.Affected, "northland;uploads"}
	for i := 34; i < 37; i++ {
		r[sid(i)] = row{store.Affected, "uploads"}
	}
	return r
}

func csvOf(r map[string]row) string {
	var b strings.Builder
	b.WriteString("subject_id,status,cohorts,practice_id\n")
	for i := 0; i < 40; i++ {
		if x, ok := r[sid(i)]; ok {
			fmt.Fprintf(&b, "%s,%s,%s,GP-%02d\n", sid(i), x.status, x.cohorts, i%7)
		}
	}
	return b.String()
}

type pin struct {
	version  uint32
	status   impactv1.Status
	noticeID string
	notice   *impactv1.Notice
}

// apiStatus is the API status the model expects for a store status,
// written out here rather than taken from the server, so that a wrong
// mapping fails the tests.
var apiStatus = map[store.Status]impactv1.Status{
	store.NotAffected: impactv1.Status_NOT_AFFECTED,
	store.Affected:    impactv1.Status_AFFECTED,
	store.UnderReview: impactv1.Status_UNDER_REVIEW,
}

// model is what the ledger must hold: what each subject was last emailed.
type model struct {
	pins    map[string]pin
	visible map[string]row
}

// due is the claim rule, stated independently of the code: a notice is due
// when the subject was never notified and is affected or under review now,
// or was notified at a status other than the current one.
func (m *model) due(subject string) bool {
	cur := apiStatus[m.visible[subject].status]
	p, ok := m.pins[subject]
	if !ok {
		return cur != impactv1.Status_NOT_AFFECTED
	}
	return p.status != cur
}

func (m *model) record(t *testing.T, subject string, c *impactv1.Claim, wantDue bool, visible uint32) {
	t.Helper()
	switch {
	case wantDue && c.GetAction() != impactv1.ClaimAction_SEND:
		t.Fatalf("%s: action %v, want SEND", subject, c.GetAction())
	case !wantDue && c.GetAction() == impactv1.ClaimAction_SEND:
		t.Fatalf("%s: SEND, nothing was due", subject)
	}
	if c.GetAction() == impactv1.ClaimAction_SEND {
		if c.GetVersion() != visible || c.GetStatus() != apiStatus[m.visible[subject].status] {
			t.Fatalf("%s: claim %v, want version %d status %v", subject, c, visible, m.visible[subject].status)
		}
		m.pins[subject] = pin{c.GetVersion(), c.GetStatus(), c.GetNoticeId(), c.GetNotice()}
	}
}

// TestMMHTimeline drives both transports through a breach timeline (upload,
// publish, notify, revise, notify the corrections) and checks for every
// subject at the end that the app never contradicts the email it got and
// that reads never go back to an older version.
func TestMMHTimeline(t *testing.T) {
	e := startEnv(t)
	e.WaitReady(t)
	ctx := testclient.WithToken(context.Background(), e.adminTk)
	spec := testclient.DemoSpec(t)
	snapshots := impactv1.NewSnapshotServiceClient(e.admin)
	notices := impactv1.NewNoticeServiceClient(e.admin)
	m := &model{pins: map[string]pin{}}

	// v1: two cohorts affected.
	v1, err := e.upload(spec, csvOf(rosterV1()))
	if err != nil {
		t.Fatal(err)
	}
	if v1.GetVersion() != 1 || v1.GetState() != impactv1.SnapshotState_STAGED || v1.GetEntries() != 34 || v1.GetAffected() != 30 || len(v1.GetDigest()) != 64 {
		t.Fatalf("v1 staged: %v", v1)
	}
	// Staged is invisible: patients get NOT_FOUND until it is published.
	patient0 := e.Token(t, sid(0))
	if _, err := impactv1.NewStatusServiceClient(e.public).GetMyStatus(testclient.WithToken(context.Background(), patient0),
		&impactv1.GetMyStatusRequest{IncidentId: demo.IncidentID}); grpcstatus.Code(err) != codes.NotFound {
		t.Fatalf("staged-only incident: %v, want NotFound", err)
	}
	e.publish(1, 0)
	m.visible = rosterV1()

	// Wave 1 over the streaming RPC: half of the affected (even ids).
	wave, err := notices.ClaimNotices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var wave1 []string
	for i := 0; i < 30; i += 2 {
		wave1 = append(wave1, sid(i))
	}
	for _, s := range wave1 {
		if err := wave.Send(&impactv1.ClaimNoticesRequest{IncidentId: demo.IncidentID, SubjectId: s, IdempotencyKey: "wave1:" + s}); err != nil {
			t.Fatal(err)
		}
	}
	if err := wave.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for _, s := range wave1 {
		r, err := wave.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r.GetSubjectId() != s {
			t.Fatalf("wave answers out of order: %s, want %s", r.GetSubjectId(), s)
		}
		m.record(t, s, r.GetClaim(), m.due(s), 1)
	}

	// v2: third cohort, one correction, one moved to under review.
	v2, err := e.upload(spec, csvOf(rosterV2()))
	if err != nil {
		t.Fatal(err)
	}
	diff, err := snapshots.DiffSnapshots(ctx, &impactv1.DiffSnapshotsRequest{IncidentId: demo.IncidentID, Version: 2, Against: 1})
	if err != nil {
		t.Fatal(err)
	}
	if diff.GetAdded() != 3 || diff.GetRemoved() != 1 || diff.GetChanged() != 2 {
		t.Fatalf("diff v2 against v1: %v", diff)
	}
	// A stale expectation changes nothing.
	_, err = snapshots.PublishSnapshot(ctx, &impactv1.PublishSnapshotRequest{IncidentId: demo.IncidentID, Version: 2, ExpectedVisibleVersion: proto.Uint32(0)})
	if grpcstatus.Code(err) != codes.FailedPrecondition {
		t.Fatalf("stale CAS publish: %v", err)
	}
	e.publish(v2.GetVersion(), 1)
	m.visible = rosterV2()

	// Wave 2: everybody of v2's roster and the corrected subject, one call
	// each over REST (the notifier may use either transport).
	for i := 0; i < 40; i++ {
		s := sid(i)
		if _, ok := m.visible[s]; !ok && s != sid(6) {
			continue
		}
		wantDue := m.due(s)
		code, _, body := e.rest("POST", e.Addrs.AdminHTTP, "/v1/incidents/"+demo.IncidentID+"/notices:claim", e.adminTk,
			fmt.Sprintf(`{"subject_id":%q,"idempotency_key":"wave2:%s"}`, s, s))
		if code != 200 {
			t.Fatalf("REST claim %s: %d %s", s, code, body)
		}
		var c impactv1.Claim
		if err := protojson.Unmarshal(body, &c); err != nil {
			t.Fatalf("claim body %s: %v", body, err)
		}
		m.record(t, s, &c, wantDue, 2)
		// A retry with the same key is the same answer.
		if _, _, again := e.rest("POST", e.Addrs.AdminHTTP, "/v1/incidents/"+demo.IncidentID+"/notices:claim", e.adminTk,
			fmt.Sprintf(`{"subject_id":%q,"idempotency_key":"wave2:%s"}`, s, s)); c.GetAction() == impactv1.ClaimAction_SEND && !bytes.Equal(again, body) {
			t.Fatalf("idempotent replay differs:\n%s\n%s", body, again)
		}
	}
	if m.pins[sid(6)].status != impactv1.Status_NOT_AFFECTED || m.pins[sid(2)].status != impactv1.Status_UNDER_REVIEW {
		t.Fatalf("wave 2 must send the correction and the move: %+v %+v", m.pins[sid(6)], m.pins[sid(2)])
	}

	// Roll back to v1: a new version 3 with v1's content and digest.
	// The corrections it makes are those of v1's content, reviewed first.
	back, err := snapshots.DiffSnapshots(ctx, &impactv1.DiffSnapshotsRequest{IncidentId: demo.IncidentID, Version: 1, Against: 2})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := snapshots.RollbackSnapshot(ctx, &impactv1.RollbackSnapshotRequest{IncidentId: demo.IncidentID, ToVersion: 1, ExpectedVisibleVersion: proto.Uint32(2),
		AcceptCorrections: back.GetNotifiedChanges().GetTotal()})
	if err != nil {
		t.Fatal(err)
	}
	if rb.GetSnapshot().GetVersion() != 3 || rb.GetSnapshot().GetDigest() != v1.GetDigest() || !rb.GetSnapshot().GetVisible() {
		t.Fatalf("rollback: %v (v1 digest %s)", rb, v1.GetDigest())
	}
	m.visible = rosterV1()

	// Every subject, both transports: invariant 3 and 4, and 12 (one size
	// per transport).
	statusClient := impactv1.NewStatusServiceClient(e.public)
	sizes := sizeOf{}
	for i := 0; i < 40; i++ {
		s := sid(i)
		tok := e.Token(t, s)
		g, err := statusClient.GetMyStatus(testclient.WithToken(context.Background(), tok), &impactv1.GetMyStatusRequest{IncidentId: demo.IncidentID, AtLeastVersion: 3})
		if err != nil {
			t.Fatalf("%s gRPC: %v", s, err)
		}
		code, hdr, body := e.rest("GET", e.Addrs.HTTP, "/v1/incidents/"+demo.IncidentID+"/status?at_least_version=3", tok, "")
		if code != 200 {
			t.Fatalf("%s REST: %d %s", s, code, body)
		}
		if hdr.Get("Cache-Control") != "no-store" || hdr.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("REST headers: %v", hdr)
		}
		var r impactv1.StatusAnswer
		if err := protojson.Unmarshal(body, &r); err != nil {
			t.Fatalf("%s REST body %s: %v", s, body, err)
		}
		sizes.add(t, "gRPC", s, proto.Size(g))
		sizes.add(t, "REST", s, len(body))
		a := g.GetAnswer()
		if !proto.Equal(unpadded(t, a), unpadded(t, &r)) {
			t.Fatalf("%s: gRPC and REST differ:\n%v\n%v", s, a, &r)
		}
		visible := apiStatus[m.visible[s].status]
		if a.GetVersion() < 3 || a.GetVisibleStatus() != visible {
			t.Fatalf("%s: invariant 4: %v", s, a)
		}
		p, pinned := m.pins[s]
		switch {
		case pinned:
			if a.GetStatus() != p.status || a.GetNotifiedVersion() != p.version || a.GetNoticeId() != p.noticeID ||
				!proto.Equal(a.GetNotice(), p.notice) || a.GetUpdatePending() != (p.status != visible) {
				t.Fatalf("%s: invariant 3: app %v, email %+v, visible %v", s, a, p, visible)
			}
		default:
			if a.GetStatus() != visible || a.GetNotifiedVersion() != 0 || a.GetUpdatePending() {
				t.Fatalf("%s never notified: %v", s, a)
			}
		}
		// Monotonic reads: never answered from an older version than asked.
		_, err = statusClient.GetMyStatus(testclient.WithToken(context.Background(), tok), &impactv1.GetMyStatusRequest{IncidentId: demo.IncidentID, AtLeastVersion: 4})
		if grpcstatus.Code(err) != codes.OutOfRange {
			t.Fatalf("%s at_least_version 4: %v, want OutOfRange", s, err)
		}
		if code, _, _ := e.rest("GET", e.Addrs.HTTP, "/v1/incidents/"+demo.IncidentID+"/status?at_least_version=4", tok, ""); code != 400 {
			t.Fatalf("%s REST at_least_version 4: %d", s, code)
		}
	}
	// Spot checks of the story: patient-0006 was corrected then rolled back
	// to affected: the app shows the correction and that an update is due.
	// (Parsed, not matched as text: protojson varies its whitespace
	// between builds on purpose.)
	code, _, body := e.rest("GET", e.Addrs.HTTP, "/v1/status", e.Token(t, sid(6)), "")
	var list struct {
		Statuses []struct {
			Status        string `json:"status"`
			VisibleStatus string `json:"visible_status"`
			UpdatePending bool   `json:"update_pending"`
		} `json:"statuses"`
	}
	if err := json.Unmarshal(body, &list); code != 200 || err != nil || len(list.Statuses) != 1 ||
		list.Statuses[0].Status != "NOT_AFFECTED" || list.Statuses[0].VisibleStatus != "AFFECTED" || !list.Statuses[0].UpdatePending {
		t.Fatalf("patient-0006 list: %d %s (%v)", code, body, err)
	}

	stats, err := notices.GetNoticeStats(ctx, &impactv1.GetNoticeStatsRequest{IncidentId: demo.IncidentID})
	if err != nil {
		t.Fatal(err)
	}
	if stats.GetVisibleVersion() != 3 || stats.GetAffected() != 30 || stats.GetUnderReview() != 4 {
		t.Fatalf("stats: %v", stats)
	}

	// Privacy: nothing logged names a subject or carries a token or notice.
	logs := e.logs.String()
	for i := 0; i < 40; i++ {
		if strings.Contains(logs, sid(i)) {
			t.Fatalf("logs contain subject id %s", sid(i))
		}
	}
	if strings.Contains(logs, e.adminTk) || strings.Contains(logs, "Bearer") || strings.Contains(logs, "were taken") {
		t.Fatal("logs contain a token or notice text")
	}
}

// TestAccessControl: every authentication failure is one identical 401, a
// patient reaches no ops method, a notify token cannot publish.
func TestAccessControl(t *testing.T) {
	e := startEnv(t)
	e.WaitReady(t)
	status401 := func(path, tok string) []byte {
		code, hdr, body := e.rest("GET", e.Addrs.HTTP, path, tok, "")
		if code != 401 || hdr.Get("WWW-Authenticate") == "" {
			t.Fatalf("%s with %.12q: %d %s", path, tok, code, body)
		}
		return body
	}
	first := status401("/v1/status", "")
	for _, tok := range []string{"garbage", "a.b.c", e.Token(t, "alice") + "x", "a.b.c.d.e"} {
		if b := status401("/v1/status", tok); !bytes.Equal(b, first) {
			t.Fatalf("401 bodies differ: %s vs %s", b, first)
		}
	}
	patient := e.Token(t, "alice")
	ctx := testclient.WithToken(context.Background(), patient)
	_, err := impactv1.NewSnapshotServiceClient(e.admin).ListSnapshots(ctx, &impactv1.ListSnapshotsRequest{IncidentId: demo.IncidentID})
	if grpcstatus.Code(err) != codes.PermissionDenied {
		t.Fatalf("patient on ops: %v", err)
	}
	notify := e.Token(t, "mailer", auth.ScopeNotify)
	code, _, _ := e.rest("POST", e.Addrs.AdminHTTP, "/v1/incidents/"+demo.IncidentID+"/snapshots/1:publish", notify, `{"expected_visible_version":0}`)
	if code != 403 {
		t.Fatalf("notify token publishing: %d, want 403", code)
	}
	// The ops API is not on the patient listener at all.
	if code, _, _ := e.rest("GET", e.Addrs.HTTP, "/v1/incidents/"+demo.IncidentID+"/snapshots", e.adminTk, ""); code != 404 {
		t.Fatalf("ops path on the patient listener: %d", code)
	}
	// The patient listener documents the patient API only.
	if code, _, doc := e.rest("GET", e.Addrs.HTTP, "/openapi.json", "", ""); code != 200 ||
		!bytes.Contains(doc, []byte("/v1/incidents/{incident_id}/status")) || bytes.Contains(doc, []byte(":publish")) {
		t.Fatalf("patient /openapi.json: %d", code)
	}
	if code, _, doc := e.rest("GET", e.Addrs.AdminHTTP, "/openapi.json", "", ""); code != 200 || !bytes.Contains(doc, []byte(":publish")) {
		t.Fatalf("ops /openapi.json: %d", code)
	}
	if code, _, body := e.rest("GET", e.Addrs.HTTP, "/v1/incidents/unknown-incident/status", patient, ""); code != 404 {
		t.Fatalf("unknown incident: %d %s", code, body)
	}
	if code, _, _ := e.rest("GET", e.Addrs.HTTP, "/v1/incidents/BAD_ID/status", patient, ""); code != 400 {
		t.Fatalf("malformed incident id: %d", code)
	}
}

// TestBadUploadLosesNothing: a roster with bad rows is rejected whole with
// row-level errors; nothing is staged and the visible version is unchanged.
func TestBadUploadLosesNothing(t *testing.T) {
	e, spec := startPublished(t)
	bad := csvOf(rosterV1()) + "patient-0100,infected,northland,\npatient-0101,affected,mars,\n"
	_, err := e.upload(spec, bad)
	st := grpcstatus.Convert(err)
	if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "row 36") {
		t.Fatalf("bad roster: %v", err)
	}
	if len(st.Details()) != 2 || errinfo.Of(err).GetReason() != errinfo.InvalidRoster || strings.Contains(fmt.Sprint(st.Details()), "patient-01") {
		t.Fatalf("details must name rows and fields, never values: %v", st.Details())
	}
	list, err := impactv1.NewSnapshotServiceClient(e.admin).ListSnapshots(testclient.WithToken(context.Background(), e.adminTk),
		&impactv1.ListSnapshotsRequest{IncidentId: demo.IncidentID})
	if err != nil {
		t.Fatal(err)
	}
	if list.GetVisibleVersion() != 1 || len(list.GetSnapshots()) != 1 {
		t.Fatalf("a rejected upload must stage nothing: %v", list)
	}
	// Publishing a version that does not exist is NOT_FOUND; an unknown
	// incident too.
	_, err = impactv1.NewSnapshotServiceClient(e.admin).PublishSnapshot(testclient.WithToken(context.Background(), e.adminTk),
		&impactv1.PublishSnapshotRequest{IncidentId: demo.IncidentID, Version: 9, ExpectedVisibleVersion: proto.Uint32(1)})
	if grpcstatus.Code(err) != codes.NotFound {
		t.Fatalf("publish of a missing version: %v", err)
	}
}

// TestStoreOutageFailsClosed: with the store gone, reads are UNAVAILABLE
// (503), never a status, and readiness goes NOT_SERVING.
func TestStoreOutageFailsClosed(t *testing.T) {
	e, _ := startPublished(t)
	_ = e.Store.Close()
	for _, s := range []string{sid(0), sid(39)} {
		code, hdr, body := e.rest("GET", e.Addrs.HTTP, "/v1/incidents/"+demo.IncidentID+"/status", e.Token(t, s), "")
		if code != 503 || hdr.Get("Retry-After") == "" || bytes.Contains(body, []byte("AFFECTED")) {
			t.Fatalf("%s with the store down: %d %s", s, code, body)
		}
		var eb struct{ Message string }
		_ = json.Unmarshal(body, &eb)
		if eb.Message != "service unavailable, retry later" {
			t.Fatalf("503 body: %s", body)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.Server.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("readiness stayed SERVING with the store down")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _, _ := e.rest("GET", e.Addrs.HTTP, "/readyz", "", ""); code != 503 {
		t.Fatalf("/readyz with the store down: %d", code)
	}
}

// TestRestoreNotices drives the outbox re-import over gRPC: lines already in
// the ledger are "present", a line that contradicts its version is refused
// with its record number.
func TestRestoreNotices(t *testing.T) {
	e, _ := startPublished(t)
	ctx := testclient.WithToken(context.Background(), e.adminTk)
	notices := impactv1.NewNoticeServiceClient(e.admin)
	var lines []*impactv1.RestoreNoticesRequest
	for i := 0; i < 5; i++ {
		r, err := notices.ClaimNotice(ctx, &impactv1.ClaimNoticeRequest{IncidentId: demo.IncidentID, SubjectId: sid(i), IdempotencyKey: "w:" + sid(i)})
		if err != nil {
			t.Fatal(err)
		}
		c := r.GetClaim()
		lines = append(lines, &impactv1.RestoreNoticesRequest{IncidentId: demo.IncidentID, SubjectId: sid(i), Version: c.GetVersion(),
			NoticeId: c.GetNoticeId(), Status: c.GetStatus(), NotifiedAt: c.GetNotifiedAt()})
	}
	restore := func(reqs []*impactv1.RestoreNoticesRequest) (*impactv1.RestoreNoticesResponse, error) {
		stream, err := notices.RestoreNotices(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range reqs {
			if err := stream.Send(r); err != nil {
				break
			}
		}
		return stream.CloseAndRecv()
	}
	resp, err := restore(lines)
	if err != nil || resp.GetPresent() != 5 || resp.GetRestored() != 0 {
		t.Fatalf("restore of present pins: %v %v", resp, err)
	}
	bad := proto.Clone(lines[3]).(*impactv1.RestoreNoticesRequest)
	bad.Status = impactv1.Status_UNDER_REVIEW
	_, err = restore(append(lines[:2:2], bad))
	if st := grpcstatus.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "record 3") {
		t.Fatalf("contradicting line: %v", err)
	}
	// Each restore is one audit event per incident, with its counts; the
	// one that ended on an invalid line says so.
	trail, err := impactv1.NewSnapshotServiceClient(e.admin).ListAuditEvents(ctx, &impactv1.ListAuditEventsRequest{IncidentId: demo.IncidentID})
	if err != nil {
		t.Fatal(err)
	}
	var restores []string
	for _, ev := range trail.GetEvents() {
		if ev.GetAction() == "restore" {
			restores = append(restores, ev.GetOutcome()+": "+ev.GetDetail())
		}
	}
	if want := []string{"ok: 5 lines: restored 0, present 5, kept newer 0", "error: 2 lines: restored 0, present 2, kept newer 0"}; !slices.Equal(restores, want) {
		t.Fatalf("restore events %q, want %q", restores, want)
	}
	// A patient token cannot restore.
	stream, err := notices.RestoreNotices(testclient.WithToken(context.Background(), e.Token(t, sid(0))))
	if err == nil {
		_, err = stream.CloseAndRecv()
	}
	if grpcstatus.Code(err) != codes.PermissionDenied {
		t.Fatalf("patient restoring: %v", err)
	}
}
