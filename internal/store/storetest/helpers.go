package storetest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/store"
)

// T0 is the base time of the suite and of the engines' own tests. It has a
// millisecond part so that a store that drops sub-second precision fails.
var T0 = time.Date(2025, 12, 3, 9, 30, 15, 250_000_000, time.UTC)

// manifest returns a small manifest with cohorts cohorts and two practices.
func manifest(incident string, cohorts int) store.Manifest {
	return store.Manifest{
		Spec:      fmt.Appendf(nil, `{"incident":{"id":%q},"cohorts":%d}`, incident, cohorts),
		Cohorts:   cohorts,
		Practices: []string{"practice-a", "practice-b"},
	}
}

// keyGen produces deterministic pseudo-random keys.
type keyGen struct{ r *rand.Rand }

func newKeyGen(seed uint64) *keyGen { return &keyGen{rand.New(rand.NewPCG(seed, 0x696d70616374))} }

func (g *keyGen) key() store.Key {
	var k store.Key
	for i := 0; i < store.KeySize; i += 8 {
		v := g.r.Uint64()
		for j := 0; j < 8; j++ {
			k[i+j] = byte(v >> (8 * j))
		}
	}
	return k
}

func (g *keyGen) idem() store.IdemKey { return store.IdemKey(g.key()) }

// keys returns n distinct keys.
func (g *keyGen) keys(n int) []store.Key {
	seen := make(map[store.Key]bool, n)
	out := make([]store.Key, 0, n)
	for len(out) < n {
		k := g.key()
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// record returns a random valid record for manifest m.
func (g *keyGen) record(m store.Manifest) store.Record {
	r := store.Record{Status: store.Affected}
	if g.r.IntN(4) == 0 {
		r.Status = store.UnderReview
	}
	if m.Cohorts > 0 {
		r.Cohorts = g.r.Uint64() & (1<<uint(m.Cohorts) - 1)
		if r.Cohorts == 0 {
			r.Cohorts = 1
		}
	}
	r.Practice = uint32(g.r.IntN(len(m.Practices) + 1))
	return r
}

// entries returns n entries with distinct keys and random records.
func (g *keyGen) entries(n int, m store.Manifest) []store.Entry {
	keys := g.keys(n)
	out := make([]store.Entry, n)
	for i, k := range keys {
		out[i] = store.Entry{Key: k, Record: g.record(m)}
	}
	return out
}

// withRecord returns entries for keys, all with record r.
func withRecord(keys []store.Key, r store.Record) []store.Entry {
	out := make([]store.Entry, len(keys))
	for i, k := range keys {
		out[i] = store.Entry{Key: k, Record: r}
	}
	return out
}

// Digest computes the digest a loader computes for entries under m.
func Digest(t testing.TB, m store.Manifest, entries []store.Entry) store.Digest {
	t.Helper()
	d := store.NewDigester(m.Practices)
	for _, e := range entries {
		if err := d.Add(e); err != nil {
			t.Fatalf("digest: %v", err)
		}
	}
	return d.Sum(m.Spec)
}

// countsOf computes the counts Verify should report for entries.
func countsOf(m store.Manifest, entries []store.Entry) store.Counts {
	c := store.Counts{PerCohort: make([][2]uint64, m.Cohorts)}
	for _, e := range entries {
		c.Add(e.Record, m.Cohorts)
	}
	return c
}

// sortedEntries returns a copy of entries in increasing key order.
func sortedEntries(entries []store.Entry) []store.Entry {
	out := slices.Clone(entries)
	slices.SortFunc(out, func(a, b store.Entry) int { return bytes.Compare(a.Key[:], b.Key[:]) })
	return out
}

// stageReq is the stage request the suite uses.
func stageReq(incident string) store.StageRequest {
	return store.StageRequest{Incident: incident, CreatedBy: "ops@example.test", Source: "upload", At: T0}
}

// put writes entries through st in batches.
func put(t testing.TB, st store.Stager, entries []store.Entry, batch int) {
	t.Helper()
	ctx := context.Background()
	if batch <= 0 {
		batch = max(len(entries), 1)
	}
	for i := 0; i < len(entries); i += batch {
		end := min(i+batch, len(entries))
		if err := st.Put(ctx, entries[i:end]); err != nil {
			t.Fatalf("put v%d [%d:%d]: %v", st.Version(), i, end, err)
		}
	}
}

// Load stages a version of incident (stamped T0), puts entries in batches
// of batch, and commits it with manifest m and the digest a loader
// computes, failing t on any error. batch <= 0 puts them all at once.
func Load(t testing.TB, s store.Versions, incident string, m store.Manifest, entries []store.Entry, batch int) store.VersionInfo {
	t.Helper()
	ctx := context.Background()
	st, err := s.Stage(ctx, stageReq(incident))
	if err != nil {
		t.Fatalf("stage %s: %v", incident, err)
	}
	put(t, st, entries, batch)
	info, err := st.Commit(ctx, m, Digest(t, m, entries), uint64(len(entries)))
	if err != nil {
		t.Fatalf("commit %s v%d: %v", incident, st.Version(), err)
	}
	return info
}

// Publish publishes version (stamped T0 plus an hour), expecting the
// visible version to be expect, failing t on any error.
func Publish(t testing.TB, s store.Versions, incident string, version, expect uint64) store.VersionInfo {
	t.Helper()
	info, err := s.Publish(context.Background(), store.PublishRequest{Incident: incident, Version: version, ExpectVisible: expect, Actor: "ops@example.test", At: T0.Add(time.Hour)})
	if err != nil {
		t.Fatalf("publish %s v%d (expect v%d): %v", incident, version, expect, err)
	}
	return info
}

// scanAll returns every entry of a version, checking strictly increasing
// key order.
func scanAll(t testing.TB, s store.Store, incident string, version uint64) []store.Entry {
	t.Helper()
	var out []store.Entry
	err := s.Scan(context.Background(), incident, version, func(e store.Entry) error {
		if n := len(out); n > 0 && bytes.Compare(out[n-1].Key[:], e.Key[:]) >= 0 {
			return fmt.Errorf("scan order: entry %d key %x does not follow %x", n, e.Key, out[n-1].Key)
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatalf("scan %s v%d: %v", incident, version, err)
	}
	return out
}

// equalEntries reports the first difference between two sorted entry lists.
func diffEntries(got, want []store.Entry) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d entries, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Sprintf("entry %d: got %x %+v, want %x %+v", i, got[i].Key, got[i].Record, want[i].Key, want[i].Record)
		}
	}
	return ""
}

// equalCounts compares counts, treating a nil and an empty PerCohort alike.
func equalCounts(a, b store.Counts) bool {
	return a.Entries == b.Entries && a.Affected == b.Affected && a.UnderReview == b.UnderReview &&
		slices.Equal(a.PerCohort, b.PerCohort)
}

// diffInfo reports the first difference between two version infos.
func diffInfo(got, want store.VersionInfo) string {
	switch {
	case got.Incident != want.Incident:
		return fmt.Sprintf("incident %q, want %q", got.Incident, want.Incident)
	case got.Version != want.Version:
		return fmt.Sprintf("version %d, want %d", got.Version, want.Version)
	case got.State != want.State:
		return fmt.Sprintf("state %s, want %s", got.State, want.State)
	case got.Digest != want.Digest:
		return fmt.Sprintf("digest %s, want %s", got.Digest, want.Digest)
	case !equalCounts(got.Counts, want.Counts):
		return fmt.Sprintf("counts %+v, want %+v", got.Counts, want.Counts)
	case got.CreatedBy != want.CreatedBy:
		return fmt.Sprintf("created by %q, want %q", got.CreatedBy, want.CreatedBy)
	case !got.CreatedAt.Equal(want.CreatedAt):
		return fmt.Sprintf("created at %s, want %s", got.CreatedAt, want.CreatedAt)
	case got.PublishedBy != want.PublishedBy:
		return fmt.Sprintf("published by %q, want %q", got.PublishedBy, want.PublishedBy)
	case !got.PublishedAt.Equal(want.PublishedAt):
		return fmt.Sprintf("published at %s, want %s", got.PublishedAt, want.PublishedAt)
	case got.Source != want.Source:
		return fmt.Sprintf("source %q, want %q", got.Source, want.Source)
	}
	return ""
}

// samePin reports whether two pins are equal (times compared with Equal).
func samePin(a, b *store.Pin) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Version == b.Version && a.Record == b.Record && a.NoticeID == b.NoticeID && a.NotifiedAt.Equal(b.NotifiedAt)
}

