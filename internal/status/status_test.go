package status_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/testutil/domaintest"
)

const incident = domaintest.Incident

func TestUnknownAndUnpublishedIncidentsAreNotFound(t *testing.T) {
	f := domaintest.New(t)
	ctx := context.Background()
	if _, err := f.Status.Status(ctx, "no-such-incident", "alice", 0); !errors.Is(err, status.ErrNotFound) {
		t.Fatalf("unknown incident: got %v, want ErrNotFound", err)
	}
	f.Stage(t, "alice,affected,northland,")
	if _, err := f.Status.Status(ctx, incident, "alice", 0); !errors.Is(err, status.ErrNotFound) {
		t.Fatalf("staged-only incident: got %v, want ErrNotFound (staged versions are invisible)", err)
	}
	if _, err := f.Status.Claim(ctx, incident, "alice", "k"); !errors.Is(err, status.ErrNotFound) {
		t.Fatalf("claim on unpublished incident: got %v, want ErrNotFound", err)
	}
	if as, err := f.Status.Statuses(ctx, "alice"); err != nil || len(as) != 0 {
		t.Fatalf("Statuses lists only published incidents: %v %v", as, err)
	}
}

func TestStatusAnswers(t *testing.T) {
	f := domaintest.New(t)
	v := f.Publish(t, "alice,affected,referrals;northland,GP-1", "bob,under_review,,")

	a := f.Answer(t, "alice", 0)
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

	b := f.Answer(t, "bob", 0)
	if b.Status != store.UnderReview || b.Notice.SupportContact != "" || b.Notice.Subject != "Still checking" {
		t.Fatalf("bob: %+v", b)
	}
	// ASVS 6.3.8: an unknown subject looks exactly like a not-affected one.
	c := f.Answer(t, "carol", 0)
	if c.Status != store.NotAffected || c.Notice.SupportContact != "" || len(c.Cohorts) != 0 || c.Version != v {
		t.Fatalf("carol: %+v", c)
	}
	d := f.Answer(t, "dave-never-existed", 0)
	c.Incident, d.Incident = "", ""
	if fmt.Sprintf("%+v", c) != fmt.Sprintf("%+v", d) {
		t.Fatalf("absent subjects must be indistinguishable:\n%+v\n%+v", c, d)
	}
}

func TestAtLeastVersion(t *testing.T) {
	f := domaintest.New(t)
	v1 := f.Publish(t, "alice,affected,northland,")
	if a := f.Answer(t, "alice", v1); a.Version != v1 {
		t.Fatalf("at_least = visible: %+v", a)
	}
	_, err := f.Status.Status(context.Background(), incident, "alice", v1+1)
	if !errors.Is(err, status.ErrVersionAhead) {
		t.Fatalf("at_least beyond the newest published version: got %v, want ErrVersionAhead", err)
	}
	// A staged but unpublished version does not count as published.
	v2 := f.Stage(t, "alice,under_review,,")
	if _, err := f.Status.Status(context.Background(), incident, "alice", v2); !errors.Is(err, status.ErrVersionAhead) {
		t.Fatalf("at_least = staged version: got %v, want ErrVersionAhead", err)
	}
}

