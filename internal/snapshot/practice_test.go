package snapshot

import (
	"context"
	"testing"
)

// Per-practice counts are computed while a version is staged, kept with
// the version (verified by the store), and recomputed for a rollback copy
// that leaves closed accounts out.
func TestPracticeCountsStaged(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	svc := newTestService(t, st)
	roster := "subject_id,status,cohorts,practice_id\n" +
		"p1,affected,northland,PR001\n" +
		"p2,under_review,northland;referrals,PR001\n" +
		"p3,affected,referrals,PR002\n" +
		"p4,affected,uploads,\n" +
		"p5,affected,northland;uploads,PR001\n"
	v1 := upload(t, svc, roster)
	_, m, err := st.Version(ctx, incident, v1.Version)
	if err != nil {
		t.Fatal(err)
	}
	idx := map[string]int{}
	for i, p := range m.Practices {
		idx[p] = i
	}
	if len(m.PracticeCounts) != 2 {
		t.Fatalf("practice counts %+v for practices %v", m.PracticeCounts, m.Practices)
	}
	pr1, pr2 := m.PracticeCounts[idx["PR001"]], m.PracticeCounts[idx["PR002"]]
	// cohorts: northland, referrals, uploads; [affected, under review]
	if pr1.Affected != 2 || pr1.UnderReview != 1 || pr1.PerCohort[0] != [2]uint64{2, 1} || pr1.PerCohort[1] != [2]uint64{0, 1} || pr1.PerCohort[2] != [2]uint64{1, 0} {
		t.Errorf("PR001: %+v", pr1)
	}
	if pr2.Affected != 1 || pr2.UnderReview != 0 || pr2.PerCohort[1] != [2]uint64{1, 0} {
		t.Errorf("PR002: %+v", pr2)
	}

	// Close p1's account, then roll back to v1: the copy counts without it.
	if _, err := st.Tombstone(ctx, testKeyer.SubjectKey("p1")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Publish(ctx, incident, v1.Version, 0, "ops-alice"); err != nil {
		t.Fatal(err)
	}
	v2 := upload(t, svc, "subject_id,status,cohorts,practice_id\np9,affected,uploads,PR009\n")
	if _, _, err := svc.Publish(ctx, incident, v2.Version, v1.Version, "ops-alice"); err != nil {
		t.Fatal(err)
	}
	v3, _, err := svc.Rollback(ctx, incident, v1.Version, v2.Version, "ops-alice")
	if err != nil {
		t.Fatal(err)
	}
	_, m3, err := st.Version(ctx, incident, v3.Version)
	if err != nil {
		t.Fatal(err)
	}
	if got := m3.PracticeCounts[idx["PR001"]]; got.Affected != 1 || got.UnderReview != 1 || got.PerCohort[0] != [2]uint64{1, 1} {
		t.Errorf("PR001 after the rollback copy without p1: %+v", got)
	}
}
