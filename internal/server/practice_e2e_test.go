package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/practice"
	"github.com/impact-health/impact/internal/ratelimit"
	"github.com/impact-health/impact/internal/server"
	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/testutil/impacttest"
	"github.com/impact-health/impact/internal/testutil/testclient"
)

// bigMsgs lets the test clients receive a check of 10,000 patients.
var bigMsgs = grpc.MaxCallRecvMsgSize(64 << 20)

func startPracticeEnv(t *testing.T, o impacttest.Options) *env {
	t.Helper()
	if o.Config.RequestTimeout == 0 {
		o.Config.RequestTimeout = 20 * time.Second
	}
	o.PracticeOptions = append(o.PracticeOptions, practice.WithTallyTTL(0)) // count on every call
	e := startEnvWith(t, o, clientCreds{})
	e.WaitReady(t)
	return e
}

func practiceID(i int) string { return fmt.Sprintf("GP-%02d", i%7) } // as csvOf names them

func (e *env) checkPatients(practiceTok string, ids []string) (*impactv1.PatientCheck, error) {
	r, err := impactv1.NewPracticeServiceClient(e.public).CheckPatients(testclient.WithToken(context.Background(), practiceTok),
		&impactv1.CheckPatientsRequest{IncidentId: demo.IncidentID, SubjectIds: ids}, bigMsgs)
	return r.GetCheck(), err
}

func (e *env) practiceImpact(practiceTok string) (*impactv1.GetPracticeImpactResponse, error) {
	return impactv1.NewPracticeServiceClient(e.public).GetPracticeImpact(testclient.WithToken(context.Background(), practiceTok),
		&impactv1.GetPracticeImpactRequest{IncidentId: demo.IncidentID})
}

// sameAsPatient fails unless what the practice is told about a patient is
// what the patient's own status answer says.
func sameAsPatient(t *testing.T, e *env, p *impactv1.PracticePatient) {
	t.Helper()
	g, err := impactv1.NewStatusServiceClient(e.public).GetMyStatus(testclient.WithToken(context.Background(), e.Token(t, p.GetSubjectId())),
		&impactv1.GetMyStatusRequest{IncidentId: demo.IncidentID})
	if err != nil {
		t.Fatalf("%s's own status: %v", p.GetSubjectId(), err)
	}
	a := g.GetAnswer()
	if p.GetStatus() != a.GetStatus() || p.GetVisibleStatus() != a.GetVisibleStatus() || p.GetUpdatePending() != a.GetUpdatePending() ||
		p.GetNotifiedVersion() != a.GetNotifiedVersion() || p.GetNoticeId() != a.GetNoticeId() ||
		!proto.Equal(p.GetNotifiedAt(), a.GetNotifiedAt()) || len(p.GetCohorts()) != len(a.GetCohorts()) {
		t.Fatalf("practice told %v, the patient's app says %v", p, a)
	}
	for i, c := range p.GetCohorts() {
		if !proto.Equal(c, a.GetCohorts()[i]) {
			t.Fatalf("cohort %d: practice told %v, the app says %v", i, c, a.GetCohorts()[i])
		}
	}
}

// timelinePin is what the ledger holds for a subject in the practice
// timeline: the version and status of its latest notice.
type timelinePin struct {
	version uint32
	status  impactv1.Status
}

