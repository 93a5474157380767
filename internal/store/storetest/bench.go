package storetest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/impact-health/impact/internal/store"
)

// BenchEntries is the roster size RunBenchmarks loads and stages.
const BenchEntries = 200_000

// benchBatch is the Put batch size of the benchmarks' loads.
const benchBatch = 10_000

// RunBenchmarks measures an engine the same way as every other, so that
// their numbers compare: Read of a subject in the visible version (hit) and
// of one absent from it (miss, the common case), serially and in parallel;
// ClaimPin of a fresh subject; and a whole Stage, Put and Commit of
// BenchEntries entries. open is called once; the store must be closed by
// open's cleanup.
func RunBenchmarks(b *testing.B, open func(b *testing.B) store.Store) {
	ctx := context.Background()
	s := open(b)
	const inc = "bench"
	m := manifest(inc, 3)
	g := newKeyGen(1)
	entries := g.entries(BenchEntries, m)
	Load(b, s, inc, m, entries, benchBatch)
	Publish(b, s, inc, 1, 0)
	misses := g.keys(1 << 16)

	readBench := func(keys func(i int) store.Key, want func(store.View) bool) func(b *testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				v, err := s.Read(ctx, inc, keys(i), nil)
				if err != nil || !want(v) {
					b.Fatalf("read: %+v, %v", v, err)
				}
				i++
			}
		}
	}
	hit := func(i int) store.Key { return entries[(i*7919)%len(entries)].Key }
	miss := func(i int) store.Key { return misses[i%len(misses)] }
	isHit := func(v store.View) bool { return v.Visible == 1 && v.Record.Status != store.NotAffected }
	isMiss := func(v store.View) bool { return v.Visible == 1 && v.Record.Status == store.NotAffected }
	b.Run("Read/hit", readBench(hit, isHit))
	b.Run("Read/miss", readBench(miss, isMiss))
	parallel := func(keys func(i int) store.Key, want func(store.View) bool) func(b *testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(25) // 50 readers on 2 cores, as the load harness's c=50
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					v, err := s.Read(ctx, inc, keys(i), nil)
					if err != nil || !want(v) {
						b.Errorf("read: %+v, %v", v, err)
						return
					}
					i++
				}
			})
		}
	}
	b.Run("Read/hit-parallel", parallel(hit, isHit))
	b.Run("Read/miss-parallel", parallel(miss, isMiss))

	claims := newKeyGen(2)
	var seeds atomic.Uint64
	seeds.Store(1000)
	b.Run("Claim", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			n++
			p := PinAt(1, store.Record{Status: store.Affected, Cohorts: 1}, fmt.Sprintf("bench-%d", n))
			if err := s.ClaimPin(ctx, inc, claims.key(), nil, p, claims.idem()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Claim-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8) // 8 x GOMAXPROCS claimers, as a notifier fans out
		b.RunParallel(func(pb *testing.PB) {
			g := newKeyGen(seeds.Add(1))
			for pb.Next() {
				p := PinAt(1, store.Record{Status: store.Affected, Cohorts: 1}, "bench")
				if err := s.ClaimPin(ctx, inc, g.key(), nil, p, g.idem()); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})

	digest := Digest(b, m, entries)
	stages := 0
	b.Run(fmt.Sprintf("Stage/%dk", BenchEntries/1000), func(b *testing.B) {
		for b.Loop() {
			stages++
			st, err := s.Stage(ctx, stageReq(fmt.Sprintf("bench-stage-%d", stages)))
			if err != nil {
				b.Fatal(err)
			}
			put(b, st, entries, benchBatch)
			if _, err := st.Commit(ctx, m, digest, uint64(len(entries))); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*len(entries))/b.Elapsed().Seconds(), "entries/s")
	})
}
