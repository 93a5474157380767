package erasure_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/impact-health/impact/internal/erasure"
	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/testutil/domaintest"
)

const incident = domaintest.Incident

func eraser(f *domaintest.Fixture) *erasure.Service { return erasure.New(f.Store, f.Keyer, f.Audit) }

// TestErase: an erased subject's pins are gone, its reads are NOT_FOUND,
// its claims send nothing, the next upload drops its row (with a digest and
// count that match the rest of the roster), and erasing again is fine.
func TestErase(t *testing.T) {
	ctx := context.Background()
	f := domaintest.New(t)
	rows := []string{"alice,affected,northland,GP-1", "bob,under_review,,", "carol,affected,referrals,GP-2"}
	v1 := f.Publish(t, rows...)
	if c := f.Claim(t, "alice", "wave-1:alice"); c.Action != status.ActionSend {
		t.Fatalf("claim before erasure: %+v", c)
	}
	f.Claim(t, "bob", "wave-1:bob")

	n, err := eraser(f).Erase(ctx, "alice", "ops-erin")
	if err != nil || n != 1 {
		t.Fatalf("erase: %d pins, %v; want 1", n, err)
	}
	// Reads answer NOT_FOUND (ErrErased wraps ErrNotFound).
	for _, atLeast := range []uint64{0, v1} {
		if _, err := f.Status.Status(ctx, incident, "alice", atLeast); !errors.Is(err, status.ErrErased) || !errors.Is(err, status.ErrNotFound) {
			t.Errorf("status of an erased subject: %v, want ErrErased (NOT_FOUND)", err)
		}
	}
	if _, err := f.Status.Statuses(ctx, "alice"); !errors.Is(err, status.ErrNotFound) {
		t.Errorf("statuses of an erased subject: %v", err)
	}
	// No pin left, and a claim (even replaying the old idempotency key)
	// sends nothing and pins nothing.
	key := f.Keyer.SubjectKey("alice")
	err = f.Store.Pins(ctx, incident, func(k store.Key, _ store.Pin) error {
		if k == key {
			return errors.New("the erased subject still has a pin")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, idem := range []string{"wave-1:alice", "wave-2:alice"} {
		if c := f.Claim(t, "alice", idem); c.Action != status.ActionNone || c.NoticeID != "" {
			t.Errorf("claim %s of an erased subject: %+v, want NONE", idem, c)
		}
	}
	// Others are untouched.
	if a := f.Answer(t, "bob", 0); a.Status != store.UnderReview || a.NotifiedVersion != v1 {
		t.Errorf("bob after alice's erasure: %+v", a)
	}

	// The next upload drops alice's row; its digest is that of the roster
	// without her.
	v2 := f.Publish(t, rows...)
	info, _, err := f.Store.Version(ctx, incident, v2)
	if err != nil {
		t.Fatal(err)
	}
	if info.Counts.Entries != 2 || info.Counts.Affected != 1 || info.Counts.UnderReview != 1 {
		t.Errorf("v%d counts %+v, want 2 entries (carol affected, bob under review)", v2, info.Counts)
	}
	var keys []store.Key
	if err := f.Store.Scan(ctx, incident, v2, func(e store.Entry) error { keys = append(keys, e.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(keys, key) || len(keys) != 2 {
		t.Errorf("v%d holds %d entries, the erased subject's among them: %v", v2, len(keys), slices.Contains(keys, key))
	}
	// The same roster without alice, uploaded into another store, has the
	// same digest.
	g := domaintest.New(t)
	want := g.Stage(t, rows[1:]...)
	wantInfo, _, err := g.Store.Version(ctx, incident, want)
	if err != nil {
		t.Fatal(err)
	}
	if info.Digest != wantInfo.Digest {
		t.Errorf("digest of the upload without the erased row %s, want %s (the roster without that row)", info.Digest, wantInfo.Digest)
	}
	// The audit trail says how many rows were dropped, never whose.
	es, err := f.Audit.List(ctx, "", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var erase, upload *store.AuditEvent
	for i := range es {
		switch {
		case es[i].Action == store.AuditErase:
			erase = &es[i]
		case es[i].Action == store.AuditUpload && es[i].Version == v2:
			upload = &es[i]
		}
		if strings.Contains(es[i].Detail, "alice") || strings.Contains(es[i].Actor, "alice") {
			t.Errorf("audit event names the subject: %+v", es[i])
		}
	}
	if erase == nil || erase.Actor != "ops-erin" || erase.Incident != "" || erase.Outcome != store.OutcomeOK || erase.Detail != "account closed: 1 pins removed" {
		t.Errorf("erase event: %+v", erase)
	}
	if upload == nil || !strings.HasSuffix(upload.Detail, "; 1 rows of closed accounts dropped") {
		t.Errorf("upload event: %+v", upload)
	}

	// A rollback to v1 does not bring her back.
	rb, _, err := f.Snapshots.Rollback(ctx, incident, v1, v2, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if rb.Counts.Entries != 2 || rb.Digest != wantInfo.Digest {
		t.Errorf("rollback copy: %d entries, digest %s; want 2 and %s", rb.Counts.Entries, rb.Digest, wantInfo.Digest)
	}
	if _, err := f.Status.Status(ctx, incident, "alice", 0); !errors.Is(err, status.ErrErased) {
		t.Errorf("status after a rollback: %v", err)
	}

	// Idempotent.
	if n, err := eraser(f).Erase(ctx, "alice", "ops-erin"); err != nil || n != 0 {
		t.Errorf("second erase: %d, %v", n, err)
	}
	if _, err := eraser(f).Erase(ctx, "", "ops-erin"); !errors.Is(err, status.ErrInvalidArgument) {
		t.Errorf("erase of an empty subject id: %v", err)
	}
}

// An upload in which every row is an erased subject's stages an empty
// version rather than failing.
func TestUploadOfErasedOnly(t *testing.T) {
	ctx := context.Background()
	f := domaintest.New(t)
	if _, err := eraser(f).Erase(ctx, "alice", "ops"); err != nil {
		t.Fatal(err)
	}
	info, err := f.Snapshots.Upload(ctx, snapshot.UploadRequest{
		Incident: incident, Spec: []byte(domaintest.Spec), Actor: "ops",
		Roster: func() (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("subject_id,status,cohorts\nalice,affected,northland\n")), nil
		},
	})
	if err != nil || info.Counts.Entries != 0 {
		t.Fatalf("upload of only an erased subject: %+v, %v", info.Counts, err)
	}
}