// checkPracticesAgree checks, for every practice of the timeline, that
// CheckPatients of every id (and unknown ones) answers exactly the
// practice's patients (visible record or pinned record names it), each as
// its own app does, and that GetPracticeImpact's counts follow from the
// roster and the ledger.
func checkPracticesAgree(t *testing.T, e *env, step string, visible map[string]row, version uint32, pins map[string]timelinePin, cohorts []string) {
	t.Helper()
	ids := []string{"unknown-1"}
	for i := 0; i < 40; i++ {
		ids = append(ids, sid(i))
	}
	ids = append(ids, "unknown-2")
	for p := 0; p < 7; p++ {
		tok := e.PracticeToken(t, "dr-"+practiceID(p), practiceID(p))
		chk, err := e.checkPatients(tok, ids)
		if err != nil {
			t.Fatalf("%s: %s: %v", step, practiceID(p), err)
		}
		var want, got []string
		for i := 0; i < 40; i++ {
			_, in := visible[sid(i)]
			pin, pinned := pins[sid(i)]
			if i%7 == p && (in || pinned && pin.status != impactv1.Status_NOT_AFFECTED) {
				want = append(want, sid(i))
			}
		}
		for _, pp := range chk.GetPatients() {
			got = append(got, pp.GetSubjectId())
			sameAsPatient(t, e, pp)
		}
		if !slices.Equal(got, want) || chk.GetVersion() != version || chk.GetChecked() != uint32(len(ids)) {
			t.Fatalf("%s: %s told about %v at v%d (checked %d), want %v at v%d", step, practiceID(p), got, chk.GetVersion(), chk.GetChecked(), want, version)
		}

		im, err := e.practiceImpact(tok)
		if err != nil {
			t.Fatalf("%s: %s impact: %v", step, practiceID(p), err)
		}
		type counts struct{ affected, review, notified uint32 }
		perCohort := map[string]*counts{}
		var total counts
		var corrections uint32
		for i := 0; i < 40; i++ {
			if i%7 != p {
				continue
			}
			r, in := visible[sid(i)]
			pin, pinned := pins[sid(i)]
			if !in {
				if pinned && pin.status != impactv1.Status_NOT_AFFECTED {
					corrections++
				}
				continue
			}
			notified := pinned && pin.status == apiStatus[r.status]
			add := func(c *counts) {
				if r.status == store.Affected {
					c.affected++
				} else {
					c.review++
				}
				if notified {
					c.notified++
				}
			}
			add(&total)
			for _, c := range strings.Split(r.cohorts, ";") {
				if c == "" {
					continue
				}
				if perCohort[c] == nil {
					perCohort[c] = &counts{}
				}
				add(perCohort[c])
			}
		}
		if im.GetVersion() != version || im.GetPracticeId() != practiceID(p) || im.GetAffected() != (total.affected+total.review > 0) ||
			im.GetAffectedPatients() != total.affected || im.GetUnderReviewPatients() != total.review || im.GetNotified() != total.notified ||
			im.GetCorrectionsDue() != corrections || im.GetDue() != total.affected+total.review-total.notified+corrections {
			t.Fatalf("%s: %s impact %v, want totals %+v, corrections %d", step, practiceID(p), im, total, corrections)
		}
		if len(im.GetCohorts()) != len(cohorts) {
			t.Fatalf("%s: cohorts %v", step, im.GetCohorts())
		}
		for j, ci := range im.GetCohorts() {
			w := perCohort[cohorts[j]]
			if w == nil {
				w = &counts{}
			}
			if ci.GetCohortId() != cohorts[j] || ci.GetAffected() != w.affected || ci.GetUnderReview() != w.review ||
				ci.GetNotified() != w.notified || ci.GetDue() != w.affected+w.review-w.notified {
				t.Fatalf("%s: %s cohort %v, want %+v", step, practiceID(p), ci, w)
			}
		}
	}
	// REST gives the same check as gRPC.
	tok := e.PracticeToken(t, "dr-web", practiceID(3))
	body, _ := json.Marshal(map[string]any{"subject_ids": ids})
	code, _, resp := e.rest("POST", e.Addrs.HTTP, "/v1/incidents/"+demo.IncidentID+"/practice/patients:check", tok, string(body))
	if code != 200 {
		t.Fatalf("%s: REST check: %d %s", step, code, resp)
	}
	var viaREST impactv1.PatientCheck
	if err := protojson.Unmarshal(resp, &viaREST); err != nil {
		t.Fatal(err)
	}
	viaGRPC, err := e.checkPatients(tok, ids)
	if err != nil || !proto.Equal(&viaREST, viaGRPC) {
		t.Fatalf("%s: REST %v, gRPC %v (%v)", step, &viaREST, viaGRPC, err)
	}
	code, _, resp = e.rest("GET", e.Addrs.HTTP, "/v1/incidents/"+demo.IncidentID+"/practice", tok, "")
	var imREST impactv1.GetPracticeImpactResponse
	if err := protojson.Unmarshal(resp, &imREST); code != 200 || err != nil || imREST.GetVersion() != version || imREST.GetPracticeId() != practiceID(3) {
		t.Fatalf("%s: REST impact: %d %s (%v)", step, code, resp, err)
	}
}

