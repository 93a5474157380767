package status_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/testutil/embeddedtest"
)

const incident = "test-2025-12"

const spec = `
incident: {id: test-2025-12, title: Test breach}
cohorts:
  - id: northland
    title: Northland discharge summaries
    data_categories: [discharge_summary]
    support_contact: "0800 000 011"
    notice: {subject: Northland affected, body: Your discharge summaries were taken.}
  - id: referrals
    title: Referral records
    data_categories: [referral_letter]
    support_contact: "0800 000 012"
    notice: {subject: Referrals affected, body: Your referral records were taken.}
under_review_notice: {subject: Still checking, body: We are still checking.}
not_affected_notice: {subject: Not affected, body: Your information was not affected.}
`

type fixture struct {
	st    store.Store
	snaps *snapshot.Service
	svc   *status.Service
	keyer *auth.Keyer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st := embeddedtest.Open(t)
	keyer, err := auth.NewKeyer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	cat := snapshot.NewCatalog(st, 16)
	return &fixture{
		st: st,
		// No fence grace after a publish: TestRestoreFromOutbox restores
		// pins at the old version right after one (the grace would refuse
		// them for its duration; that refusal is tested in snapshot).
		snaps: snapshot.NewService(st, keyer, snapshot.WithCatalog(cat), snapshot.WithFenceGrace(0)),
		svc:   status.New(st, cat, keyer),
		keyer: keyer,
	}
}

// stage uploads a roster given as "subject,status,cohorts" lines.
func (f *fixture) stage(t *testing.T, rows ...string) uint64 {
	t.Helper()
	csv := "subject_id,status,cohorts,practice_id\n" + strings.Join(rows, "\n") + "\n"
	info, err := f.snaps.Upload(context.Background(), snapshot.UploadRequest{
		Incident: incident, Spec: []byte(spec), Actor: "ops",
		Roster: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(csv)), nil },
	})
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	return info.Version
}

func (f *fixture) publish(t *testing.T, rows ...string) uint64 {
	t.Helper()
	v := f.stage(t, rows...)
	head, err := f.st.Head(context.Background(), incident)
	if err != nil {
		t.Fatal(err)
	}
	f.publishReviewed(t, v, head.Visible)
	return v
}

func (f *fixture) status(t *testing.T, subject string, atLeast uint64) status.Answer {
	t.Helper()
	a, err := f.svc.Status(context.Background(), incident, subject, atLeast)
	if err != nil {
		t.Fatalf("status(%s): %v", subject, err)
	}
	return a
}

func (f *fixture) claim(t *testing.T, subject, idem string) status.Claim {
	t.Helper()
	c, err := f.svc.Claim(context.Background(), incident, subject, idem)
	if err != nil {
		t.Fatalf("claim(%s): %v", subject, err)
	}
	return c
}

func TestUnknownAndUnpublishedIncidentsAreNotFound(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.svc.Status(ctx, "no-such-incident", "alice", 0); !errors.Is(err, status.ErrNotFound) {
		t.Fatalf("unknown incident: got %v, want ErrNotFound", err)
	}
	f.stage(t, "alice,affected,northland,")
	if _, err := f.svc.Status(ctx, incident, "alice", 0); !errors.Is(err, status.ErrNotFound) {
		t.Fatalf("staged-only incident: got %v, want ErrNotFound (staged versions are invisible)", err)
	}
	if _, err := f.svc.Claim(ctx, incident, "alice", "k"); !errors.Is(err, status.ErrNotFound) {
		t.Fatalf("claim on unpublished incident: got %v, want ErrNotFound", err)
	}
	if as, err := f.svc.Statuses(ctx, "alice"); err != nil || len(as) != 0 {
		t.Fatalf("Statuses lists only published incidents: %v %v", as, err)
	}
}

