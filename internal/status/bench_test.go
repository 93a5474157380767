package status_test

import (
	"context"
	"testing"

	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/testutil/domaintest"
)

// BenchmarkStatus is the domain's share of a patient read: keying the
// subject, the store read (embedded), the versions from the catalog and
// the rendered answer, for a subject absent from the roster, an affected
// one in two cohorts and a notified one (answered from the pin, with the
// notice footer).
//
//	go test -run '^$' -bench 'BenchmarkStatus|BenchmarkRender' -benchmem ./internal/status
func BenchmarkStatus(b *testing.B) {
	f := domaintest.New(b)
	f.Publish(b, "alice,affected,northland;referrals,GP-1", "bob,under_review,,")
	f.Claim(b, "bob", "wave-1:bob")
	ctx := context.Background()
	for _, c := range []struct{ name, subject string }{
		{"not_affected", "nobody"}, {"affected", "alice"}, {"notified", "bob"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.Status.Status(ctx, domaintest.Incident, c.subject, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRender is rendering alone: the cohorts and notice of a record
// at one version, never notified and notified (with the footer).
func BenchmarkRender(b *testing.B) {
	spec, err := snapshot.ParseSpec([]byte(domaintest.Spec))
	if err != nil {
		b.Fatal(err)
	}
	rec := store.Record{Status: store.Affected, Cohorts: 0b11}
	for _, c := range []struct{ name, noticeID string }{{"affected", ""}, {"notified", "v3-7KQ2M9XW4TABCDEF"}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if cs, n := status.Render(spec, rec, 3, c.noticeID); len(cs) != 2 || n.Body == "" {
					b.Fatal("wrong render")
				}
			}
		})
	}
}
