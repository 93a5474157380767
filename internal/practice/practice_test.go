package practice

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/audit"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/store/embedded"
)

func TestIDsProblem(t *testing.T) {
	many := make([]string, MaxBatch+1)
	for i := range many {
		many[i] = string(rune('a'+i%26)) + strings.Repeat("x", i%100) + string(rune(i))
	}
	for _, tc := range []struct {
		ids  []string
		want string
	}{
		{[]string{"a", "b"}, ""},
		{many[:MaxBatch], ""},
		{nil, "must hold at least 1 id"},
		{many, "must hold at most 10000 ids in one call (10001 given)"},
		{[]string{"a", ""}, "position 1 is empty"},
		{[]string{"a", "b", "a"}, "position 2 repeats position 0"},
		{[]string{strings.Repeat("x", 129)}, "position 0 is longer than 128 bytes"},
	} {
		if got := IDsProblem(tc.ids); got != tc.want {
			t.Errorf("IDsProblem(%d ids) = %q, want %q", len(tc.ids), got, tc.want)
		}
	}
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const spec = `incident: {id: inc-1, title: Test}
cohorts:
  - id: a
    title: Cohort A
    support_contact: "0800"
    notice: {subject: S, body: B}
    practice_guidance: Refer callers to 0800
under_review_notice: {subject: S, body: B}
not_affected_notice: {subject: S, body: B}
practice_notice: {subject: For practices, body: The pack}
`

// The notified counts are reused for the TTL at one visible version, and
// counted again after it or when the visible version moves.
func TestTallyCached(t *testing.T) {
	ctx := context.Background()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "impact.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	keyer, err := auth.NewKeyer([]byte(strings.Repeat("p", 32)))
	if err != nil {
		t.Fatal(err)
	}
	catalog := snapshot.NewCatalog(st, 0)
	snaps := snapshot.NewService(st, keyer, snapshot.WithCatalog(catalog))
	answers := status.New(st, catalog, keyer)
	c := &clock{now: time.Date(2025, 12, 20, 9, 0, 0, 0, time.UTC)}
	svc := New(st, catalog, answers, keyer, audit.New(st, audit.WithClock(c.Now)), WithClock(c.Now), WithTallyTTL(time.Minute))
	upload := func(roster string) uint64 {
		info, err := snaps.Upload(ctx, snapshot.UploadRequest{Incident: "inc-1", Spec: []byte(spec), Actor: "ops",
			Roster: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(roster)), nil }})
		if err != nil {
			t.Fatal(err)
		}
		return info.Version
	}
	v1 := upload("subject_id,status,cohorts,practice_id\ns1,affected,a,PR1\ns2,affected,a,PR1\ns3,affected,a,PR2\n")
	if _, _, err := snaps.Publish(ctx, "inc-1", v1, 0, "ops"); err != nil {
		t.Fatal(err)
	}
	pr1 := Caller{Actor: "dr", Practice: "PR1"}
	im, err := svc.Impact(ctx, pr1, "inc-1")
	if err != nil {
		t.Fatal(err)
	}
	if im.AffectedPatients != 2 || im.Notified != 0 || im.Due != 2 || im.Notice == nil || im.Notice.Body != "The pack" ||
		im.Cohorts[0].Cohort.PracticeGuidance != "Refer callers to 0800" || !im.CountedAt.Equal(c.Now()) {
		t.Fatalf("impact: %+v", im)
	}
	if _, err := answers.Claim(ctx, "inc-1", "s1", "k1"); err != nil {
		t.Fatal(err)
	}
	c.Add(30 * time.Second)
	if im, _ = svc.Impact(ctx, pr1, "inc-1"); im.Notified != 0 {
		t.Fatalf("within the TTL: %+v", im)
	}
	c.Add(31 * time.Second)
	if im, _ = svc.Impact(ctx, pr1, "inc-1"); im.Notified != 1 || im.Due != 1 || im.Cohorts[0].Notified != 1 {
		t.Fatalf("after the TTL: %+v", im)
	}
	if _, err := answers.Claim(ctx, "inc-1", "s2", "k2"); err != nil {
		t.Fatal(err)
	}
	v2 := upload("subject_id,status,cohorts,practice_id\ns2,affected,a,PR1\ns3,affected,a,PR2\n")
	// s1 (notified) is no longer in the roster: one correction, accepted.
	if _, _, err := snaps.PublishReviewed(ctx, snapshot.PublishRequest{Incident: "inc-1", Version: v2, ExpectVisible: v1, AcceptCorrections: 1, Actor: "ops"}); err != nil {
		t.Fatal(err)
	}
	// A new visible version is counted at once: s1 (notified as PR1's) is
	// owed a correction.
	if im, _ = svc.Impact(ctx, pr1, "inc-1"); im.Version != v2 || im.AffectedPatients != 1 || im.Notified != 1 || im.CorrectionsDue != 1 || im.Due != 1 {
		t.Fatalf("at v2: %+v", im)
	}
	tab, err := svc.Stats(ctx, "inc-1")
	if err != nil || len(tab.Practices) != 2 || tab.Practices[0] != (Stats{Practice: "PR1", Affected: 1, Notified: 1, CorrectionsDue: 1, Due: 1}) ||
		tab.Practices[1] != (Stats{Practice: "PR2", Affected: 1, Due: 1}) {
		t.Fatalf("stats: %+v, %v", tab, err)
	}
	events, err := st.ListAudit(ctx, "inc-1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var practiceEvents []store.AuditEvent
	for _, e := range events {
		if e.Action == AuditImpact || e.Action == AuditCheck {
			practiceEvents = append(practiceEvents, e)
		}
	}
	events = practiceEvents
	if len(events) != 4 || events[0].Action != AuditImpact || events[0].Detail != "practice PR1: summary" || events[0].Actor != "dr" {
		t.Errorf("audit events: %+v", events)
	}
	// Unknown incident.
	if _, err := svc.Impact(ctx, pr1, "inc-2"); !errors.Is(err, status.ErrNotFound) {
		t.Errorf("unknown incident: %v", err)
	}
}
