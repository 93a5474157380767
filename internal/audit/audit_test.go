package audit_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/audit"
	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/testutil/embeddedtest"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("NZDT", 13*3600))

func TestRecordStampsAndClassifies(t *testing.T) {
	st := embeddedtest.Open(t)
	r := audit.New(st, audit.WithClock(func() time.Time { return t0 }))
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // an action whose caller has gone is still recorded

	if err := r.Record(ctx, store.AuditEvent{Action: store.AuditPublish, Actor: "ops-a", Incident: "inc", Version: 2}, nil); err != nil {
		t.Fatalf("record of a successful action: %v", err)
	}
	actionErr := errors.Join(errors.New("lost the race"), store.ErrConflict)
	if err := r.Record(ctx, store.AuditEvent{Action: store.AuditPublish, Actor: "ops-b", Incident: "inc"}, actionErr); err != actionErr {
		t.Fatalf("a failed action keeps its own error: got %v", err)
	}
	if err := r.Record(ctx, store.AuditEvent{Action: store.AuditUpload, Actor: "ops-c", Incident: "other", Outcome: "invalid"}, errors.New("bad row")); err == nil {
		t.Fatal("a failed action must return its error")
	}

	es, err := r.List(context.Background(), "", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		seq            uint64
		actor, outcome string
		incident       string
	}{
		{1, "ops-a", store.OutcomeOK, "inc"},
		{2, "ops-b", "conflict", "inc"},
		{3, "ops-c", "invalid", "other"}, // a caller's own outcome is kept
	}
	if len(es) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(es), len(want), es)
	}
	for i, w := range want {
		e := es[i]
		if e.Seq != w.seq || e.Actor != w.actor || e.Outcome != w.outcome || e.Incident != w.incident ||
			!e.At.Equal(t0) || e.At.Location() != time.UTC {
			t.Errorf("event %d: %+v, want %+v at %v UTC", i+1, e, w, t0)
		}
	}
	if es, err := r.List(context.Background(), "inc", 1, 0); err != nil || len(es) != 1 || es[0].Seq != 2 {
		t.Errorf("one incident's events after seq 1: %+v, %v", es, err)
	}
}

// failingLog refuses to record anything.
type failingLog struct{ store.AuditLog }

func (failingLog) AppendAudit(context.Context, store.AuditEvent) error { return store.ErrUnavailable }

func (failingLog) ListAudit(context.Context, string, uint64, int) ([]store.AuditEvent, error) {
	return nil, store.ErrUnavailable
}

// A successful action that the trail could not record is reported as such,
// wrapping the store's error; a failed one keeps its own error.
func TestRecordFailureIsReported(t *testing.T) {
	r := audit.New(failingLog{})
	err := r.Record(context.Background(), store.AuditEvent{Action: store.AuditPublish, Incident: "inc", Version: 3}, nil)
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "publish of inc v3 done, but the audit trail could not record it") {
		t.Fatalf("unrecorded success: %v", err)
	}
	err = r.Record(context.Background(), store.AuditEvent{Action: store.AuditErase}, store.ErrNotFound)
	if !errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("failed action with a failing trail: %v, want its own error", err)
	}
	if _, err := r.List(context.Background(), "", 0, 0); !errors.Is(err, store.ErrUnavailable) || !strings.HasPrefix(err.Error(), "audit trail: ") {
		t.Fatalf("list on a failing trail: %v", err)
	}
}