func TestStatusAnswers(t *testing.T) {
	f := newFixture(t)
	v := f.publish(t, "alice,affected,referrals;northland,GP-1", "bob,under_review,,")

	a := f.status(t, "alice", 0)
	if a.Status != store.Affected || a.VisibleStatus != store.Affected || a.Version != v || a.UpdatePending {
		t.Fatalf("alice: %+v", a)
	}
	if len(a.Cohorts) != 2 || a.Cohorts[0].ID != "northland" || a.Cohorts[1].ID != "referrals" {
		t.Fatalf("alice cohorts in spec order: %+v", a.Cohorts)
	}
	// The first cohort in spec order gives the notice and the support contact.
	if a.Notice.Subject != "Northland affected" || a.Notice.SupportContact != "0800 000 011" {
		t.Fatalf("alice notice: %+v", a.Notice)
	}
	if a.NoticeID != "" || a.NotifiedVersion != 0 {
		t.Fatalf("alice was never notified: %+v", a)
	}

	b := f.status(t, "bob", 0)
	if b.Status != store.UnderReview || b.Notice.SupportContact != "" || b.Notice.Subject != "Still checking" {
		t.Fatalf("bob: %+v", b)
	}
	// ASVS 6.3.8: an unknown subject looks exactly like a not-affected one.
	c := f.status(t, "carol", 0)
	if c.Status != store.NotAffected || c.Notice.SupportContact != "" || len(c.Cohorts) != 0 || c.Version != v {
		t.Fatalf("carol: %+v", c)
	}
	d := f.status(t, "dave-never-existed", 0)
	c.Incident, d.Incident = "", ""
	if fmt.Sprintf("%+v", c) != fmt.Sprintf("%+v", d) {
		t.Fatalf("absent subjects must be indistinguishable:\n%+v\n%+v", c, d)
	}
}

func TestAtLeastVersion(t *testing.T) {
	f := newFixture(t)
	v1 := f.publish(t, "alice,affected,northland,")
	if a := f.status(t, "alice", v1); a.Version != v1 {
		t.Fatalf("at_least = visible: %+v", a)
	}
	_, err := f.svc.Status(context.Background(), incident, "alice", v1+1)
	if !errors.Is(err, status.ErrVersionAhead) {
		t.Fatalf("at_least beyond the newest published version: got %v, want ErrVersionAhead", err)
	}
	// A staged but unpublished version does not count as published.
	v2 := f.stage(t, "alice,under_review,,")
	if _, err := f.svc.Status(context.Background(), incident, "alice", v2); !errors.Is(err, status.ErrVersionAhead) {
		t.Fatalf("at_least = staged version: got %v, want ErrVersionAhead", err)
	}
}

func TestClaimDecisionsAndIdempotency(t *testing.T) {
	f := newFixture(t)
	v1 := f.publish(t, "alice,affected,northland,", "bob,under_review,,")

	first := f.claim(t, "alice", "wave1:alice")
	if first.Action != status.ActionSend || first.Version != v1 || first.NoticeID == "" || first.Status != store.Affected {
		t.Fatalf("first claim: %+v", first)
	}
	if !strings.Contains(first.Notice.Body, first.NoticeID) || !strings.Contains(first.Notice.Body, fmt.Sprintf("version %d", v1)) {
		t.Fatalf("the notice footer states notice id and version: %q", first.Notice.Body)
	}
	// Same idempotency key: the same answer, nothing new.
	again := f.claim(t, "alice", "wave1:alice")
	if fmt.Sprintf("%+v", again) != fmt.Sprintf("%+v", first) {
		t.Fatalf("replay differs:\n%+v\n%+v", again, first)
	}
	// Another key: already sent, same notice.
	other := f.claim(t, "alice", "wave2:alice")
	if other.Action != status.ActionAlreadySent || other.NoticeID != first.NoticeID {
		t.Fatalf("second key: %+v", other)
	}
	// The app now shows exactly what the email said.
	a := f.status(t, "alice", 0)
	if a.NoticeID != first.NoticeID || a.NotifiedVersion != v1 || a.Notice != first.Notice || !a.NotifiedAt.Equal(first.NotifiedAt) {
		t.Fatalf("app vs email:\napp   %+v\nemail %+v", a, first)
	}
	// Never notified and not affected: nothing is due, nothing is pinned.
	none := f.claim(t, "carol", "wave1:carol")
	if none.Action != status.ActionNone || none.Version != v1 || none.NoticeID != "" {
		t.Fatalf("not affected: %+v", none)
	}
	if c := f.status(t, "carol", 0); c.NotifiedVersion != 0 {
		t.Fatalf("a NONE claim must not pin: %+v", c)
	}
	if u := f.claim(t, "bob", "wave1:bob"); u.Action != status.ActionSend || u.Status != store.UnderReview || u.Notice.SupportContact != "" {
		t.Fatalf("under review: %+v", u)
	}
	for _, bad := range [][2]string{{"", "k"}, {"alice", ""}, {strings.Repeat("x", 129), "k"}, {"alice", strings.Repeat("k", 257)}} {
		if _, err := f.svc.Claim(context.Background(), incident, bad[0], bad[1]); !errors.Is(err, status.ErrInvalidArgument) {
			t.Fatalf("claim(%.10q, %.10q): got %v, want ErrInvalidArgument", bad[0], bad[1], err)
		}
	}
}

