package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/store/embedded"
	"github.com/impact-health/impact/internal/testutil/embeddedtest"
)

const incident = "test-2025-12"

var t0 = time.Date(2025, 12, 20, 8, 0, 0, 0, time.UTC)

// openStore opens a real embedded store in a temporary directory.
func openStore(t testing.TB) *embedded.Store { return embeddedtest.Open(t) }

func newTestService(t testing.TB, st store.Store, opts ...Option) *Service {
	return NewService(st, testKeyer, append([]Option{WithClock(func() time.Time { return t0 })}, opts...)...)
}

// rosterOpener serves roster contents, one per open (the last repeats), and
// counts opens.
type rosterOpener struct {
	contents []string
	opens    atomic.Int32
	err      error // returned by the second open if set
}

func (o *rosterOpener) open() (io.ReadCloser, error) {
	n := int(o.opens.Add(1))
	if n == 2 && o.err != nil {
		return nil, o.err
	}
	c := o.contents[min(n, len(o.contents))-1]
	return io.NopCloser(strings.NewReader(c)), nil
}

func specYAML(t testing.TB) []byte { return readFile(t, "testdata/spec.yaml") }

func upload(t testing.TB, svc *Service, roster string) store.VersionInfo {
	t.Helper()
	o := &rosterOpener{contents: []string{roster}}
	info, err := svc.Upload(context.Background(), UploadRequest{Incident: incident, Spec: specYAML(t), Roster: o.open, Actor: "ops-alice"})
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// scanAll returns a version's entries in scan order.
func scanAll(t testing.TB, st store.Store, version uint64) []store.Entry {
	t.Helper()
	var out []store.Entry
	if err := st.Scan(context.Background(), incident, version, func(e store.Entry) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestUpload(t *testing.T) {
	st := openStore(t)
	svc := newTestService(t, st, WithBatchSize(7)) // several Puts
	lines := rosterLines(100, 11)
	csv := header + strings.Join(lines, "\n")
	want, entries, err := parse(t, csv)
	if err != nil {
		t.Fatal(err)
	}
	o := &rosterOpener{contents: []string{csv}}
	info, err := svc.Upload(context.Background(), UploadRequest{Incident: incident, Spec: specYAML(t), Roster: o.open, Actor: "ops-alice"})
	if err != nil {
		t.Fatal(err)
	}
	if o.opens.Load() != 2 {
		t.Errorf("roster opened %d times, want 2", o.opens.Load())
	}
	if info.Version != 1 || info.State != store.StateStaged || info.Digest != want.Digest ||
		info.Source != "upload" || info.CreatedBy != "ops-alice" || !info.CreatedAt.Equal(t0) {
		t.Errorf("info %+v", info)
	}
	if fmt.Sprint(info.Counts) != fmt.Sprint(want.Counts) {
		t.Errorf("counts %+v, want %+v", info.Counts, want.Counts)
	}
	slices.SortFunc(entries, func(a, b store.Entry) int { return bytes.Compare(a.Key[:], b.Key[:]) })
	if got := scanAll(t, st, 1); !slices.Equal(got, entries) {
		t.Errorf("stored %d entries differ from the %d parsed", len(got), len(entries))
	}
	v, err := svc.Catalog().Get(context.Background(), incident, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(v.Manifest.Spec, testSpec(t).Canonical()) || v.Manifest.Cohorts != 3 || !slices.Equal(v.Manifest.Practices, want.Practices) {
		t.Errorf("manifest %+v", v.Manifest)
	}
	head, err := st.Head(context.Background(), incident)
	if err != nil || head.Visible != 0 || head.Latest != 1 {
		t.Errorf("head %+v, %v: an upload must not publish", head, err)
	}
}

// TestUploadRejectedStagesNothing: invariant 8, whole or nothing.
func TestUploadRejectedStagesNothing(t *testing.T) {
	otherIncident := strings.Replace(string(specYAML(t)), "id: test-2025-12", "id: other-incident", 1)
	tests := []struct {
		name   string
		spec   string
		roster string
		opens  int32
		field  string
	}{
		{"invalid roster", "", header + "p1,affected,northland,\np2,affected,nowhere,\n", 1, "cohorts"},
		{"duplicate subject", "", header + "p1,affected,northland,\np1,affected,northland,\n", 1, "subject_id"},
		{"invalid spec", "incident: {id: test-2025-12}\n", header, 0, "incident.title"},
		{"spec of another incident", otherIncident, header, 0, "incident.id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t)
			svc := newTestService(t, st)
			spec := specYAML(t)
			if tc.spec != "" {
				spec = []byte(tc.spec)
			}
			o := &rosterOpener{contents: []string{tc.roster}}
			_, err := svc.Upload(context.Background(), UploadRequest{Incident: incident, Spec: spec, Roster: o.open})
			ve := validationError(t, err)
			if ve.Errors[0].Field != tc.field {
				t.Errorf("error %v, want field %s", ve, tc.field)
			}
			if o.opens.Load() != tc.opens {
				t.Errorf("roster opened %d times, want %d", o.opens.Load(), tc.opens)
			}
			if _, err := st.Head(context.Background(), incident); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("head after a rejected upload: %v; want no incident (nothing staged)", err)
			}
		})
	}
}

// faultStore wraps a real store and makes its stagers fail on demand.
type faultStore struct {
	store.Store
	failPut    error
	failCommit error
}

func (f *faultStore) Stage(ctx context.Context, req store.StageRequest) (store.Stager, error) {
	s, err := f.Store.Stage(ctx, req)
	if err != nil {
		return nil, err
	}
	return &faultStager{Stager: s, f: f}, nil
}

type faultStager struct {
	store.Stager
	f *faultStore
}

func (s *faultStager) Put(ctx context.Context, entries []store.Entry) error {
	if s.f.failPut != nil {
		return s.f.failPut
	}
	return s.Stager.Put(ctx, entries)
}

func (s *faultStager) Commit(ctx context.Context, m store.Manifest, want store.Digest, n uint64) (store.VersionInfo, error) {
	if s.f.failCommit != nil {
		return store.VersionInfo{}, s.f.failCommit
	}
	return s.Stager.Commit(ctx, m, want, n)
}

// TestUploadLoadFailureAborts: a failure after staging began aborts the
// version; nothing becomes visible and the error says why.
func TestUploadLoadFailureAborts(t *testing.T) {
	valid := header + "p1,affected,northland,\np2,under_review,,\n"
	boom := errors.New("boom")
	tests := []struct {
		name   string
		opener *rosterOpener
		fault  faultStore
		is     error
		asVE   bool
	}{
		{"roster changed between passes", &rosterOpener{contents: []string{valid, header + "p1,affected,northland,\np3,under_review,,\n"}}, faultStore{}, store.ErrVerify, false},
		{"roster shorter the second time", &rosterOpener{contents: []string{valid, header + "p1,affected,northland,\n"}}, faultStore{}, store.ErrVerify, false},
		// The load pass does not check duplicates again (RosterParser.validated):
		// the duplicate changes the digest.
		{"roster with a duplicate the second time", &rosterOpener{contents: []string{valid, header + "p1,affected,northland,\np1,under_review,,\n"}}, faultStore{}, store.ErrVerify, false},
		{"roster invalid the second time", &rosterOpener{contents: []string{valid, header + "p1,affected,northland,\np2,bogus,,\n"}}, faultStore{}, nil, true},
		{"roster cannot be reopened", &rosterOpener{contents: []string{valid}, err: boom}, faultStore{}, boom, false},
		{"put fails", &rosterOpener{contents: []string{valid}}, faultStore{failPut: boom}, boom, false},
		{"commit fails", &rosterOpener{contents: []string{valid}}, faultStore{failCommit: store.ErrUnavailable}, store.ErrUnavailable, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t)
			fs := tc.fault
			fs.Store = st
			svc := newTestService(t, &fs)
			_, err := svc.Upload(context.Background(), UploadRequest{Incident: incident, Spec: specYAML(t), Roster: tc.opener.open})
			if err == nil {
				t.Fatal("upload succeeded")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v, want it to wrap %v", err, tc.is)
			}
			if tc.asVE != errors.As(err, new(*ValidationError)) {
				t.Errorf("error %v: ValidationError %v, want %v", err, !tc.asVE, tc.asVE)
			}
			_, infos, err := svc.List(context.Background(), incident)
			if err != nil {
				t.Fatal(err)
			}
			if len(infos) != 1 || infos[0].State != store.StateAborted {
				t.Errorf("versions %+v, want one aborted", infos)
			}
		})
	}
}

