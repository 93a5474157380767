package replica_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/store/embedded"
	"github.com/impact-health/impact/internal/store/replica"
	"github.com/impact-health/impact/internal/store/storetest"
	"github.com/impact-health/impact/internal/testutil/embeddedtest"
)

// The replica over the embedded store: the same protocol, over the
// in-process change log (store/embedded feed.go).

// startOver runs a replica over eng until the test ends.
func startOver(tb testing.TB, eng replica.Engine) *member {
	tb.Helper()
	m := &member{stopped: make(chan struct{})}
	r, err := replica.New(eng, replica.Config{OnServing: func(on bool) {
		if !on {
			m.stopAt.Store(time.Now().UnixNano())
			m.stops.Add(1)
		}
	}})
	if err != nil {
		tb.Fatal(err)
	}
	m.Replica = r
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() { defer close(m.stopped); _ = r.Run(ctx) }()
	tb.Cleanup(func() { m.stop(); _ = r.Close() })
	return m
}

func TestConformanceEmbedded(t *testing.T) {
	storetest.RunConformance(t, func(t *testing.T) store.Store {
		m := startOver(t, embeddedtest.Open(t))
		waitServing(t, m)
		return m.Replica
	})
}

// countingEngine counts the reads that reach the engine.
type countingEngine struct {
	*embedded.Store
	reads atomic.Int64
}

func (c *countingEngine) Read(ctx context.Context, incident string, key store.Key, idem *store.IdemKey) (store.View, error) {
	c.reads.Add(1)
	return c.Store.Read(ctx, incident, key, idem)
}

// fromMemory runs reads and reports whether none reached the engine; ok is
// false when the replica stopped serving meanwhile (a starved lease
// renewal on a loaded machine), so that the caller tries again.
func fromMemory(m *member, eng *countingEngine, reads func() error) (none, ok bool, err error) {
	stops, before := m.Stops(), eng.reads.Load()
	if !m.Serving() {
		return false, false, nil
	}
	if err := reads(); err != nil {
		return false, true, err
	}
	if m.Stops() != stops {
		return false, false, nil
	}
	return eng.reads.Load() == before, true, nil
}

func mustFromMemory(t *testing.T, m *member, eng *countingEngine, what string, reads func() error) {
	t.Helper()
	for attempt := 0; attempt < 5; attempt++ {
		waitServing(t, m)
		none, ok, err := fromMemory(m, eng, reads)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			if !none {
				t.Fatalf("%s: reads reached the engine while the replica served from memory", what)
			}
			return
		}
	}
	t.Fatalf("%s: the replica kept stopping", what)
}