// TestPinnedAnswerAcrossVersions walks invariant 3 through a correction.
func TestPinnedAnswerAcrossVersions(t *testing.T) {
	f := newFixture(t)
	v1 := f.publish(t, "alice,affected,northland,", "bob,affected,referrals,")
	ca := f.claim(t, "alice", "w1:alice")
	f.claim(t, "bob", "w1:bob")

	// v2: alice corrected to not affected, bob moved to under review.
	v2 := f.publish(t, "bob,under_review,,")
	a := f.status(t, "alice", v2)
	if a.Status != store.Affected || !a.UpdatePending || a.VisibleStatus != store.NotAffected ||
		a.Version != v2 || a.NotifiedVersion != v1 || a.NoticeID != ca.NoticeID || a.Notice != ca.Notice {
		t.Fatalf("alice after v2 must still be answered from v1 with update pending: %+v", a)
	}
	b := f.status(t, "bob", 0)
	if b.Status != store.Affected || !b.UpdatePending || b.VisibleStatus != store.UnderReview {
		t.Fatalf("bob after v2: %+v", b)
	}
	// The correction is due, and after it the app follows the new notice.
	corr := f.claim(t, "alice", "w2:alice")
	if corr.Action != status.ActionSend || corr.Status != store.NotAffected || corr.Version != v2 || corr.Notice.Subject != "Not affected" {
		t.Fatalf("correction: %+v", corr)
	}
	a = f.status(t, "alice", 0)
	if a.Status != store.NotAffected || a.UpdatePending || a.NotifiedVersion != v2 || a.NoticeID != corr.NoticeID {
		t.Fatalf("alice after correction: %+v", a)
	}
	if again := f.claim(t, "alice", "w3:alice"); again.Action != status.ActionAlreadySent {
		t.Fatalf("the correction is sent once: %+v", again)
	}

	st, err := f.svc.Stats(context.Background(), incident)
	if err != nil {
		t.Fatal(err)
	}
	// v2: bob under review (notified as affected: due), alice corrected.
	if st.Visible != v2 || st.UnderReview != 1 || st.Notified != 0 || st.Due != 1 || st.CorrectionsDue != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestStatsCountsPerCohort(t *testing.T) {
	f := newFixture(t)
	f.publish(t, "a,affected,northland,", "b,affected,northland;referrals,", "c,affected,referrals,", "d,under_review,referrals,")
	f.claim(t, "a", "1")
	f.claim(t, "b", "1")
	st, err := f.svc.Stats(context.Background(), incident)
	if err != nil {
		t.Fatal(err)
	}
	want := []status.CohortStats{
		{ID: "northland", Title: "Northland discharge summaries", Members: 2, Notified: 2, Due: 0},
		{ID: "referrals", Title: "Referral records", Members: 3, Notified: 1, Due: 2},
	}
	if fmt.Sprint(st.Cohorts) != fmt.Sprint(want) || st.Affected != 3 || st.UnderReview != 1 || st.Notified != 2 || st.Due != 2 {
		t.Fatalf("stats: %+v", st)
	}
	// Corrections: a is removed from the roster after being notified.
	head, _ := f.st.Head(context.Background(), incident)
	v := f.stage(t, "b,affected,northland;referrals,", "c,affected,referrals,", "d,under_review,referrals,")
	f.publishReviewed(t, v, head.Visible)
	if st, _ = f.svc.Stats(context.Background(), incident); st.CorrectionsDue != 1 || st.Due != 3 {
		t.Fatalf("stats with a correction due: %+v", st)
	}
}

// failingVersions stands for a version that cannot be loaded (for example
// removed by hand): the answer must fail closed, not fall back.
type failingVersions struct{}

func (failingVersions) Get(context.Context, string, uint64) (*snapshot.Version, error) {
	return nil, errors.New("manifest missing")
}

func TestFailClosed(t *testing.T) {
	f := newFixture(t)
	f.publish(t, "alice,affected,northland,")
	svc := status.New(f.st, failingVersions{}, f.keyer)
	if _, err := svc.Status(context.Background(), incident, "carol", 0); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("missing version: got %v, want ErrUnavailable", err)
	}
	if _, err := svc.Claim(context.Background(), incident, "alice", "k"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("claim with a missing version: got %v, want ErrUnavailable", err)
	}
	_ = f.st.Close()
	for _, subject := range []string{"alice", "carol"} {
		a, err := f.svc.Status(context.Background(), incident, subject, 0)
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("closed store: got %+v, %v; want ErrUnavailable", a, err)
		}
	}
	if _, err := f.svc.Claim(context.Background(), incident, "alice", "k"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("claim on a closed store: got %v", err)
	}
}