func TestListAndPublish(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	svc := newTestService(t, st)
	if _, _, err := svc.List(ctx, incident); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("list of an unknown incident: %v, want ErrNotFound", err)
	}
	upload(t, svc, header+"p1,affected,northland,\n")
	upload(t, svc, header+"p1,affected,northland,\np2,affected,uploads,\n")

	head, infos, err := svc.List(ctx, incident)
	if err != nil {
		t.Fatal(err)
	}
	if head.Visible != 0 || head.Latest != 2 || len(infos) != 2 || infos[0].Version != 2 || infos[1].Version != 1 {
		t.Fatalf("head %+v, versions %+v; want newest first", head, infos)
	}

	if _, _, err := svc.Publish(ctx, incident, 1, 5, "ops-bob"); !errors.Is(err, store.ErrConflict) {
		t.Errorf("publish with a stale expectation: %v, want ErrConflict", err)
	}
	if _, _, err := svc.Publish(ctx, incident, 9, 0, "ops-bob"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("publish of an unknown version: %v, want ErrNotFound", err)
	}
	info, prev, err := svc.Publish(ctx, incident, 2, 0, "ops-bob")
	if err != nil {
		t.Fatal(err)
	}
	if prev != 0 || info.Version != 2 || info.State != store.StatePublished || info.PublishedBy != "ops-bob" || !info.PublishedAt.Equal(t0) {
		t.Errorf("published %+v, previous %d", info, prev)
	}
	if _, _, err := svc.Publish(ctx, incident, 1, 2, "ops-bob"); !errors.Is(err, store.ErrConflict) {
		t.Errorf("publishing an older version: %v, want ErrConflict (visible versions only move forward)", err)
	}
	// The refusals say which: stale expectation or an older version, with
	// the numbers, without anyone parsing the message.
	var ve *VersionError
	if _, _, err := svc.Publish(ctx, incident, 1, 2, "ops-bob"); !errors.As(err, &ve) || !errors.Is(err, ErrNotAfterVisible) ||
		ve.Version != 1 || ve.Visible != 2 || err.Error() != "v1 is not after the visible v2" {
		t.Errorf("publishing an older version: %v (%+v), want ErrNotAfterVisible naming v1 and v2", err, ve)
	}
	if _, _, err := svc.Publish(ctx, incident, 1, 0, "ops-bob"); !errors.As(err, &ve) || !errors.Is(err, ErrStaleVisible) ||
		ve.Expected != 0 || ve.Visible != 2 || err.Error() != "the visible version is now v2, not v0" {
		t.Errorf("publish with a stale expectation: %v (%+v), want ErrStaleVisible naming v2 and v0", err, ve)
	}
	if _, _, err := svc.Publish(ctx, incident, 9, 2, "ops-bob"); !errors.As(err, &ve) || !errors.Is(err, store.ErrNotFound) ||
		err.Error() != incident+" v9 not found" {
		t.Errorf("publish of an unknown version: %v, want a VersionError without store prefixes", err)
	}
	head, _, _ = svc.List(ctx, incident)
	if head.Visible != 2 {
		t.Errorf("visible %d, want 2", head.Visible)
	}
}

