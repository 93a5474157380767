package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
	redisstore "github.com/impact-health/impact/internal/store/redis"
	"github.com/impact-health/impact/internal/testutil/redisserver"
)

// countRecordKeys counts the record buckets of one version by SCAN.
func countRecordKeys(t *testing.T, c *redis.Client, prefix, inc string, v uint64) int {
	t.Helper()
	n := 0
	iter := c.Scan(context.Background(), 0, fmt.Sprintf("%s{r:%s:%d:*", prefix, inc, v), 1000).Iterator()
	for iter.Next(context.Background()) {
		n++
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("scan: %v", err)
	}
	return n
}

// collectUntil runs CollectStages until it reports v.
func collectUntil(t *testing.T, s *redisstore.Store, inc string, v uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := s.CollectStages(context.Background(), inc)
		if err == nil && len(got) == 1 && got[0] == v {
			return
		}
		if err == nil && len(got) > 0 {
			t.Fatalf("collected %v, want v%d", got, v)
		}
		if time.Now().After(deadline) {
			t.Fatalf("v%d never collected (last error %v)", v, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCrashMidUploadIsCollected is the operator's crash: a stage loading
// thousands of entries, Redis killed mid-upload (the loader's Abort fails:
// store unavailable) and restarted from its append-only file, the loader
// gone. After the lease, a collection leaves 0 keys of the version in Redis
// and the version listed as aborted; the next upload gets a new number.
func TestCrashMidUploadIsCollected(t *testing.T) {
	srv := redisserver.Start(t, redisserver.AppendOnly(true), redisserver.AppendFsync("always"))
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	const prefix, inc = "crash:", "crash-inc"
	s, err := redisstore.New(c, redisstore.WithPrefix(prefix), redisstore.WithStageBuffer(1000), redisstore.WithBuckets(1024))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := testManifest(3)
	entries := genEntries(12, 20000, m)

	loader, die := context.WithCancel(context.Background())
	st, err := s.Stage(loader, store.StageRequest{Incident: inc, CreatedBy: "ops", Source: "upload", Lease: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	v := st.Version()
	for i := 0; i < 12000; i += 1000 {
		if err := st.Put(loader, entries[i:i+1000]); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	srv.Kill()
	if err := st.Put(loader, entries[12000:14000]); err == nil {
		// The buffered write may have been taken before the kill; the
		// next one cannot.
		err = st.Put(loader, entries[14000:16000])
		if err == nil {
			t.Fatal("put with Redis killed succeeded")
		}
	}
	actx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if err := st.Abort(actx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("abort with Redis down: %v, want unavailable", err)
	}
	cancel()
	die() // the loader is gone
	srv.Restart()

	if n := countRecordKeys(t, srv.Client(t), prefix, inc, v); n == 0 {
		t.Fatal("no partial records after the crash: the test did not load anything")
	}
	collectUntil(t, s, inc, v)
	if n := countRecordKeys(t, srv.Client(t), prefix, inc, v); n != 0 {
		t.Errorf("%d record keys of v%d left after collection", n, v)
	}
	vs, err := s.Versions(context.Background(), inc)
	if err != nil || len(vs) != 1 || vs[0].State != store.StateAborted {
		t.Fatalf("versions after collection: %+v, %v; want v%d aborted", vs, err, v)
	}
	next, err := s.Stage(context.Background(), store.StageRequest{Incident: inc, CreatedBy: "ops", Source: "upload"})
	if err != nil {
		t.Fatal(err)
	}
	if next.Version() != v+1 {
		t.Errorf("next stage v%d, want v%d", next.Version(), v+1)
	}
	_ = next.Abort(context.Background())
}

// TestAbandonedStagerIsCollected: a loader that stops without Abort (its
// request gone) on a healthy Redis: after its lease its records are gone.
func TestAbandonedStagerIsCollected(t *testing.T) {
	srv := sharedServer(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	const prefix, inc = "abandoned:", "abandoned-inc"
	s, err := redisstore.New(c, redisstore.WithPrefix(prefix), redisstore.WithStageBuffer(500))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := testManifest(2)
	loader, die := context.WithCancel(context.Background())
	st, err := s.Stage(loader, store.StageRequest{Incident: inc, CreatedBy: "ops", Source: "upload", Lease: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(loader, genEntries(7, 5000, m)); err != nil {
		t.Fatal(err)
	}
	die()
	if n := countRecordKeys(t, srv.Client(t), prefix, inc, st.Version()); n == 0 {
		t.Fatal("nothing was written before the loader stopped")
	}
	collectUntil(t, s, inc, st.Version())
	if n := countRecordKeys(t, srv.Client(t), prefix, inc, st.Version()); n != 0 {
		t.Errorf("%d record keys left after collection", n)
	}
}
