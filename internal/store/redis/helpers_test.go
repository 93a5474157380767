package redisstore_test

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/store"
)

var t0 = time.Date(2025, 12, 3, 9, 30, 15, 250_000_000, time.UTC)

func testManifest(practices int) store.Manifest {
	m := store.Manifest{Spec: []byte(`{"incident":{"id":"test"}}`), Cohorts: 3}
	for i := 0; i < practices; i++ {
		m.Practices = append(m.Practices, "practice-"+string(rune('a'+i%26))+string(rune('a'+i/26%26)))
	}
	return m
}

// genEntries returns n entries with pseudo-random (HMAC-like) keys.
func genEntries(seed uint64, n int, m store.Manifest) []store.Entry {
	r := rand.New(rand.NewPCG(seed, 42))
	out := make([]store.Entry, n)
	for i := range out {
		binary.LittleEndian.PutUint64(out[i].Key[:8], r.Uint64())
		binary.LittleEndian.PutUint64(out[i].Key[8:], r.Uint64())
		out[i].Record = store.Record{Status: store.Affected, Cohorts: 1 << r.IntN(m.Cohorts)}
		if r.IntN(10) == 0 {
			out[i].Record.Status = store.UnderReview
		}
		if len(m.Practices) > 0 {
			out[i].Record.Practice = uint32(1 + r.IntN(len(m.Practices)))
		}
	}
	return out
}

func randomKey(r *rand.Rand) store.Key {
	var k store.Key
	binary.LittleEndian.PutUint64(k[:8], r.Uint64())
	binary.LittleEndian.PutUint64(k[8:], r.Uint64())
	return k
}

// loadVersion stages, loads and commits entries in batches of batch.
func loadVersion(t testing.TB, s store.Store, inc string, m store.Manifest, entries []store.Entry, batch int) store.VersionInfo {
	t.Helper()
	ctx := context.Background()
	st, err := s.Stage(ctx, store.StageRequest{Incident: inc, CreatedBy: "ops", Source: "upload", At: t0})
	if err != nil {
		t.Fatalf("stage: %v", err)
	}
	d := store.NewDigester(m.Practices)
	for i := 0; i < len(entries); i += batch {
		b := entries[i:min(len(entries), i+batch)]
		for _, e := range b {
			if err := d.Add(e); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Put(ctx, b); err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	vi, err := st.Commit(ctx, m, d.Sum(m.Spec), uint64(len(entries)))
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	return vi
}

func publishVersion(t testing.TB, s store.Store, inc string, v, expect uint64) {
	t.Helper()
	if _, err := s.Publish(context.Background(), store.PublishRequest{Incident: inc, Version: v, ExpectVisible: expect, Actor: "ops", At: t0}); err != nil {
		t.Fatalf("publish v%d: %v", v, err)
	}
}

func mustRead(t testing.TB, s store.Store, inc string, key store.Key, idem *store.IdemKey) store.View {
	t.Helper()
	v, err := s.Read(context.Background(), inc, key, idem)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return v
}

func pinAt(v uint64, r store.Record, notice string) store.Pin {
	return store.Pin{Version: v, Record: r, NoticeID: notice, NotifiedAt: t0.Add(time.Duration(v) * time.Minute)}
}