func TestRollback(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	svc := newTestService(t, st, WithBatchSize(100))
	v1 := upload(t, svc, header+strings.Join(rosterLines(1000, 1), "\n"))
	if _, _, err := svc.Publish(ctx, incident, 1, 0, "ops"); err != nil {
		t.Fatal(err)
	}
	upload(t, svc, header+strings.Join(rosterLines(700, 2), "\n"))
	if _, _, err := svc.Publish(ctx, incident, 2, 1, "ops"); err != nil {
		t.Fatal(err)
	}

	// A stale expectation stages nothing.
	if _, _, err := svc.Rollback(ctx, incident, 1, 1, "ops-carol"); !errors.Is(err, store.ErrConflict) {
		t.Errorf("rollback with a stale expectation: %v, want ErrConflict", err)
	}
	if head, _ := st.Head(ctx, incident); head.Latest != 2 {
		t.Errorf("latest %d after a refused rollback, want 2", head.Latest)
	}

	info, prev, err := svc.Rollback(ctx, incident, 1, 2, "ops-carol")
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != 3 || prev != 2 || info.State != store.StatePublished || info.Source != "rollback of v1" ||
		info.CreatedBy != "ops-carol" || info.Digest != v1.Digest || info.Counts.Entries != 1000 {
		t.Errorf("rollback info %+v, previous %d", info, prev)
	}
	if !slices.Equal(scanAll(t, st, 3), scanAll(t, st, 1)) {
		t.Error("rolled back content differs from v1")
	}
	d, err := svc.Diff(ctx, incident, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	if d.Added+d.Removed+d.Changed != 0 || d.SpecChanged || len(d.Transitions) != 0 {
		t.Errorf("diff of a rollback against its source: %+v", d)
	}
	if head, _ := st.Head(ctx, incident); head.Visible != 3 {
		t.Errorf("visible %d, want 3", head.Visible)
	}

	if _, _, err := svc.Rollback(ctx, incident, 42, 3, "ops"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rollback to an unknown version: %v, want ErrNotFound", err)
	}
	// An aborted version is no rollback source.
	o := &rosterOpener{contents: []string{header + "p1,affected,northland,\n", header}}
	if _, err := svc.Upload(ctx, UploadRequest{Incident: incident, Spec: specYAML(t), Roster: o.open}); err == nil {
		t.Fatal("upload of a changing roster succeeded")
	}
	if _, _, err := svc.Rollback(ctx, incident, 4, 3, "ops"); !errors.Is(err, store.ErrNotStaged) {
		t.Errorf("rollback to an aborted version: %v, want ErrNotStaged", err)
	}
}

// TestRollbackPublishLost: when the publish of the copy loses its
// compare-and-set, the copy stays staged and the error names it.
func TestRollbackPublishLost(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	racer := &publishRacer{Store: st}
	svc := newTestService(t, racer)
	upload(t, svc, header+"p1,affected,northland,\n")
	upload(t, svc, header+"p2,affected,northland,\n")
	racer.before = func() {
		if _, err := st.Publish(ctx, store.PublishRequest{Incident: incident, Version: 2, ExpectVisible: 0, Actor: "someone else", At: t0}); err != nil {
			t.Error(err)
		}
	}
	_, _, err := svc.Rollback(ctx, incident, 1, 0, "ops")
	if !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), "v3 is staged") {
		t.Errorf("got %v, want ErrConflict naming the staged copy", err)
	}
	_, infos, _ := svc.List(ctx, incident)
	if infos[0].Version != 3 || infos[0].State != store.StateStaged || infos[0].Digest != infos[2].Digest {
		t.Errorf("copy %+v, want v3 staged with v1's digest", infos[0])
	}
}

