package snapshot

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/impact-health/impact/internal/store"
)

// FuzzParseRoster: the parser never panics, and its answer is consistent:
// either a well-formed ValidationError, or entries whose digest a store
// would verify. Seeds are in testdata/fuzz/FuzzParseRoster.
func FuzzParseRoster(f *testing.F) {
	f.Add([]byte(header + "p1,affected,northland;uploads,GP-1\np2,under_review,,\n"))
	f.Add([]byte("\xef\xbb\xbfsubject_id,status,cohorts\r\n\"p,1\",AFFECTED,referrals\r\n"))
	spec := testSpec(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var entries []store.Entry
		r, err := RosterParser{Spec: spec, Keyer: testKeyer, MaxErrors: 10}.Parse(bytes.NewReader(data), func(e store.Entry) error {
			entries = append(entries, e)
			return nil
		})
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("non-validation error from an in-memory reader: %v", err)
			}
			if len(ve.Errors) == 0 || len(ve.Errors) > 10 || ve.Total < len(ve.Errors) {
				t.Fatalf("malformed ValidationError: %d listed, total %d", len(ve.Errors), ve.Total)
			}
			if !slices.IsSortedFunc(ve.Errors, func(a, b RowError) int { return a.Row - b.Row }) || ve.Errors[0].Row < 1 {
				t.Fatalf("errors not in row order: %+v", ve.Errors)
			}
			return
		}
		if r.Entries != uint64(len(entries)) {
			t.Fatalf("Entries %d, emitted %d", r.Entries, len(entries))
		}
		seen := make(map[store.Key]bool, len(entries))
		for _, e := range entries {
			if seen[e.Key] {
				t.Fatal("duplicate key accepted")
			}
			seen[e.Key] = true
			rec := e.Record
			if rec.Status != store.Affected && rec.Status != store.UnderReview {
				t.Fatalf("status %v", rec.Status)
			}
			if rec.Status == store.Affected && rec.Cohorts == 0 {
				t.Fatal("affected without cohorts")
			}
			if rec.Cohorts>>uint(len(spec.Cohorts)) != 0 || int(rec.Practice) > len(r.Practices) {
				t.Fatalf("record out of range: %+v", rec)
			}
		}
		slices.SortFunc(entries, func(a, b store.Entry) int { return bytes.Compare(a.Key[:], b.Key[:]) })
		m := store.Manifest{Spec: spec.Canonical(), Cohorts: len(spec.Cohorts), Practices: r.Practices}
		if _, err := store.Verify(m, r.Digest, r.Entries, func(fn func(store.Entry) error) error {
			for _, e := range entries {
				if err := fn(e); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzParseSpec: the parser never panics, and an accepted spec's canonical
// form is a fixed point of both ParseSpec and DecodeSpec. Seeds are in
// testdata/fuzz/FuzzParseSpec.
func FuzzParseSpec(f *testing.F) {
	f.Add(readFile(f, "testdata/spec.yaml"))
	f.Add(readFile(f, "testdata/spec.canonical.json"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSpec(data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) == 0 || ve.Total < len(ve.Errors) {
				t.Fatalf("malformed error %T %v", err, err)
			}
			return
		}
		c := s.Canonical()
		for name, parse := range map[string]func([]byte) (*Spec, error){"ParseSpec": ParseSpec, "DecodeSpec": DecodeSpec} {
			s2, err := parse(c)
			if err != nil {
				t.Fatalf("%s of the canonical form: %v\n%s", name, err, c)
			}
			if c2 := s2.Canonical(); !bytes.Equal(c, c2) {
				t.Fatalf("%s: canonical form not stable:\n%s\n%s", name, c, c2)
			}
		}
		if len(s.Cohorts) == 0 || len(s.Cohorts) > store.MaxCohorts {
			t.Fatalf("%d cohorts accepted", len(s.Cohorts))
		}
	})
}
