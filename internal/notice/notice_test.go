package notice_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/impact-health/impact/internal/notice"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/testutil/domaintest"
)

const incident = domaintest.Incident

func TestStatsCountsPerCohort(t *testing.T) {
	f := domaintest.New(t)
	f.Publish(t, "a,affected,northland,", "b,affected,northland;referrals,", "c,affected,referrals,", "d,under_review,referrals,")
	f.Claim(t, "a", "1")
	f.Claim(t, "b", "1")
	st, err := f.Notices.Stats(context.Background(), incident)
	if err != nil {
		t.Fatal(err)
	}
	want := []notice.CohortStats{
		{ID: "northland", Title: "Northland discharge summaries", Members: 2, Notified: 2, Due: 0},
		{ID: "referrals", Title: "Referral records", Members: 3, Notified: 1, Due: 2},
	}
	if fmt.Sprint(st.Cohorts) != fmt.Sprint(want) || st.Affected != 3 || st.UnderReview != 1 || st.Notified != 2 || st.Due != 2 {
		t.Fatalf("stats: %+v", st)
	}
	// Corrections: a is removed from the roster after being notified.
	head, _ := f.Store.Head(context.Background(), incident)
	v := f.Stage(t, "b,affected,northland;referrals,", "c,affected,referrals,", "d,under_review,referrals,")
	f.PublishReviewed(t, v, head.Visible)
	if st, _ = f.Notices.Stats(context.Background(), incident); st.CorrectionsDue != 1 || st.Due != 3 {
		t.Fatalf("stats with a correction due: %+v", st)
	}
}

// TestRestoreFromOutbox: pins lost by the ledger come back from the wave
// outbox records, forward-only and idempotent.
func TestRestoreFromOutbox(t *testing.T) {
	f := domaintest.New(t)
	f.Publish(t, "alice,affected,northland,", "bob,affected,referrals,")
	ca := f.Claim(t, "alice", "w1:alice")
	cb := f.Claim(t, "bob", "w1:bob")
	f.Publish(t, "alice,under_review,,", "bob,affected,referrals,")
	cb2 := f.Claim(t, "alice", "w2:alice") // alice re-notified at v2

	// A fresh ledger (the store lost every pin): same versions, no pins.
	lost := domaintest.New(t)
	lost.Publish(t, "alice,affected,northland,", "bob,affected,referrals,")
	lost.Publish(t, "alice,under_review,,", "bob,affected,referrals,")
	// Outbox lines in an order where the newer notice comes first.
	outbox := []notice.Notified{
		{SubjectID: "alice", Version: cb2.Version, NoticeID: cb2.NoticeID, Status: cb2.Status, NotifiedAt: cb2.NotifiedAt},
		{SubjectID: "bob", Version: cb.Version, NoticeID: cb.NoticeID, Status: cb.Status, NotifiedAt: cb.NotifiedAt},
		{SubjectID: "alice", Version: ca.Version, NoticeID: ca.NoticeID, Status: ca.Status, NotifiedAt: ca.NotifiedAt},
	}
	for round, want := range [][]notice.RestoreOutcome{
		{notice.Restored, notice.Restored, notice.KeptNewer}, // forward-only
		{notice.Present, notice.Present, notice.KeptNewer},   // idempotent
	} {
		for i, n := range outbox {
			got, err := lost.Notices.Restore(context.Background(), incident, n)
			if err != nil || got != want[i] {
				t.Fatalf("round %d, line %d: %v %v, want %v", round, i, got, err, want[i])
			}
		}
	}
	for _, s := range []string{"alice", "bob"} {
		orig, restored := f.Answer(t, s, 0), lost.Answer(t, s, 0)
		if orig.NoticeID != restored.NoticeID || orig.NotifiedVersion != restored.NotifiedVersion || orig.Notice != restored.Notice ||
			!orig.NotifiedAt.Equal(restored.NotifiedAt) || orig.Status != restored.Status {
			t.Fatalf("%s after restore:\n%+v\nwant\n%+v", s, restored, orig)
		}
	}
	// A line that does not match the version's record is refused.
	bad := outbox[1]
	bad.Status = store.UnderReview
	if _, err := lost.Notices.Restore(context.Background(), incident, bad); !errors.Is(err, status.ErrInvalidArgument) {
		t.Fatalf("mismatched status: %v", err)
	}
	bad = outbox[1]
	bad.Version, bad.NoticeID = 9, "v9-XXXX"
	if _, err := lost.Notices.Restore(context.Background(), incident, bad); !errors.Is(err, status.ErrNotFound) {
		t.Fatalf("missing version: %v", err)
	}
}