// TestPracticeTimeline is the MMH timeline seen by the practices: v1, a
// wave, v2 with a correction, a second wave, a rollback. At every step each
// practice's answers agree with each of its patients' own.
func TestPracticeTimeline(t *testing.T) {
	e := startPracticeEnv(t, impacttest.Options{})
	ctx := testclient.WithToken(context.Background(), e.adminTk)
	spec := testclient.DemoSpec(t)
	notices := impactv1.NewNoticeServiceClient(e.admin)
	pins := map[string]timelinePin{}
	cohorts := []string{"northland", "referrals", "uploads"}
	claim := func(s, key string) {
		t.Helper()
		r, err := notices.ClaimNotice(ctx, &impactv1.ClaimNoticeRequest{IncidentId: demo.IncidentID, SubjectId: s, IdempotencyKey: key})
		if err != nil {
			t.Fatal(err)
		}
		if c := r.GetClaim(); c.GetAction() == impactv1.ClaimAction_SEND {
			pins[s] = timelinePin{c.GetVersion(), c.GetStatus()}
		}
	}

	if _, err := e.upload(spec, csvOf(rosterV1())); err != nil {
		t.Fatal(err)
	}
	// Practices get their list ahead of the patients: before any publish,
	// nothing; after it, every patient though none was notified.
	if _, err := e.practiceImpact(e.PracticeToken(t, "dr", "GP-00")); status.Code(err) != codes.NotFound {
		t.Fatalf("impact before any publish: %v, want NotFound", err)
	}
	e.publish(1, 0)
	checkPracticesAgree(t, e, "v1", rosterV1(), 1, pins, cohorts)

	for i := 0; i < 30; i += 2 {
		claim(sid(i), "wave1:"+sid(i))
	}
	checkPracticesAgree(t, e, "v1 after wave 1", rosterV1(), 1, pins, cohorts)

	if _, err := e.upload(spec, csvOf(rosterV2())); err != nil {
		t.Fatal(err)
	}
	e.publish(2, 1)
	// patient-0006 was emailed as GP-06's patient and is now not affected:
	// GP-06 still sees it, with the update pending.
	checkPracticesAgree(t, e, "v2 before wave 2", rosterV2(), 2, pins, cohorts)
	chk, err := e.checkPatients(e.PracticeToken(t, "dr", "GP-06"), []string{sid(6)})
	if err != nil || len(chk.GetPatients()) != 1 || !chk.GetPatients()[0].GetUpdatePending() ||
		chk.GetPatients()[0].GetStatus() != impactv1.Status_AFFECTED || chk.GetPatients()[0].GetVisibleStatus() != impactv1.Status_NOT_AFFECTED {
		t.Fatalf("corrected patient seen by its practice: %v, %v", chk, err)
	}

	for i := 0; i < 40; i++ {
		if _, in := rosterV2()[sid(i)]; in || i == 6 {
			claim(sid(i), "wave2:"+sid(i))
		}
	}
	checkPracticesAgree(t, e, "v2 after wave 2", rosterV2(), 2, pins, cohorts)

	// The rollback's corrections reviewed and accepted first.
	back, err := impactv1.NewSnapshotServiceClient(e.admin).DiffSnapshots(ctx, &impactv1.DiffSnapshotsRequest{IncidentId: demo.IncidentID, Version: 1, Against: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := impactv1.NewSnapshotServiceClient(e.admin).RollbackSnapshot(ctx, &impactv1.RollbackSnapshotRequest{
		IncidentId: demo.IncidentID, ToVersion: 1, ExpectedVisibleVersion: proto.Uint32(2),
		AcceptCorrections: back.GetNotifiedChanges().GetTotal()}); err != nil {
		t.Fatal(err)
	}
	checkPracticesAgree(t, e, "rollback to v1", rosterV1(), 3, pins, cohorts)

	// An erased patient is absent from its practice's answers.
	if _, err := impactv1.NewSubjectServiceClient(e.admin).EraseSubject(ctx, &impactv1.EraseSubjectRequest{SubjectId: sid(0)}); err != nil {
		t.Fatal(err)
	}
	chk, err = e.checkPatients(e.PracticeToken(t, "dr", "GP-00"), []string{sid(0), sid(7)})
	if err != nil || len(chk.GetPatients()) != 1 || chk.GetPatients()[0].GetSubjectId() != sid(7) {
		t.Fatalf("after erasing patient-0000: %v, %v", chk, err)
	}

	// The ops table agrees with the practices.
	st, err := impactv1.NewPracticeStatsServiceClient(e.admin).GetPracticeStats(ctx, &impactv1.GetPracticeStatsRequest{IncidentId: demo.IncidentID})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.GetPractices()) != 7 || st.GetVisibleVersion() != 3 {
		t.Fatalf("practice stats: %v", st)
	}
	for _, row := range st.GetPractices() {
		im, err := e.practiceImpact(e.PracticeToken(t, "dr", row.GetPracticeId()))
		if err != nil {
			t.Fatal(err)
		}
		if row.GetAffected() != im.GetAffectedPatients() || row.GetUnderReview() != im.GetUnderReviewPatients() ||
			row.GetNotified() != im.GetNotified() || row.GetDue() != im.GetDue() || row.GetCorrectionsDue() != im.GetCorrectionsDue() {
			t.Fatalf("ops row %v, practice sees %v", row, im)
		}
	}

	// Privacy: no subject id in the logs; the audit trail has the calls,
	// with counts and practices, never an id.
	logs := e.logs.String()
	for i := 0; i < 40; i++ {
		if strings.Contains(logs, sid(i)) {
			t.Fatalf("logs contain %s", sid(i))
		}
	}
	ev, err := impactv1.NewSnapshotServiceClient(e.admin).ListAuditEvents(ctx, &impactv1.ListAuditEventsRequest{IncidentId: demo.IncidentID, PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	checks, impacts := 0, 0
	for _, x := range ev.GetEvents() {
		for i := 0; i < 40; i++ {
			if strings.Contains(x.GetDetail(), sid(i)) {
				t.Fatalf("audit event names a subject: %v", x)
			}
		}
		switch x.GetAction() {
		case practice.AuditCheck:
			checks++
			if checks == 1 && (x.GetActor() != "dr-GP-00" || x.GetDetail() != "practice GP-00: 42 ids checked, 5 found" || x.GetOutcome() != "ok") {
				t.Errorf("first check event: %v", x)
			}
		case practice.AuditImpact:
			impacts++
		}
	}
	if checks < 5*8 || impacts < 5*7 {
		t.Errorf("audit: %d check and %d impact events", checks, impacts)
	}
}

// TestPracticePropertyRandom: over random rosters of random practices,
// with random notices and a second version moving patients between
// practices, no practice is ever told about a subject of another practice,
// and every one of its own is there.
func TestPracticePropertyRandom(t *testing.T) {
	e := startPracticeEnv(t, impacttest.Options{})
	ctx := testclient.WithToken(context.Background(), e.adminTk)
	spec := testclient.DemoSpec(t)
	rng := rand.New(rand.NewPCG(9, 9))
	const n, practices = 300, 11
	type rec struct {
		in       bool
		practice string
		status   string
	}
	pinnedAs := map[string]string{} // subject -> practice of its pinned record
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, fmt.Sprintf("rnd-%03d", i))
	}
	version := uint32(0)
	for round := 0; round < 3; round++ {
		roster := map[string]rec{}
		var b strings.Builder
		b.WriteString("subject_id,status,cohorts,practice_id\n")
		for _, id := range ids {
			if rng.IntN(4) == 0 {
				continue // not affected at this version
			}
			r := rec{in: true, status: "affected"}
			if rng.IntN(5) == 0 {
				r.status = "under_review"
			}
			if rng.IntN(10) != 0 {
				r.practice = fmt.Sprintf("P%02d", rng.IntN(practices))
			}
			roster[id] = r
			cohort := "northland"
			if r.status == "under_review" {
				cohort = ""
			}
			fmt.Fprintf(&b, "%s,%s,%s,%s\n", id, r.status, cohort, r.practice)
		}
		if _, err := e.upload(spec, b.String()); err != nil {
			t.Fatal(err)
		}
		e.publish(version+1, version)
		version++
		for _, id := range ids {
			if rng.IntN(3) != 0 {
				continue
			}
			r, err := impactv1.NewNoticeServiceClient(e.admin).ClaimNotice(ctx, &impactv1.ClaimNoticeRequest{IncidentId: demo.IncidentID, SubjectId: id, IdempotencyKey: fmt.Sprintf("r%d:%s", round, id)})
			if err != nil {
				t.Fatal(err)
			}
			if r.GetClaim().GetAction() == impactv1.ClaimAction_SEND {
				pinnedAs[id] = roster[id].practice // "" for a correction: names no practice
			}
		}
		for p := 0; p < practices; p++ {
			pid := fmt.Sprintf("P%02d", p)
			chk, err := e.checkPatients(e.PracticeToken(t, "dr", pid), append(slices.Clone(ids), "nobody"))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for _, pp := range chk.GetPatients() {
				id := pp.GetSubjectId()
				got[id] = true
				if roster[id].practice != pid && pinnedAs[id] != pid {
					t.Fatalf("round %d: %s told about %s, of practice %q (pinned as %q)", round, pid, id, roster[id].practice, pinnedAs[id])
				}
			}
			for _, id := range ids {
				if (roster[id].practice == pid || pinnedAs[id] == pid) && !got[id] {
					t.Fatalf("round %d: %s not told about its patient %s", round, pid, id)
				}
			}
		}
	}
}

// TestPracticeAccess: practice tokens reach PracticeService only, patient
// and ops tokens are refused there, a practice token without a valid
// practice_id is refused like any bad token.
func TestPracticeAccess(t *testing.T) {
	e, _ := startPublished(t)
	practiceTok := e.PracticeToken(t, "dr-a", "GP-01")
	check := &impactv1.CheckPatientsRequest{IncidentId: demo.IncidentID, SubjectIds: []string{sid(1)}}
	pc := impactv1.NewPracticeServiceClient(e.public)
	for name, tok := range map[string]string{
		"patient": e.Token(t, sid(1)),
		"admin":   e.Token(t, "ops", auth.ScopeAdmin, auth.ScopeNotify),
	} {
		if _, err := pc.CheckPatients(testclient.WithToken(context.Background(), tok), check); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s token on CheckPatients: %v", name, err)
		}
		if code, _, body := e.rest("GET", e.Addrs.HTTP, "/v1/incidents/"+demo.IncidentID+"/practice", tok, ""); code != 403 || !strings.Contains(string(body), "permission denied") {
			t.Errorf("%s token on REST practice: %d %s", name, code, body)
		}
	}
	if _, err := impactv1.NewStatusServiceClient(e.public).GetMyStatus(testclient.WithToken(context.Background(), practiceTok),
		&impactv1.GetMyStatusRequest{IncidentId: demo.IncidentID}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("practice token on StatusService: %v", err)
	}
	if code, _, _ := e.rest("GET", e.Addrs.HTTP, "/v1/status", practiceTok, ""); code != 403 {
		t.Errorf("practice token on REST status: %d", code)
	}
	if _, err := impactv1.NewPracticeStatsServiceClient(e.admin).GetPracticeStats(testclient.WithToken(context.Background(), practiceTok),
		&impactv1.GetPracticeStatsRequest{IncidentId: demo.IncidentID}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("practice token on the ops table: %v", err)
	}
	// The practice scope without a practice_id claim: UNAUTHENTICATED, the
	// same 401 as any bad token.
	noClaim := e.Token(t, "dr-b", auth.ScopePractice)
	if _, err := pc.CheckPatients(testclient.WithToken(context.Background(), noClaim), check); status.Code(err) != codes.Unauthenticated {
		t.Errorf("practice token without practice_id: %v", err)
	}
	code, _, body := e.rest("GET", e.Addrs.HTTP, "/v1/incidents/"+demo.IncidentID+"/practice", noClaim, "")
	_, _, garbage := e.rest("GET", e.Addrs.HTTP, "/v1/incidents/"+demo.IncidentID+"/practice", "not-a-token", "")
	if code != 401 || string(body) != string(garbage) {
		t.Errorf("REST without practice_id: %d %s (bad token: %s)", code, body, garbage)
	}
	if _, err := pc.CheckPatients(testclient.WithToken(context.Background(), practiceTok), check); err != nil {
		t.Errorf("practice token: %v", err)
	}
}