// TestEmbeddedReadsFromMemory: over the embedded store, reads are answered
// from memory (none reaches bbolt), and every write is in memory once it
// returns: a claim, a publish, an account closure. Fresh reads and claim
// decisions go to the engine.
func TestEmbeddedReadsFromMemory(t *testing.T) {
	ctx := context.Background()
	eng := &countingEngine{Store: embeddedtest.Open(t)}
	m := startOver(t, eng)
	waitServing(t, m)
	es := publishRoster(t, m, "inc", 500, 1)

	mustFromMemory(t, m, eng, "reads of v1", func() error {
		for _, e := range es[:200] {
			v, err := m.Read(ctx, "inc", e.Key, nil)
			if err != nil {
				return err
			}
			if v.Visible != 1 || v.Record != e.Record || v.Pin != nil {
				return fmt.Errorf("read %+v, want v1 %+v", v, e.Record)
			}
		}
		return nil
	})
	for i, e := range es[:50] {
		if err := claim(ctx, m, "inc", e.Key, 1, e.Record, fmt.Sprintf("m-%02d", i)); err != nil {
			t.Fatal(err)
		}
		if tail, _, err := eng.FeedTail(ctx); err != nil || m.Applied() < tail {
			t.Fatalf("claim %d returned with change #%d in the log and #%d applied (%v)", i, tail, m.Applied(), err)
		}
	}
	mustFromMemory(t, m, eng, "reads of the claims", func() error {
		for i, e := range es[:50] {
			v, err := m.Read(ctx, "inc", e.Key, nil)
			if err != nil {
				return err
			}
			if v.Pin == nil || v.Pin.NoticeID != fmt.Sprintf("m-%02d", i) {
				return fmt.Errorf("claim %d: pin %+v", i, v.Pin)
			}
		}
		return nil
	})

	es2 := publishRoster(t, m, "inc", 300, 2)
	if _, err := m.Tombstone(ctx, es[1].Key); err != nil {
		t.Fatal(err)
	}
	mustFromMemory(t, m, eng, "reads after a publish and a closure", func() error {
		v, err := m.Read(ctx, "inc", es2[0].Key, nil)
		if err != nil || v.Visible != 2 || v.Record != es2[0].Record {
			return fmt.Errorf("after the publish of v2: %+v, %v", v, err)
		}
		if v, err := m.Read(ctx, "inc", es[0].Key, nil); err != nil || v.Visible != 2 || v.Pin == nil || v.Pin.Version != 1 {
			return fmt.Errorf("pinned subject after v2: %+v, %v", v, err)
		}
		if v, err := m.Read(ctx, "inc", es[1].Key, nil); err != nil || !v.Erased || v.Pin != nil {
			return fmt.Errorf("closed account: %+v, %v", v, err)
		}
		return nil
	})
	if st := m.MemoryStats(); st.Records != 300 || st.Pins != 49 || st.Tombstones != 1 {
		t.Fatalf("memory holds %+v, want v2's 300 records, 49 pins, 1 tombstone", st)
	}

	before := eng.reads.Load()
	idem := store.IdemKey(es[2].Key)
	if _, err := m.Read(store.WithFresh(ctx), "inc", es[2].Key, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Read(ctx, "inc", es[2].Key, &idem); err != nil {
		t.Fatal(err)
	}
	if n := eng.reads.Load() - before; n != 2 {
		t.Fatalf("a fresh read and a claim decision made %d engine reads, want 2", n)
	}
}

// TestEmbeddedRejoinsAfterReopen: the change log starts empty at each Open;
// a replica over the reopened store joins from the store's state (visible
// versions, pins, tombstones) and serves it from memory.
func TestEmbeddedRejoinsAfterReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "impact.db")
	st, err := embedded.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	m := startOver(t, st)
	waitServing(t, m)
	es := publishRoster(t, m, "inc", 400, 1)
	for i, e := range es[:20] {
		if err := claim(ctx, m, "inc", e.Key, 1, e.Record, fmt.Sprintf("r-%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Tombstone(ctx, es[0].Key); err != nil {
		t.Fatal(err)
	}
	m.stop()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	st, err = embedded.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if tail, _, err := st.FeedTail(ctx); err != nil || tail != 0 {
		t.Fatalf("reopened store's change log: tail %d (%v), want empty", tail, err)
	}
	eng := &countingEngine{Store: st}
	m = startOver(t, eng)
	mustFromMemory(t, m, eng, "reads after the reopen", func() error {
		for i, e := range es[:40] {
			v, err := m.Read(ctx, "inc", e.Key, nil)
			if err != nil {
				return err
			}
			switch {
			case i == 0:
				if !v.Erased {
					return fmt.Errorf("closed account: %+v", v)
				}
			case i < 20:
				if v.Pin == nil || v.Pin.NoticeID != fmt.Sprintf("r-%02d", i) || v.Record != e.Record {
					return fmt.Errorf("claim %d: %+v", i, v)
				}
			default:
				if v.Pin != nil || v.Visible != 1 || v.Record != e.Record {
					return fmt.Errorf("subject %d: %+v", i, v)
				}
			}
		}
		return nil
	})
	if m.Applied() != 0 {
		t.Fatalf("applied #%d of an empty log", m.Applied())
	}
}

// BenchmarkEmbeddedRead: a Read of the embedded store itself (one bbolt
// read transaction) and through a replica over it (from memory), on the
// same store: a subject in the visible version (hit) and one absent (miss),
// serially and in parallel.
//
//	go test -run '^$' -bench BenchmarkEmbedded -benchmem ./internal/store/replica
func BenchmarkEmbeddedRead(b *testing.B) {
	ctx := context.Background()
	eng := embeddedtest.Open(b)
	m := startOver(b, eng)
	waitServing(b, m)
	es := publishRoster(b, m, "bench", storetest.BenchEntries, 1)
	waitServing(b, m)
	misses := storetest.Entries(2, 1<<16, storetest.Manifest("bench", 3))
	for _, s := range []struct {
		name string
		st   store.Store
	}{{"bare", eng}, {"replica", m.Replica}} {
		for _, c := range []struct {
			name string
			key  func(i int) store.Key
			hit  bool
		}{
			{"hit", func(i int) store.Key { return es[(i*7919)%len(es)].Key }, true},
			{"miss", func(i int) store.Key { return misses[i%len(misses)].Key }, false},
		} {
			check := func(v store.View, err error) error {
				if err != nil || v.Visible != 1 || (v.Record.Status != store.NotAffected) != c.hit {
					return fmt.Errorf("read: %+v, %v", v, err)
				}
				return nil
			}
			b.Run(s.name+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if err := check(s.st.Read(ctx, "bench", c.key(i), nil)); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
			b.Run(s.name+"/"+c.name+"-parallel", func(b *testing.B) {
				b.ReportAllocs()
				var seed atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					i := int(seed.Add(1)) * 104729
					for pb.Next() {
						if err := check(s.st.Read(ctx, "bench", c.key(i), nil)); err != nil {
							b.Error(err)
							return
						}
						i++
					}
				})
			})
		}
	}
	if !m.Serving() {
		b.Fatal("the replica stopped serving from memory during the benchmark")
	}
}

// BenchmarkEmbeddedClaim: a claim on the embedded store itself and through
// the replica (the engine's write, then the wait for the replica's
// acknowledgement), serially and from 8 x GOMAXPROCS claimers (as a
// notifier fans out: commits and the writers' polls are shared).
func BenchmarkEmbeddedClaim(b *testing.B) {
	ctx := context.Background()
	eng := embeddedtest.Open(b)
	m := startOver(b, eng)
	waitServing(b, m)
	publishRoster(b, m, "bench", 1000, 1)
	keys := storetest.Entries(3, 1<<20, storetest.Manifest("bench", 3))
	var n atomic.Int64
	next := func() (store.Entry, string) {
		i := n.Add(1)
		return keys[int(i)%len(keys)], fmt.Sprintf("b-%d", i)
	}
	for _, s := range []struct {
		name string
		st   store.Store
	}{{"bare", eng}, {"replica", m.Replica}} {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e, id := next()
				if err := claim(ctx, s.st, "bench", e.Key, 1, e.Record, id); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					e, id := next()
					if err := claim(ctx, s.st, "bench", e.Key, 1, e.Record, id); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