// TestConcurrentClaimsRacingPublish: many notifiers claim while operators
// publish. Every subject ends with one pin per distinct status it was
// claimed at, pins never move backwards, and each app answer matches the
// subject's pin.
func TestConcurrentClaimsRacingPublish(t *testing.T) {
	f := newFixture(t)
	const subjects = 40
	rows := func(status string) []string {
		var r []string
		for i := 0; i < subjects; i++ {
			r = append(r, fmt.Sprintf("s%02d,%s,northland,", i, status))
		}
		return r
	}
	f.publish(t, rows("affected")...)
	v2 := f.stage(t, rows("under_review")...)

	ctx := context.Background()
	var wg sync.WaitGroup
	results := make([][]status.Claim, subjects)
	var mu sync.Mutex
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < subjects; i++ {
				for round := 0; round < 3; round++ {
					c, err := f.svc.Claim(ctx, incident, fmt.Sprintf("s%02d", i), fmt.Sprintf("w%d:r%d:s%02d", w, round, i))
					if err != nil {
						t.Errorf("claim: %v", err)
						return
					}
					mu.Lock()
					results[i] = append(results[i], c)
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(time.Millisecond)
		// This test is about reads racing the flip, not the review: every
		// subject may have been notified and be corrected.
		if _, _, err := f.snaps.PublishReviewed(ctx, snapshot.PublishRequest{Incident: incident, Version: v2, ExpectVisible: 1, AcceptCorrections: subjects, Actor: "ops"}); err != nil {
			t.Errorf("publish: %v", err)
		}
	}()
	wg.Wait()

	for i, cs := range results {
		sends := map[store.Status]int{}
		var lastVersion uint64
		for _, c := range cs {
			if c.Action == status.ActionSend {
				sends[c.Status]++
			}
		}
		for s, n := range sends {
			if n != 1 {
				t.Errorf("s%02d: %d SENDs at status %v, want exactly 1", i, n, s)
			}
		}
		a := f.status(t, fmt.Sprintf("s%02d", i), 0)
		for _, c := range cs {
			if c.NoticeID == a.NoticeID {
				lastVersion = c.Version
				if c.Notice != a.Notice || c.Status != a.Status {
					t.Errorf("s%02d: app %+v differs from its latest email %+v", i, a, c)
				}
			}
		}
		if lastVersion == 0 || a.NotifiedVersion != lastVersion {
			t.Errorf("s%02d: app answers from v%d, no claim returned it", i, a.NotifiedVersion)
		}
		if a.UpdatePending != (a.Status != a.VisibleStatus) {
			t.Errorf("s%02d: update_pending inconsistent: %+v", i, a)
		}
	}
}

// TestRestoreFromOutbox: pins lost by the ledger come back from the wave
// outbox records, forward-only and idempotent.
func TestRestoreFromOutbox(t *testing.T) {
	f := newFixture(t)
	f.publish(t, "alice,affected,northland,", "bob,affected,referrals,")
	ca := f.claim(t, "alice", "w1:alice")
	cb := f.claim(t, "bob", "w1:bob")
	f.publish(t, "alice,under_review,,", "bob,affected,referrals,")
	cb2 := f.claim(t, "alice", "w2:alice") // alice re-notified at v2

	// A fresh ledger (the store lost every pin): same versions, no pins.
	lost := newFixture(t)
	lost.publish(t, "alice,affected,northland,", "bob,affected,referrals,")
	lost.publish(t, "alice,under_review,,", "bob,affected,referrals,")
	// Outbox lines in an order where the newer notice comes first.
	outbox := []status.Notified{
		{SubjectID: "alice", Version: cb2.Version, NoticeID: cb2.NoticeID, Status: cb2.Status, NotifiedAt: cb2.NotifiedAt},
		{SubjectID: "bob", Version: cb.Version, NoticeID: cb.NoticeID, Status: cb.Status, NotifiedAt: cb.NotifiedAt},
		{SubjectID: "alice", Version: ca.Version, NoticeID: ca.NoticeID, Status: ca.Status, NotifiedAt: ca.NotifiedAt},
	}
	for round, want := range [][]status.RestoreOutcome{
		{status.Restored, status.Restored, status.KeptNewer}, // forward-only
		{status.Present, status.Present, status.KeptNewer},   // idempotent
	} {
		for i, n := range outbox {
			got, err := lost.svc.Restore(context.Background(), incident, n)
			if err != nil || got != want[i] {
				t.Fatalf("round %d, line %d: %v %v, want %v", round, i, got, err, want[i])
			}
		}
	}
	for _, s := range []string{"alice", "bob"} {
		orig, restored := f.status(t, s, 0), lost.status(t, s, 0)
		if orig.NoticeID != restored.NoticeID || orig.NotifiedVersion != restored.NotifiedVersion || orig.Notice != restored.Notice ||
			!orig.NotifiedAt.Equal(restored.NotifiedAt) || orig.Status != restored.Status {
			t.Fatalf("%s after restore:\n%+v\nwant\n%+v", s, restored, orig)
		}
	}
	// A line that does not match the version's record is refused.
	bad := outbox[1]
	bad.Status = store.UnderReview
	if _, err := lost.svc.Restore(context.Background(), incident, bad); !errors.Is(err, status.ErrInvalidArgument) {
		t.Fatalf("mismatched status: %v", err)
	}
	bad = outbox[1]
	bad.Version, bad.NoticeID = 9, "v9-XXXX"
	if _, err := lost.svc.Restore(context.Background(), incident, bad); !errors.Is(err, status.ErrNotFound) {
		t.Fatalf("missing version: %v", err)
	}
}

// publishReviewed publishes v the way the runbook does: the operator
// reviews the corrections the diff reports and accepts exactly that many.
func (f *fixture) publishReviewed(t *testing.T, v, expect uint64) {
	t.Helper()
	ctx := context.Background()
	nc, err := f.snaps.Corrections(ctx, incident, v)
	if err != nil {
		t.Fatalf("corrections of v%d: %v", v, err)
	}
	req := snapshot.PublishRequest{Incident: incident, Version: v, ExpectVisible: expect, AcceptCorrections: nc.Total, Actor: "ops"}
	if _, _, err := f.snaps.PublishReviewed(ctx, req); err != nil {
		t.Fatalf("publish v%d: %v", v, err)
	}
}