func TestClaimDecisionsAndIdempotency(t *testing.T) {
	f := domaintest.New(t)
	v1 := f.Publish(t, "alice,affected,northland,", "bob,under_review,,")

	first := f.Claim(t, "alice", "wave1:alice")
	if first.Action != status.ActionSend || first.Version != v1 || first.NoticeID == "" || first.Status != store.Affected {
		t.Fatalf("first claim: %+v", first)
	}
	if !strings.Contains(first.Notice.Body, first.NoticeID) || !strings.Contains(first.Notice.Body, fmt.Sprintf("version %d", v1)) {
		t.Fatalf("the notice footer states notice id and version: %q", first.Notice.Body)
	}
	// Same idempotency key: the same answer, nothing new; the answer
	// says it is a replay (a wave counts those apart), the first did not.
	again := f.Claim(t, "alice", "wave1:alice")
	if first.Replayed || !again.Replayed {
		t.Fatalf("replayed: first %v, again %v; want false, true", first.Replayed, again.Replayed)
	}
	again.Replayed = false
	if fmt.Sprintf("%+v", again) != fmt.Sprintf("%+v", first) {
		t.Fatalf("replay differs:\n%+v\n%+v", again, first)
	}
	// Another key: already sent, same notice.
	other := f.Claim(t, "alice", "wave2:alice")
	if other.Action != status.ActionAlreadySent || other.NoticeID != first.NoticeID {
		t.Fatalf("second key: %+v", other)
	}
	// The app now shows exactly what the email said.
	a := f.Answer(t, "alice", 0)
	if a.NoticeID != first.NoticeID || a.NotifiedVersion != v1 || a.Notice != first.Notice || !a.NotifiedAt.Equal(first.NotifiedAt) {
		t.Fatalf("app vs email:\napp   %+v\nemail %+v", a, first)
	}
	// Never notified and not affected: nothing is due, nothing is pinned.
	none := f.Claim(t, "carol", "wave1:carol")
	if none.Action != status.ActionNone || none.Version != v1 || none.NoticeID != "" {
		t.Fatalf("not affected: %+v", none)
	}
	if c := f.Answer(t, "carol", 0); c.NotifiedVersion != 0 {
		t.Fatalf("a NONE claim must not pin: %+v", c)
	}
	if u := f.Claim(t, "bob", "wave1:bob"); u.Action != status.ActionSend || u.Status != store.UnderReview || u.Notice.SupportContact != "" {
		t.Fatalf("under review: %+v", u)
	}
	for _, bad := range [][2]string{{"", "k"}, {"alice", ""}, {strings.Repeat("x", 129), "k"}, {"alice", strings.Repeat("k", 257)}} {
		if _, err := f.Status.Claim(context.Background(), incident, bad[0], bad[1]); !errors.Is(err, status.ErrInvalidArgument) {
			t.Fatalf("claim(%.10q, %.10q): got %v, want ErrInvalidArgument", bad[0], bad[1], err)
		}
	}
}

// TestPinnedAnswerAcrossVersions walks invariant 3 through a correction.
func TestPinnedAnswerAcrossVersions(t *testing.T) {
	f := domaintest.New(t)
	v1 := f.Publish(t, "alice,affected,northland,", "bob,affected,referrals,")
	ca := f.Claim(t, "alice", "w1:alice")
	f.Claim(t, "bob", "w1:bob")

	// v2: alice corrected to not affected, bob moved to under review.
	v2 := f.Publish(t, "bob,under_review,,")
	a := f.Answer(t, "alice", v2)
	if a.Status != store.Affected || !a.UpdatePending || a.VisibleStatus != store.NotAffected ||
		a.Version != v2 || a.NotifiedVersion != v1 || a.NoticeID != ca.NoticeID || a.Notice != ca.Notice {
		t.Fatalf("alice after v2 must still be answered from v1 with update pending: %+v", a)
	}
	b := f.Answer(t, "bob", 0)
	if b.Status != store.Affected || !b.UpdatePending || b.VisibleStatus != store.UnderReview {
		t.Fatalf("bob after v2: %+v", b)
	}
	// The correction is due, and after it the app follows the new notice.
	corr := f.Claim(t, "alice", "w2:alice")
	if corr.Action != status.ActionSend || corr.Status != store.NotAffected || corr.Version != v2 || corr.Notice.Subject != "Not affected" {
		t.Fatalf("correction: %+v", corr)
	}
	a = f.Answer(t, "alice", 0)
	if a.Status != store.NotAffected || a.UpdatePending || a.NotifiedVersion != v2 || a.NoticeID != corr.NoticeID {
		t.Fatalf("alice after correction: %+v", a)
	}
	if again := f.Claim(t, "alice", "w3:alice"); again.Action != status.ActionAlreadySent {
		t.Fatalf("the correction is sent once: %+v", again)
	}

	st, err := f.Notices.Stats(context.Background(), incident)
	if err != nil {
		t.Fatal(err)
	}
	// v2: bob under review (notified as affected: due), alice corrected.
	if st.Visible != v2 || st.UnderReview != 1 || st.Notified != 0 || st.Due != 1 || st.CorrectionsDue != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// failingVersions stands for a version that cannot be loaded (for example
// removed by hand): the answer must fail closed, not fall back.
type failingVersions struct{}

func (failingVersions) Get(context.Context, string, uint64) (*snapshot.Version, error) {
	return nil, errors.New("manifest missing")
}

func TestFailClosed(t *testing.T) {
	f := domaintest.New(t)
	f.Publish(t, "alice,affected,northland,")
	svc := status.New(f.Store, failingVersions{}, f.Keyer)
	if _, err := svc.Status(context.Background(), incident, "carol", 0); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("missing version: got %v, want ErrUnavailable", err)
	}
	if _, err := svc.Claim(context.Background(), incident, "alice", "k"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("claim with a missing version: got %v, want ErrUnavailable", err)
	}
	_ = f.Store.Close()
	for _, subject := range []string{"alice", "carol"} {
		a, err := f.Status.Status(context.Background(), incident, subject, 0)
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("closed store: got %+v, %v; want ErrUnavailable", a, err)
		}
	}
	if _, err := f.Status.Claim(context.Background(), incident, "alice", "k"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("claim on a closed store: got %v", err)
	}
}