func fmtPin(p *store.Pin) string {
	if p == nil {
		return "<nil>"
	}
	return fmt.Sprintf("{v%d %+v %q %s}", p.Version, p.Record, p.NoticeID, p.NotifiedAt.Format(time.RFC3339Nano))
}

// Read reads a subject's view or fails t.
func Read(t testing.TB, s store.Ledger, incident string, key store.Key, idem *store.IdemKey) store.View {
	t.Helper()
	v, err := s.Read(context.Background(), incident, key, idem)
	if err != nil {
		t.Fatalf("read %s: %v", incident, err)
	}
	return v
}

// PinAt returns a pin of record r at version v, notified v minutes after
// T0.
func PinAt(v uint64, r store.Record, notice string) store.Pin {
	return store.Pin{Version: v, Record: r, NoticeID: notice, NotifiedAt: T0.Add(time.Duration(v) * time.Minute)}
}

// workerIdem derives a distinct idempotency key per worker and claim.
func workerIdem(w int, n int64) store.IdemKey {
	var k store.IdemKey
	k[0] = byte(w)
	for i := 0; i < 8; i++ {
		k[8+i] = byte(n >> (8 * i))
	}
	return k
}

// Manifest is the suite's small manifest, for engines' and decorators' own
// tests.
func Manifest(incident string, cohorts int) store.Manifest { return manifest(incident, cohorts) }

// Entries returns n entries with distinct pseudo-random keys and records
// valid for m.
func Entries(seed uint64, n int, m store.Manifest) []store.Entry {
	return newKeyGen(seed).entries(n, m)
}
