package snapshot

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/store"
)

// abandonStage stages a version with a short lease and stops renewing it
// (its loader's context ends without Abort), then waits out the lease.
func abandonStage(t *testing.T, st store.Store) uint64 {
	t.Helper()
	const lease = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	stg, err := st.Stage(ctx, store.StageRequest{Incident: incident, CreatedBy: "ops", Source: "upload", At: t0, Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	time.Sleep(3 * lease)
	return stg.Version()
}

// TestGCCollectsLapsedStages: gc collects a stage whose loader died (it
// used to skip staging versions forever), says so in the audit trail, and
// leaves it listed as aborted.
func TestGCCollectsLapsedStages(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	svc := newTestService(t, st)
	v := abandonStage(t, st)
	if _, _, err := svc.GC(ctx, incident, 5, "ops-carol"); err != nil {
		t.Fatal(err)
	}
	_, versions, err := svc.List(ctx, incident)
	if err != nil || len(versions) != 1 || versions[0].Version != v || versions[0].State != store.StateAborted {
		t.Fatalf("versions after gc: %+v, %v; want v%d aborted", versions, err, v)
	}
	evs, err := st.ListAudit(ctx, incident, 0, 0)
	if err != nil || len(evs) == 0 || !strings.Contains(evs[len(evs)-1].Detail, "collected stages whose lease expired: v1") {
		t.Fatalf("audit after gc: %+v, %v", evs, err)
	}
}

// TestReaperCollectsLapsedStages: the reaper's first pass collects a
// lapsed stage in every incident and audits it under its own actor.
func TestReaperCollectsLapsedStages(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	svc := newTestService(t, st)
	v := abandonStage(t, st)
	got, err := svc.CollectStages(ctx, ReaperActor)
	if err != nil || len(got[incident]) != 1 || got[incident][0] != v {
		t.Fatalf("collect: %v, %v; want %s: [v%d]", got, err, incident, v)
	}
	if got, err := svc.CollectStages(ctx, ReaperActor); err != nil || len(got) != 0 {
		t.Fatalf("second collection: %v, %v; want nothing", got, err)
	}
	evs, err := st.ListAudit(ctx, incident, 0, 0)
	if err != nil || len(evs) != 1 || evs[0].Actor != ReaperActor || evs[0].Action != store.AuditGC {
		t.Fatalf("audit: %+v, %v", evs, err)
	}
}
