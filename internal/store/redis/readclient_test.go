package redisstore_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"

	"github.com/impact-health/impact/internal/store"
	redisstore "github.com/impact-health/impact/internal/store/redis"
	"github.com/impact-health/impact/internal/store/storetest"
	"github.com/impact-health/impact/internal/testutil/netproxy"
	"github.com/impact-health/impact/internal/testutil/redisserver"
)

// readClient is the auto-pipelining read client Open would build for the
// standalone server at addr.
func readClient(t testing.TB, cfg redisstore.Config) rueidis.Client {
	t.Helper()
	rc, err := cfg.NewReadClient()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// The conformance suite with Read's pipeline on the auto-pipelining client,
// as Open (impactd) builds the store.
func TestConformanceAutoPipelined(t *testing.T) {
	storetest.RunConformance(t, func(t *testing.T) store.Store {
		rc := readClient(t, redisstore.Config{URL: "redis://" + sharedServer(t).Addr()})
		s, _ := openStore(t, redisstore.WithReadClient(rc))
		return s
	})
}

// With Redis hung (a partition: bytes held, connections open), auto-
// pipelined reads, queued behind each other on shared connections, still
// fail at their own deadline, each with ErrUnavailable; once Redis answers
// again the same store reads again, without a restart.
func TestAutoPipelinedReadEndsAtDeadline(t *testing.T) {
	srv := redisserver.Start(t)
	proxy, err := netproxy.Start(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	rc := readClient(t, redisstore.Config{URL: "redis://" + proxy.Addr()})
	s, err := redisstore.New(redis.NewClient(&redis.Options{Addr: proxy.Addr(), ContextTimeoutEnabled: true}), redisstore.WithReadClient(rc))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const inc = "hung"
	e := publishEntries(t, s, inc, 31, 200, 100)
	if v := storetest.Read(t, s, inc, e[0].Key, nil); v.Record != e[0].Record {
		t.Fatalf("read before the partition: %+v", v)
	}

	proxy.Freeze()
	const deadline = 300 * time.Millisecond
	const readers = 20
	var wg sync.WaitGroup
	errs := make([]error, readers)
	took := make([]time.Duration, readers)
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			start := time.Now()
			_, errs[i] = s.Read(ctx, inc, e[i].Key, nil)
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	for i := range readers {
		if !errors.Is(errs[i], store.ErrUnavailable) {
			t.Errorf("read %d with Redis hung: %v, want ErrUnavailable", i, errs[i])
		}
		// Bounded by its context, not by the connection timeout (2 s) or
		// the commands queued before it: a wide bound (a loaded machine
		// under -race) that only a read held past its deadline misses.
		if took[i] > deadline+1200*time.Millisecond {
			t.Errorf("read %d with Redis hung returned after %s, its deadline was %s", i, took[i], deadline)
		}
	}

	proxy.Thaw()
	var v store.View
	for end := time.Now().Add(10 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		v, err = s.Read(ctx, inc, e[1].Key, nil)
		cancel()
		if err == nil || time.Now().After(end) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || v.Record != e[1].Record {
		t.Fatalf("read after Redis answered again: %+v, %v", v, err)
	}
}

// BenchmarkFallbackReads measures the reads that go to Redis (a replica
// not serving from memory, a Cluster) with many in flight: Read's pipeline
// through go-redis (one pooled connection and round trip per read) and
// through the auto-pipelining client (concurrent reads share them).
// SetParallelism(25): 50 readers on 2 cores, the load harness's c.
//
//	go test -run '^$' -bench BenchmarkFallbackReads -benchmem ./internal/store/redis
func BenchmarkFallbackReads(b *testing.B) {
	srv := redisserver.Start(b, redisserver.AppendOnly(true), redisserver.AppendFsync("always"))
	for _, tc := range []struct {
		name string
		opts func() []redisstore.Option
	}{
		{"go-redis pipeline", func() []redisstore.Option { return nil }},
		{"rueidis auto-pipelined", func() []redisstore.Option {
			return []redisstore.Option{redisstore.WithReadClient(readClient(b, redisstore.Config{URL: "redis://" + srv.Addr()}))}
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := newStore(b, redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true}), tc.opts()...)
			const inc = "fallback"
			e := publishEntries(b, s, inc, 32, 20000, 1000)
			storetest.Read(b, s, inc, e[0].Key, nil) // learns the layout
			b.SetParallelism(25)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := rand.New(rand.NewPCG(rand.Uint64(), 1))
				for pb.Next() {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					_, err := s.Read(ctx, inc, e[r.IntN(len(e))].Key, nil)
					cancel()
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
