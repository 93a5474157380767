package redisstore_test

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/store/storetest"
)

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

// publishEntries loads n entries generated from seed (one practice) into
// incident as its first version, in batches of batch, publishes it and
// returns them.
func publishEntries(t testing.TB, s store.Versions, incident string, seed uint64, n, batch int) []store.Entry {
	t.Helper()
	m := testManifest(1)
	e := genEntries(seed, n, m)
	storetest.Load(t, s, incident, m, e, batch)
	storetest.Publish(t, s, incident, 1, 0)
	return e
}
