package snapshot

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/impact-health/impact/internal/store"
)

// uploadSpec uploads a roster with a given spec.
func uploadSpec(t testing.TB, svc *Service, spec *Spec, roster string) store.VersionInfo {
	t.Helper()
	o := &rosterOpener{contents: []string{roster}}
	info, err := svc.Upload(context.Background(), UploadRequest{Incident: incident, Spec: spec.Canonical(), Roster: o.open})
	if err != nil {
		t.Fatal(err)
	}
	return info
}

type transitions = map[[2]store.Status]uint64

func TestDiff(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	svc := newTestService(t, st)
	specA := testSpec(t) // northland, referrals, uploads
	specB := testSpec(t) // uploads, northland, newcohort: reordered, one dropped, one new
	newCohort := specB.Cohorts[0]
	newCohort.ID = "newcohort"
	specB.Cohorts = []Cohort{specB.Cohorts[2], specB.Cohorts[0], newCohort}

	uploadSpec(t, svc, specA, header+
		"p1,affected,northland,GP-1\n"+
		"p2,affected,referrals,GP-2\n"+
		"p3,under_review,,\n"+
		"p4,affected,uploads,\n"+
		"p5,affected,northland;uploads,GP-1\n")
	uploadSpec(t, svc, specB, header+
		"p6,under_review,,\n"+ // added
		"p5,affected,uploads,GP-1\n"+ // left northland
		"p4,affected,uploads,GP-9\n"+ // practice changed
		"p3,affected,newcohort,\n"+ // status and cohorts changed
		"p1,affected,northland,GP-1\n") // same, though northland's bit moved; p2 removed

	tests := []struct {
		name             string
		version, against uint64
		want             Diff
	}{
		{"v2 against v1", 2, 1, Diff{
			Added: 1, Removed: 1, Changed: 3,
			Cohorts: []CohortDiff{
				{ID: "uploads", Members: 2},
				{ID: "northland", Removed: 1, Members: 1},
				{ID: "newcohort", Added: 1, Members: 1},
				{ID: "referrals", Removed: 1},
			},
			Transitions: transitions{
				{store.UnderReview, store.Affected}:    1,
				{store.NotAffected, store.UnderReview}: 1,
				{store.Affected, store.NotAffected}:    1,
			},
			SpecChanged: true,
		}},
		{"v1 against v2", 1, 2, Diff{
			Added: 1, Removed: 1, Changed: 3,
			Cohorts: []CohortDiff{
				{ID: "northland", Added: 1, Members: 2},
				{ID: "referrals", Added: 1, Members: 1},
				{ID: "uploads", Members: 2},
				{ID: "newcohort", Removed: 1},
			},
			Transitions: transitions{
				{store.Affected, store.UnderReview}:    1,
				{store.UnderReview, store.NotAffected}: 1,
				{store.NotAffected, store.Affected}:    1,
			},
			SpecChanged: true,
		}},
		{"v1 against nothing", 1, 0, Diff{
			Added: 5,
			Cohorts: []CohortDiff{
				{ID: "northland", Added: 2, Members: 2},
				{ID: "referrals", Added: 1, Members: 1},
				{ID: "uploads", Added: 2, Members: 2},
			},
			Transitions: transitions{
				{store.NotAffected, store.Affected}:    4,
				{store.NotAffected, store.UnderReview}: 1,
			},
			SpecChanged: true,
		}},
		{"v2 against itself", 2, 2, Diff{
			Cohorts: []CohortDiff{
				{ID: "uploads", Members: 2},
				{ID: "northland", Members: 1},
				{ID: "newcohort", Members: 1},
			},
			Transitions: transitions{},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := svc.Diff(ctx, incident, tc.version, tc.against)
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Incident, tc.want.Version, tc.want.Against = incident, tc.version, tc.against
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("diff\n got %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}

func TestDiffErrors(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	svc := newTestService(t, st)
	upload(t, svc, header+"p1,affected,northland,\n")
	o := &rosterOpener{contents: []string{header + "p1,affected,northland,\n", header}}
	if _, err := svc.Upload(ctx, UploadRequest{Incident: incident, Spec: specYAML(t), Roster: o.open}); err == nil {
		t.Fatal("changing roster accepted")
	}
	for _, tc := range []struct {
		version, against uint64
		is               error
	}{
		{1, 7, store.ErrNotFound},
		{7, 1, store.ErrNotFound},
		{2, 1, store.ErrNotStaged}, // v2 was aborted
		{1, 2, store.ErrNotStaged},
	} {
		if _, err := svc.Diff(ctx, incident, tc.version, tc.against); !errors.Is(err, tc.is) {
			t.Errorf("diff v%d against v%d: %v, want %v", tc.version, tc.against, err, tc.is)
		}
	}
	if _, err := svc.Diff(ctx, "no-such-incident", 1, 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("diff of an unknown incident: %v", err)
	}
}

// TestDiffMatchesNaive compares the merge join with a map-based diff of two
// random rosters that share most subjects.
func TestDiffMatchesNaive(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	svc := newTestService(t, st, WithBatchSize(500))
	spec := testSpec(t)
	rng := rand.New(rand.NewPCG(5, 6))
	gen := func() string {
		var b strings.Builder
		b.WriteString(header)
		cohorts := []string{"northland", "referrals", "uploads", "northland;uploads"}
		for i := range 3000 {
			if rng.IntN(5) == 0 {
				continue
			}
			status, c := "affected", cohorts[rng.IntN(len(cohorts))]
			if rng.IntN(6) == 0 {
				status, c = "under_review", []string{"", "referrals"}[rng.IntN(2)]
			}
			practice := []string{"", "GP-1", "GP-2"}[rng.IntN(3)]
			fmt.Fprintf(&b, "s%d,%s,%s,%s\n", i, status, c, practice)
		}
		return b.String()
	}
	type rec struct {
		status   store.Status
		cohorts  uint64
		practice string
	}
	naive := func(csv string) map[store.Key]rec {
		m := map[store.Key]rec{}
		r, entries, err := parse(t, csv)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			p := ""
			if e.Record.Practice > 0 {
				p = r.Practices[e.Record.Practice-1]
			}
			m[e.Key] = rec{e.Record.Status, e.Record.Cohorts, p}
		}
		return m
	}
	csvA, csvB := gen(), gen()
	uploadSpec(t, svc, spec, csvA)
	uploadSpec(t, svc, spec, csvB)
	a, b := naive(csvB), naive(csvA) // version 2 against version 1

	want := Diff{Incident: incident, Version: 2, Against: 1, Transitions: transitions{}}
	for _, c := range spec.Cohorts {
		want.Cohorts = append(want.Cohorts, CohortDiff{ID: c.ID})
	}
	for k, ra := range a {
		rb, ok := b[k]
		if !ok {
			want.Added++
			want.Transitions[[2]store.Status{store.NotAffected, ra.status}]++
		} else if ra != rb {
			want.Changed++
			if ra.status != rb.status {
				want.Transitions[[2]store.Status{rb.status, ra.status}]++
			}
		}
		for i := range want.Cohorts {
			if ra.cohorts&(1<<i) != 0 {
				want.Cohorts[i].Members++
				if rb.cohorts&(1<<i) == 0 {
					want.Cohorts[i].Added++
				}
			}
		}
	}
	for k, rb := range b {
		ra, ok := a[k]
		if !ok {
			want.Removed++
			want.Transitions[[2]store.Status{rb.status, store.NotAffected}]++
		}
		for i := range want.Cohorts {
			if rb.cohorts&(1<<i) != 0 && ra.cohorts&(1<<i) == 0 {
				want.Cohorts[i].Removed++
			}
		}
	}
	got, err := svc.Diff(ctx, incident, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("diff\n got %+v\nwant %+v", *got, want)
	}
	if got.Added == 0 || got.Removed == 0 || got.Changed == 0 {
		t.Errorf("degenerate test data: %+v", got)
	}
}

// unorderedStore scans a version in an order that breaks the contract.
type unorderedStore struct{ store.Store }

func (u unorderedStore) Scan(ctx context.Context, inc string, v uint64, fn func(store.Entry) error) error {
	var all []store.Entry
	if err := u.Store.Scan(ctx, inc, v, func(e store.Entry) error { all = append(all, e); return nil }); err != nil {
		return err
	}
	for i := len(all) - 1; i >= 0; i-- {
		if err := fn(all[i]); err != nil {
			return err
		}
	}
	return nil
}

func TestDiffDetectsUnorderedScan(t *testing.T) {
	st := openStore(t)
	upload(t, newTestService(t, st), header+"p1,affected,northland,\np2,affected,northland,\np3,affected,northland,\n")
	svc := newTestService(t, unorderedStore{st})
	if _, err := svc.Diff(context.Background(), incident, 1, 0); !errors.Is(err, store.ErrVerify) {
		t.Errorf("got %v, want ErrVerify", err)
	}
}