// TestPracticeBadInput: refusals name the limit or the position, never an
// id; an unknown incident is NOT_FOUND; a store failure UNAVAILABLE.
func TestPracticeBadInput(t *testing.T) {
	e, _ := startPublished(t)
	tok := e.PracticeToken(t, "dr", "GP-01")
	many := make([]string, practice.MaxBatch+1)
	for i := range many {
		many[i] = fmt.Sprintf("secret-id-%d", i)
	}
	for name, tc := range map[string]struct {
		ids  []string
		want string
	}{
		"over the limit": {many, "at most 10000 ids"},
		"empty list":     {nil, "at least 1 id"},
		"empty id":       {[]string{"secret-a", "secret-b", "secret-c", ""}, "position 3 is empty"},
		"duplicate":      {[]string{"secret-a", "secret-b", "secret-a"}, "position 2 repeats position 0"},
		"over-long":      {[]string{"secret-a", "secret-" + strings.Repeat("x", 128)}, "position 1 is longer than 128 bytes"},
	} {
		_, err := e.checkPatients(tok, tc.ids)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: %v, want INVALID_ARGUMENT naming %q and no id", name, err, tc.want)
		}
		body, _ := json.Marshal(map[string]any{"subject_ids": tc.ids})
		code, _, resp := e.rest("POST", e.Addrs.HTTP, "/v1/incidents/"+demo.IncidentID+"/practice/patients:check", tok, string(body))
		if code != 400 || !strings.Contains(string(resp), tc.want) || strings.Contains(string(resp), "secret") {
			t.Errorf("%s REST: %d %s", name, code, resp)
		}
	}
	// The stream refuses a bad batch too.
	stream, err := impactv1.NewPracticeServiceClient(e.public).CheckPatientsStream(testclient.WithToken(context.Background(), tok))
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&impactv1.CheckPatientsStreamRequest{IncidentId: demo.IncidentID, SubjectIds: []string{"secret-a", "secret-a"}})
	if _, err := stream.Recv(); status.Code(err) != codes.InvalidArgument || strings.Contains(err.Error(), "secret") {
		t.Errorf("stream with a duplicate: %v", err)
	}
	pc := impactv1.NewPracticeServiceClient(e.public)
	if _, err := pc.CheckPatients(testclient.WithToken(context.Background(), tok), &impactv1.CheckPatientsRequest{IncidentId: "no-such-incident", SubjectIds: []string{"a"}}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown incident: %v", err)
	}
	if _, err := pc.GetPracticeImpact(testclient.WithToken(context.Background(), tok), &impactv1.GetPracticeImpactRequest{IncidentId: "no-such-incident"}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown incident impact: %v", err)
	}
	// A practice not in the roster is told it is not affected, nothing else.
	im, err := e.practiceImpact(e.PracticeToken(t, "dr", "GP-99"))
	if err != nil || im.GetAffected() || im.GetAffectedPatients() != 0 || im.GetDue() != 0 {
		t.Errorf("practice with no patients: %v, %v", im, err)
	}
	// Store down: UNAVAILABLE, never a partial list.
	_ = e.Store.Close()
	if chk, err := e.checkPatients(tok, []string{sid(1), sid(8)}); status.Code(err) != codes.Unavailable || chk != nil {
		t.Errorf("store down: %v, %v", chk, err)
	}
	if _, err := e.practiceImpact(tok); status.Code(err) != codes.Unavailable {
		t.Errorf("store down impact: %v", err)
	}
}

