package snapshot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/impact-health/impact/internal/audit"
	"github.com/impact-health/impact/internal/store"
)

// notify pins subject at the visible version the way a claim does: read
// the view, pin the visible record. It returns the store's error.
func notify(ctx context.Context, st store.Store, subject string, n int) error {
	key := testKeyer.SubjectKey(subject)
	v, err := st.Read(ctx, incident, key, nil)
	if err != nil {
		return err
	}
	pin := store.Pin{Version: v.Visible, Record: v.Record, NoticeID: fmt.Sprintf("n-%s-%d", subject, n), NotifiedAt: t0}
	return st.ClaimPin(ctx, incident, key, v.Pin, pin, store.IdemKey(testKeyer.SubjectKey(fmt.Sprintf("idem-%s-%d", subject, n))))
}

func TestCorrectionsReport(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	svc := newTestService(t, st)
	upload(t, svc, "subject_id,status,cohorts\nalice,affected,northland\nbob,affected,referrals\ncarol,under_review,\ndave,affected,uploads\n")
	if _, _, err := svc.Publish(ctx, incident, 1, 0, "ops"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"alice", "bob", "carol"} {
		if err := notify(ctx, st, s, 1); err != nil {
			t.Fatal(err)
		}
	}
	// v2: alice removed, bob under review, carol affected in northland;
	// dave (never notified) removed too, which is no correction.
	upload(t, svc, "subject_id,status,cohorts\nbob,under_review,referrals\ncarol,affected,northland\n")
	nc, err := svc.Corrections(ctx, incident, 2)
	if err != nil {
		t.Fatal(err)
	}
	A, N, U := store.Affected, store.NotAffected, store.UnderReview
	if nc.Pinned != 3 || nc.Total != 3 || len(nc.Transitions) != 3 ||
		nc.Transitions[[2]store.Status{A, N}] != 1 || nc.Transitions[[2]store.Status{A, U}] != 1 || nc.Transitions[[2]store.Status{U, A}] != 1 {
		t.Fatalf("report: %+v", nc)
	}
	want := []CohortChange{{"northland", A, N, 1}, {"northland", U, A, 1}, {"referrals", A, U, 1}}
	if fmt.Sprint(nc.Cohorts) != fmt.Sprint(want) {
		t.Fatalf("per cohort %v, want %v", nc.Cohorts, want)
	}

	// Accepting fewer is refused, changes nothing and is audited with the
	// counts; accepting the number publishes.
	_, _, err = svc.PublishReviewed(ctx, PublishRequest{Incident: incident, Version: 2, ExpectVisible: 1, AcceptCorrections: 2, Actor: "ops-bob"})
	var ce *CorrectionsError
	if !errors.As(err, &ce) || ce.Count != 3 || ce.Accepted != 2 || ce.Version != 2 {
		t.Fatalf("publish accepting 2 of 3: %v", err)
	}
	if h, _ := st.Head(ctx, incident); h.Visible != 1 {
		t.Fatalf("refused publish moved the visible version to v%d", h.Visible)
	}
	// The refusal lifted its fence: claims at v1 go on.
	if err := notify(ctx, st, "dave", 1); err != nil {
		t.Fatalf("claim after a refused publish: %v", err)
	}
	if _, _, err := svc.PublishReviewed(ctx, PublishRequest{Incident: incident, Version: 2, ExpectVisible: 1, AcceptCorrections: 3, Actor: "ops-bob"}); !errors.As(err, &ce) || ce.Count != 4 {
		t.Fatalf("publish after dave was notified counts 4: %v", err)
	}
	if _, _, err := svc.PublishReviewed(ctx, PublishRequest{Incident: incident, Version: 2, ExpectVisible: 1, AcceptCorrections: 4, Actor: "ops-bob"}); err != nil {
		t.Fatal(err)
	}
	es, err := audit.New(svc.st).List(ctx, incident, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		if e.Action == store.AuditPublish || e.Action == store.AuditPublishRefused {
			got = append(got, e.Action+" "+e.Outcome+" "+e.Detail)
		}
	}
	wantEv := []string{
		"publish ok visible v0 -> v1",
		"publish_refused corrections_not_accepted expected visible v1; corrections 3 of 3 notified (accepted 2)",
		"publish_refused corrections_not_accepted expected visible v1; corrections 4 of 4 notified (accepted 3)",
		"publish ok visible v1 -> v2; corrections 4 of 4 notified (accepted 4)",
	}
	if strings.Join(got, "\n") != strings.Join(wantEv, "\n") {
		t.Fatalf("audit:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantEv, "\n"))
	}
	// The fence outlives the flip for its grace: a claim decided at v1
	// before the flip and written after it is refused.
	key := testKeyer.SubjectKey("erin-never-notified")
	stale := store.Pin{Version: 1, Record: store.Record{Status: A, Cohorts: 1}, NoticeID: "stale", NotifiedAt: t0}
	if err := st.ClaimPin(ctx, incident, key, nil, stale, store.IdemKey(key)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a claim at v1 written after the flip: %v, want a conflict", err)
	}
}

// TestPublishRacingClaimWave: notifiers claim while a publish that
// corrects every notified subject runs, accepting what the review counted
// just before. Every outcome is either a refusal naming a higher count, or
// a publish after which every subject pinned at v1 (each one a correction
// at v2) was counted: never a correction that slipped through.
func TestPublishRacingClaimWave(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	svc := newTestService(t, st)
	const subjects = 300
	var b strings.Builder
	b.WriteString("subject_id,status,cohorts\n")
	for i := range subjects {
		fmt.Fprintf(&b, "s%03d,affected,northland\n", i)
	}
	upload(t, svc, b.String())
	if _, _, err := svc.Publish(ctx, incident, 1, 0, "ops"); err != nil {
		t.Fatal(err)
	}
	// v2: nobody affected, so every notified subject is a correction.
	upload(t, svc, "subject_id,status,cohorts\n")

	var (
		wg       sync.WaitGroup
		next     atomic.Int64
		stop     atomic.Bool
		refusals atomic.Int64
	)
	for w := range 4 {
		wg.Go(func() {
			for !stop.Load() {
				i := int(next.Add(1))
				if i >= subjects {
					return
				}
				// Claims that lose to the fence retry, as status.Claim does.
				for attempt := 0; ; attempt++ {
					err := notify(ctx, st, fmt.Sprintf("s%03d", i), w*subjects+attempt)
					if err == nil || !errors.Is(err, store.ErrConflict) {
						break
					}
					if h, _ := st.Head(ctx, incident); h.Visible == 2 {
						break // at v2 nothing is due to a never-notified subject
					}
				}
			}
		})
	}
	var accepted uint64
	for {
		nc, err := svc.Corrections(ctx, incident, 2)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = svc.PublishReviewed(ctx, PublishRequest{Incident: incident, Version: 2, ExpectVisible: 1, AcceptCorrections: nc.Total, Actor: "ops"})
		var ce *CorrectionsError
		if errors.As(err, &ce) {
			if ce.Count <= nc.Total {
				t.Fatalf("refused with %d accepted %d: the count did not grow", ce.Count, nc.Total)
			}
			refusals.Add(1)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		accepted = nc.Total
		break
	}
	stop.Store(true)
	wg.Wait()
	var atV1 uint64
	if err := st.Pins(ctx, incident, func(_ store.Key, p store.Pin) error {
		if p.Version == 1 {
			atV1++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if atV1 > accepted {
		t.Fatalf("%d subjects pinned at v1 are corrected by v2, only %d accepted (%d refusals before)", atV1, accepted, refusals.Load())
	}
	t.Logf("published accepting %d corrections after %d refusals; %d pinned at v1", accepted, refusals.Load(), atV1)
}
