package snapshot

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/impact-health/impact/internal/audit"
	"github.com/impact-health/impact/internal/store"
)

func TestAuditTrail(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	svc := newTestService(t, st)
	roster := "subject_id,status,cohorts\nalice,affected,northland\nbob,under_review,\n"

	v1 := upload(t, svc, roster)
	// Rejected: nothing staged, still recorded.
	o := &rosterOpener{contents: []string{"subject_id,status,cohorts\nalice,maybe,northland\n"}}
	if _, err := svc.Upload(ctx, UploadRequest{Incident: incident, Spec: specYAML(t), Roster: o.open, Actor: "ops-bob"}); err == nil {
		t.Fatal("invalid upload accepted")
	}
	if _, _, err := svc.Publish(ctx, incident, 1, 0, "ops-carol"); err != nil {
		t.Fatal(err)
	}
	// A lost compare-and-set is recorded with its outcome.
	upload(t, svc, roster)
	if _, _, err := svc.Publish(ctx, incident, 2, 0, "ops-dan"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("publish with a stale expectation: %v", err)
	}
	rb, _, err := svc.Rollback(ctx, incident, 1, 1, "ops-erin")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.GC(ctx, incident, 1, "ops-frank"); err != nil {
		t.Fatal(err)
	}

	es, err := audit.New(st).List(ctx, "", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		seq                    uint64
		actor, action, outcome string
		version                uint64
		digest                 store.Digest
		detail                 string
	}{
		{1, "ops-alice", store.AuditUpload, "ok", 1, v1.Digest, "staged: 2 entries (1 affected, 1 under review)"},
		{2, "ops-bob", store.AuditUpload, OutcomeInvalid, 0, store.Digest{}, "rejected: roster, 1 errors"},
		{3, "ops-carol", store.AuditPublish, "ok", 1, v1.Digest, "visible v0 -> v1"},
		{4, "ops-alice", store.AuditUpload, "ok", 2, v1.Digest, "staged: 2 entries (1 affected, 1 under review)"},
		{5, "ops-dan", store.AuditPublish, "conflict", 2, store.Digest{}, "expected visible v0"},
		{6, "ops-erin", store.AuditRollback, "ok", rb.Version, v1.Digest, "content of v1; visible v1 -> v3"},
		{7, "ops-frank", store.AuditGC, "ok", 0, store.Digest{}, "keep last 1: removed v1, v2; kept v3"},
	}
	if len(es) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(es), len(want), es)
	}
	for i, w := range want {
		e := es[i]
		if e.Seq != w.seq || e.Actor != w.actor || e.Action != w.action || e.Outcome != w.outcome || e.Version != w.version ||
			e.Digest != w.digest || e.Detail != w.detail || e.Incident != incident || !e.At.Equal(t0) {
			t.Errorf("event %d: %+v\nwant %+v", i+1, e, w)
		}
		for _, id := range []string{"alice", "bob"} {
			if strings.Contains(e.Detail, id) {
				t.Errorf("event %d names a subject: %q", i+1, e.Detail)
			}
		}
	}
	if es, err := audit.New(st).List(ctx, "other-incident", 0, 0); err != nil || len(es) != 0 {
		t.Errorf("another incident's trail: %v, %v", es, err)
	}
}

// failingAudit refuses to record anything.
type failingAudit struct{ store.Store }

func (failingAudit) AppendAudit(context.Context, store.AuditEvent) error {
	return store.ErrUnavailable
}

// An action that succeeded but could not be recorded is reported, wrapping
// ErrUnavailable; the action itself stands.
func TestAuditFailureIsReported(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	upload(t, newTestService(t, st), "subject_id,status,cohorts\nalice,affected,northland\n")
	svc := newTestService(t, failingAudit{st})
	_, _, err := svc.Publish(ctx, incident, 1, 0, "ops-carol")
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "audit trail") {
		t.Fatalf("publish with a failing audit trail: %v", err)
	}
	if h, _ := st.Head(ctx, incident); h.Visible != 1 {
		t.Errorf("visible v%d: the publish itself must stand", h.Visible)
	}
	// A failed action keeps its own error.
	if _, _, err := svc.Publish(ctx, incident, 1, 0, "ops-carol"); !errors.Is(err, store.ErrConflict) {
		t.Errorf("failed publish with a failing audit trail: %v, want its own ErrConflict", err)
	}
}
