// Package domaintest is the fixture the domain packages' tests share: a
// temporary embedded store with the snapshot service, the patient read path
// and the ledger's operator side over it, a two-cohort incident spec, and helpers that upload,
// publish, read and claim.
package domaintest

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/impact-health/impact/internal/audit"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/notice"
	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store/embedded"
	"github.com/impact-health/impact/internal/testutil/embeddedtest"
)

// Incident is the incident of Spec.
const Incident = "test-2025-12"

// Spec defines two cohorts, northland (bit 0) and referrals (bit 1).
const Spec = `
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
    notice: {subject: Referrals affected, body: Your referral records were taken.}
under_review_notice: {subject: Still checking, body: We are still checking.}
not_affected_notice: {subject: Not affected, body: Your information was not affected.}
`

// Fixture is one store with the services over it.
type Fixture struct {
	Store     *embedded.Store
	Keyer     *auth.Keyer
	Catalog   *snapshot.Catalog
	Audit     *audit.Recorder
	Snapshots *snapshot.Service
	Status    *status.Service
	Notices   *notice.Service
}

// New opens a fixture in a temporary directory of t.
func New(t testing.TB) *Fixture {
	t.Helper()
	st := embeddedtest.Open(t)
	keyer, err := auth.NewKeyer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	cat := snapshot.NewCatalog(st, 16)
	rec := audit.New(st)
	return &Fixture{
		Store:   st,
		Keyer:   keyer,
		Catalog: cat,
		Audit:   rec,
		// No fence grace after a publish: the restore tests re-create pins
		// at the old version right after one (the grace would refuse them
		// for its duration; that refusal is tested in package snapshot).
		Snapshots: snapshot.NewService(st, keyer, snapshot.WithCatalog(cat), snapshot.WithFenceGrace(0)),
		Status:    status.New(st, cat, keyer),
		Notices:   notice.New(st, cat, keyer, rec),
	}
}

// Stage uploads Spec with a roster given as "subject,status,cohorts,practice"
// lines and returns the staged version.
func (f *Fixture) Stage(t testing.TB, rows ...string) uint64 {
	t.Helper()
	csv := "subject_id,status,cohorts,practice_id\n" + strings.Join(rows, "\n") + "\n"
	info, err := f.Snapshots.Upload(context.Background(), snapshot.UploadRequest{
		Incident: Incident, Spec: []byte(Spec), Actor: "ops",
		Roster: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(csv)), nil },
	})
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	return info.Version
}

// Publish stages rows (see Stage) and publishes the version.
func (f *Fixture) Publish(t testing.TB, rows ...string) uint64 {
	t.Helper()
	v := f.Stage(t, rows...)
	head, err := f.Store.Head(context.Background(), Incident)
	if err != nil {
		t.Fatal(err)
	}
	f.PublishReviewed(t, v, head.Visible)
	return v
}

// PublishReviewed publishes the staged version v, expecting expect visible,
// the way the runbook does: the operator reviews the corrections the diff
// reports and accepts exactly that many.
func (f *Fixture) PublishReviewed(t testing.TB, v, expect uint64) {
	t.Helper()
	ctx := context.Background()
	nc, err := f.Snapshots.Corrections(ctx, Incident, v)
	if err != nil {
		t.Fatalf("corrections of v%d: %v", v, err)
	}
	req := snapshot.PublishRequest{Incident: Incident, Version: v, ExpectVisible: expect, AcceptCorrections: nc.Total, Actor: "ops"}
	if _, _, err := f.Snapshots.PublishReviewed(ctx, req); err != nil {
		t.Fatalf("publish v%d: %v", v, err)
	}
}

// Answer is the subject's status answer, read at atLeast or later.
func (f *Fixture) Answer(t testing.TB, subject string, atLeast uint64) status.Answer {
	t.Helper()
	a, err := f.Status.Status(context.Background(), Incident, subject, atLeast)
	if err != nil {
		t.Fatalf("status(%s): %v", subject, err)
	}
	return a
}

// Claim claims the subject's notice under the idempotency key idem.
func (f *Fixture) Claim(t testing.TB, subject, idem string) status.Claim {
	t.Helper()
	c, err := f.Status.Claim(context.Background(), Incident, subject, idem)
	if err != nil {
		t.Fatalf("claim(%s): %v", subject, err)
	}
	return c
}