// TestRecordWave: a wave is recorded once per incident with its counts per
// action, the newest version claimed at and that version's digest; a wave
// that ended with an error keeps it and is recorded with its outcome.
func TestRecordWave(t *testing.T) {
	f := domaintest.New(t)
	v := f.Publish(t, "alice,affected,northland,", "bob,under_review,,")
	ctx := context.Background()
	w := notice.Wave{Incident: incident}
	for i, s := range []string{"alice", "bob", "carol", "alice"} {
		w.Add(f.Claim(t, s, fmt.Sprintf("w1:%d", i)))
	}
	if w.Send != 2 || w.AlreadySent != 1 || w.None != 1 || w.Version != v {
		t.Fatalf("wave counts: %+v", w)
	}
	if err := f.Notices.RecordWave(ctx, "notifier-1", w, nil); err != nil {
		t.Fatal(err)
	}
	waveErr := fmt.Errorf("stream broke: %w", store.ErrUnavailable)
	if err := f.Notices.RecordWave(ctx, "notifier-1", notice.Wave{Incident: incident}, waveErr); err != waveErr {
		t.Fatalf("a failed wave keeps its error: %v", err)
	}
	info, _, err := f.Store.Version(ctx, incident, v)
	if err != nil {
		t.Fatal(err)
	}
	es, err := f.Audit.List(ctx, incident, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var waves []store.AuditEvent
	for _, e := range es {
		if e.Action == store.AuditClaimWave {
			waves = append(waves, e)
		}
	}
	if len(waves) != 2 {
		t.Fatalf("%d wave events, want 2: %+v", len(waves), es)
	}
	if e := waves[0]; e.Actor != "notifier-1" || e.Version != v || e.Digest != info.Digest || e.Outcome != store.OutcomeOK ||
		e.Detail != "4 claims: send 2 new, 0 replayed, already sent 1, none 1" {
		t.Errorf("wave event: %+v", e)
	}
	if e := waves[1]; e.Outcome != "unavailable" || e.Version != 0 || e.Digest != (store.Digest{}) {
		t.Errorf("failed wave event: %+v", e)
	}
}

// TestRecordRestore: a restore is recorded once per incident with its
// counts per outcome, and names no subject or notice.
func TestRecordRestore(t *testing.T) {
	f := domaintest.New(t)
	f.Publish(t, "alice,affected,northland,")
	c := f.Claim(t, "alice", "w1:alice")
	r := notice.Restoration{Incident: incident}
	for range 2 {
		o, err := f.Notices.Restore(context.Background(), incident, notice.Notified{
			SubjectID: "alice", Version: c.Version, NoticeID: c.NoticeID, Status: c.Status, NotifiedAt: c.NotifiedAt})
		if err != nil {
			t.Fatal(err)
		}
		r.Add(o)
	}
	r.Add(notice.KeptNewer)
	if err := f.Notices.RecordRestore(context.Background(), "ops-rita", r, nil); err != nil {
		t.Fatal(err)
	}
	es, err := f.Audit.List(context.Background(), incident, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	e := es[len(es)-1]
	if e.Action != store.AuditRestore || e.Actor != "ops-rita" || e.Incident != incident || e.Outcome != store.OutcomeOK ||
		e.Detail != "3 lines: restored 0, present 2, kept newer 1" {
		t.Fatalf("restore event: %+v", e)
	}
}