// TestConcurrentClaimsRacingPublish: many notifiers claim while operators
// publish. Every subject ends with one pin per distinct status it was
// claimed at, pins never move backwards, and each app answer matches the
// subject's pin.
func TestConcurrentClaimsRacingPublish(t *testing.T) {
	f := domaintest.New(t)
	const subjects = 40
	rows := func(status string) []string {
		var r []string
		for i := 0; i < subjects; i++ {
			r = append(r, fmt.Sprintf("s%02d,%s,northland,", i, status))
		}
		return r
	}
	f.Publish(t, rows("affected")...)
	v2 := f.Stage(t, rows("under_review")...)

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
					c, err := f.Status.Claim(ctx, incident, fmt.Sprintf("s%02d", i), fmt.Sprintf("w%d:r%d:s%02d", w, round, i))
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
		if _, _, err := f.Snapshots.PublishReviewed(ctx, snapshot.PublishRequest{Incident: incident, Version: v2, ExpectVisible: 1, AcceptCorrections: subjects, Actor: "ops"}); err != nil {
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
		a := f.Answer(t, fmt.Sprintf("s%02d", i), 0)
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

// A correction (a notified subject now not affected: the only way a
// not-affected record is ever pinned) is told the spec's correction_notice;
// a subject never contacted is told not_affected_notice; without a
// correction_notice a correction falls back to not_affected_notice.
func TestRenderCorrectionNotice(t *testing.T) {
	withCorrection, err := snapshot.ParseSpec([]byte(domaintest.Spec + `
correction_notice: {subject: We got it wrong, body: We told you before that you might be affected. You were not.}
`))
	if err != nil {
		t.Fatal(err)
	}
	without, err := snapshot.ParseSpec([]byte(domaintest.Spec))
	if err != nil {
		t.Fatal(err)
	}
	notAffected := store.Record{Status: store.NotAffected}
	if _, n := status.Render(withCorrection, notAffected, 2, "v2-NOTICE"); n.Subject != "We got it wrong" ||
		!strings.HasPrefix(n.Body, "We told you before") || !strings.Contains(n.Body, "v2-NOTICE") {
		t.Errorf("a correction is told %+v, want the correction notice with its footer", n)
	}
	if _, n := status.Render(withCorrection, notAffected, 2, ""); n.Subject != without.NotAffectedNotice.Subject {
		t.Errorf("a subject never contacted is told %q, want the not-affected notice", n.Subject)
	}
	if _, n := status.Render(without, notAffected, 2, "v2-NOTICE"); n.Subject != without.NotAffectedNotice.Subject {
		t.Errorf("without a correction notice a correction is told %q, want the not-affected notice", n.Subject)
	}
}