// uploadFast uploads a large roster in big chunks.
func (e *env) uploadFast(spec []byte, roster string) {
	e.t.Helper()
	ctx := testclient.WithToken(context.Background(), e.adminTk)
	if _, err := testclient.Upload(ctx, impactv1.NewSnapshotServiceClient(e.admin), demo.IncidentID, spec, []byte(roster), 1<<20); err != nil {
		e.t.Fatal(err)
	}
}

// TestPracticeLargeRegister: 10,000 ids in one call and 100,000 by the
// stream; the per-practice limit then refuses more.
func TestPracticeLargeRegister(t *testing.T) {
	if testing.Short() {
		t.Skip("large register")
	}
	keys, err := ratelimit.NewHasher([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	lim, err := ratelimit.NewLocal(ratelimit.Limit{Rate: 110_000, Period: time.Hour, Burst: 110_000})
	if err != nil {
		t.Fatal(err)
	}
	e := startPracticeEnv(t, impacttest.Options{Config: server.Config{RequestTimeout: 60 * time.Second}, PracticeLimiter: lim, RateKeys: keys})
	var b strings.Builder
	b.WriteString("subject_id,status,cohorts,practice_id\n")
	const own = 30_000
	for i := 0; i < 2*own; i++ {
		p := "BIG"
		if i%2 == 1 {
			p = "OTHER"
		}
		fmt.Fprintf(&b, "reg-%06d,affected,northland,%s\n", i, p)
	}
	e.uploadFast(testclient.DemoSpec(t), b.String())
	e.publish(1, 0)
	tok := e.PracticeToken(t, "dr", "BIG")

	batch := make([]string, practice.MaxBatch)
	for i := range batch {
		batch[i] = fmt.Sprintf("reg-%06d", i)
	}
	chk, err := e.checkPatients(tok, batch)
	if err != nil {
		t.Fatal(err)
	}
	if chk.GetChecked() != practice.MaxBatch || len(chk.GetPatients()) != practice.MaxBatch/2 {
		t.Fatalf("10,000 ids: checked %d, found %d", chk.GetChecked(), len(chk.GetPatients()))
	}

	stream, err := impactv1.NewPracticeServiceClient(e.public).CheckPatientsStream(testclient.WithToken(context.Background(), tok), bigMsgs)
	if err != nil {
		t.Fatal(err)
	}
	const total = 100_000
	go func() {
		for lo := 0; lo < total; lo += practice.MaxBatch {
			ids := make([]string, practice.MaxBatch)
			for i := range ids {
				ids[i] = fmt.Sprintf("reg-%06d", lo+i) // beyond 60,000: unknown
			}
			if err := stream.Send(&impactv1.CheckPatientsStreamRequest{IncidentId: demo.IncidentID, SubjectIds: ids}); err != nil {
				return
			}
		}
		_ = stream.CloseSend()
	}()
	found, checked := 0, 0
	for range total / practice.MaxBatch {
		r, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		checked += int(r.GetCheck().GetChecked())
		for _, p := range r.GetCheck().GetPatients() {
			var n int
			if _, err := fmt.Sscanf(p.GetSubjectId(), "reg-%06d", &n); err != nil || n%2 != 0 || n >= 2*own {
				t.Fatalf("stream told about %s", p.GetSubjectId())
			}
			found++
		}
	}
	if checked != total || found != own {
		t.Fatalf("stream: checked %d, found %d; want %d, %d", checked, found, total, own)
	}
	// 110,000 ids allowed per hour: the next full batch is refused.
	if _, err := e.checkPatients(tok, batch); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("over the practice's limit: %v", err)
	}
	// Another practice has its own budget.
	if _, err := e.checkPatients(e.PracticeToken(t, "dr", "OTHER"), batch); err != nil {
		t.Fatal(err)
	}
}

// checkPracticeRoutes calls the practice routes of both REST listeners,
// answers and errors, validating each against the listener's document
// (TestRESTMatchesOpenAPI).
func checkPracticeRoutes(t *testing.T, e *env, patient, ops *servedDoc) {
	t.Helper()
	inc := "/v1/incidents/" + demo.IncidentID
	tok := e.PracticeToken(t, "dr", "GP-01")
	for _, c := range []struct {
		d                       *servedDoc
		method, path, tok, body string
		want                    int
	}{
		{patient, "GET", inc + "/practice", tok, "", 200},
		{patient, "GET", "/v1/incidents/unknown-incident/practice", tok, "", 404},
		{patient, "GET", inc + "/practice", "", "", 401},
		{patient, "POST", inc + "/practice/patients:check", tok, `{"subject_ids":["` + sid(8) + `","nobody"]}`, 200},
		{patient, "POST", inc + "/practice/patients:check", tok, `{"subject_ids":["a","a"]}`, 400},
		{patient, "POST", inc + "/practice/patients:check", e.Token(t, sid(8)), `{"subject_ids":["a"]}`, 403},
		{ops, "GET", inc + "/practices/stats", e.adminTk, "", 200},
		{ops, "GET", "/v1/incidents/BAD_ID/practices/stats", e.adminTk, "", 400},
	} {
		if code, _, b := c.d.check(t, e, c.method, c.path, c.tok, c.body); code != c.want {
			t.Fatalf("%s %s %s: %d %s, want %d", c.method, c.path, c.body, code, b, c.want)
		}
	}
}