// publishRacer runs before() once just before the first Publish.
type publishRacer struct {
	store.Store
	before func()
	once   sync.Once
}

func (p *publishRacer) Publish(ctx context.Context, req store.PublishRequest) (store.VersionInfo, error) {
	if p.before != nil {
		p.once.Do(p.before)
	}
	return p.Store.Publish(ctx, req)
}

func TestUploadCanceled(t *testing.T) {
	st := openStore(t)
	svc := newTestService(t, st)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	o := &rosterOpener{contents: []string{header + "p1,affected,northland,\n"}}
	_, err := svc.Upload(ctx, UploadRequest{Incident: incident, Spec: specYAML(t), Roster: o.open})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	if _, err := st.Head(context.Background(), incident); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("head after a canceled upload: %v; want nothing staged", err)
	}
}

// TestUploadReadRate: a read-rate cap leaves the result exactly as without
// it (reads are cut to the burst, rows straddle the cuts), and an upload
// held back by the cap still ends when its context does.
func TestUploadReadRate(t *testing.T) {
	lines := rosterLines(3000, 5)
	csv := header + strings.Join(lines, "\n") // ~100 KB: more than one burst
	want, _, err := parse(t, csv)
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t)
	svc := newTestService(t, st, WithReadRate(64<<20))
	info := upload(t, svc, csv)
	if info.Digest != want.Digest || info.Counts.Entries != want.Entries {
		t.Fatalf("capped upload: %+v, want digest %s and %d entries", info, want.Digest, want.Entries)
	}

	slow := newTestService(t, openStore(t), WithReadRate(1)) // one byte per second: never finishes
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		o := &rosterOpener{contents: []string{csv}}
		_, err := slow.Upload(ctx, UploadRequest{Incident: incident, Spec: specYAML(t), Roster: o.open})
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled capped upload: %v, want context.Canceled", err)
	}
}
