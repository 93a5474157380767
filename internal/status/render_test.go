package status

import (
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/store"
)

// testSpec has two cohorts (a package-internal test cannot import
// domaintest, which imports this package).
const testSpec = `
incident: {id: test-2025-12, title: Test breach}
cohorts:
  - id: northland
    title: Northland discharge summaries
    data_categories: [discharge_summary]
    support_contact: "0800 000 011"
    notice: {subject: Northland affected, body: Your discharge summaries were taken.}
  - id: referrals
    title: Referral records
    data_categories: [referral_letter]
    support_contact: "0800 000 012"
    notice: {subject: Referrals affected, body: "Your referral records were taken.\n"}
under_review_notice: {subject: Still checking, body: We are still checking.}
not_affected_notice: {subject: Not affected, body: Your information was not affected.}
`

func parseSpec(t *testing.T, extra string) *snapshot.Spec {
	t.Helper()
	s, err := snapshot.ParseSpec([]byte(testSpec + extra))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRenderCache: the cached rendering is Render's, for every status,
// cohort set and notice id, and for two specs (versions) with different
// texts; asking again returns the same (shared) cohorts.
func TestRenderCache(t *testing.T) {
	specs := []*snapshot.Spec{
		parseSpec(t, ""),
		parseSpec(t, "correction_notice: {subject: We got it wrong, body: \"You were not affected.\\n\\n\"}\n"),
	}
	var c renderCache
	for round := range 2 {
		for si, spec := range specs {
			for _, st := range []store.Status{store.NotAffected, store.Affected, store.UnderReview} {
				for cohorts := range uint64(4) {
					for _, id := range []string{"", "v7-ABCDEFGHIJKLMNOP"} {
						r := store.Record{Status: st, Cohorts: cohorts, Practice: uint32(round)}
						wantC, wantN := Render(spec, r, 7, id)
						gotC, gotN := c.render(spec, r, 7, id)
						if !reflect.DeepEqual(gotC, wantC) || gotN != wantN {
							t.Fatalf("spec %d %v cohorts %b id %q: cached %v %+v, Render %v %+v", si, st, cohorts, id, gotC, gotN, wantC, wantN)
						}
						if again, _ := c.render(spec, r, 7, id); len(again) > 0 && &again[0] != &gotC[0] {
							t.Fatalf("spec %d %v cohorts %b: cohorts rendered again, not shared", si, st, cohorts)
						}
					}
				}
			}
		}
	}
	// 2 specs x 3 statuses x 4 cohort sets x notified or not; the
	// practice (round) is no part of the key.
	if n := c.len(); n != 2*3*4*2 {
		t.Fatalf("cache holds %d entries, want %d", n, 2*3*4*2)
	}
	// The footer carries each read's own notice id and version.
	_, n := c.render(specs[1], store.Record{Status: store.NotAffected}, 9, "v9-X")
	if want := "You were not affected.\n\nReference: notice v9-X, snapshot version 9."; n.Body != want || n.Subject != "We got it wrong" {
		t.Fatalf("correction: %+v, want body %q", n, want)
	}
}

// TestRenderCacheBound: past maxRendered entries the cache starts over,
// and answers stay right.
func TestRenderCacheBound(t *testing.T) {
	spec := parseSpec(t, "")
	var c renderCache
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range uint64(maxRendered) {
				r := store.Record{Status: store.Affected, Cohorts: i<<2 | uint64(g&3)}
				wantC, wantN := Render(spec, r, 1, "")
				gotC, gotN := c.render(spec, r, 1, "")
				if !reflect.DeepEqual(gotC, wantC) || gotN != wantN {
					t.Errorf("cohorts %b: cached %v %+v, Render %v %+v", r.Cohorts, gotC, gotN, wantC, wantN)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := c.len(); n < 1 || n > maxRendered {
		t.Fatalf("cache holds %d entries, bound %d", n, maxRendered)
	}
}

// TestWithFooter: the footer is the one the email and the app always had.
func TestWithFooter(t *testing.T) {
	for _, body := range []string{"", "One line.", "Two\nlines.\n", "CRLF.\r\n\r\n"} {
		for _, v := range []uint64{0, 1, 42, 18446744073709551615} {
			want := fmt.Sprintf("%s\n\nReference: notice %s, snapshot version %d.", trimNewlines(body), "v1-ID", v)
			if got := withFooter(body, "v1-ID", v); got != want {
				t.Errorf("withFooter(%q, %d) = %q, want %q", body, v, got, want)
			}
		}
	}
}
