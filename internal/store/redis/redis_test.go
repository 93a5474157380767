package redisstore_test

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
	redisstore "github.com/impact-health/impact/internal/store/redis"
	"github.com/impact-health/impact/internal/store/storetest"
	"github.com/impact-health/impact/internal/testutil/redisserver"
)

// One redis-server for the package; every store gets its own key prefix.
var shared redisserver.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	shared.Close()
	os.Exit(code)
}

func sharedServer(t testing.TB) *redisserver.Server { return shared.Get(t) }

var prefixes atomic.Int64

// openStore returns a store on the shared server with a fresh key prefix.
func openStore(t testing.TB, opts ...redisstore.Option) (*redisstore.Store, redis.UniversalClient) {
	t.Helper()
	srv := sharedServer(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	return newStore(t, c, opts...), c
}

func newStore(t testing.TB, c redis.UniversalClient, opts ...redisstore.Option) *redisstore.Store {
	t.Helper()
	prefix := fmt.Sprintf("t%d:", prefixes.Add(1))
	s, err := redisstore.New(c, append([]redisstore.Option{redisstore.WithPrefix(prefix)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.RunConformance(t, func(t *testing.T) store.Store { s, _ := openStore(t); return s })
}

func TestConformanceFixedBuckets(t *testing.T) {
	// Many small buckets and a tiny stage buffer: several flushes per load,
	// and empty buckets.
	storetest.RunConformance(t, func(t *testing.T) store.Store {
		s, _ := openStore(t, redisstore.WithBuckets(256), redisstore.WithStageBuffer(100), redisstore.WithPinBuckets(16))
		return s
	})
}

func BenchmarkStore(b *testing.B) {
	storetest.RunBenchmarks(b, func(b *testing.B) store.Store { s, _ := openStore(b); return s })
}

func TestNewRefusesReplicaReads(t *testing.T) {
	for _, o := range []redis.ClusterOptions{
		{Addrs: []string{"127.0.0.1:1"}, ReadOnly: true},
		{Addrs: []string{"127.0.0.1:1"}, RouteByLatency: true},
		{Addrs: []string{"127.0.0.1:1"}, RouteRandomly: true},
	} {
		c := redis.NewClusterClient(&o)
		if s, err := redisstore.New(c); err == nil {
			_ = s.Close()
			t.Errorf("New accepted a cluster client with %+v", o)
		}
		_ = c.Close()
	}
}
