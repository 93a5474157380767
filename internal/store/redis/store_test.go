package redisstore_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
	redisstore "github.com/impact-health/impact/internal/store/redis"
	"github.com/impact-health/impact/internal/store/storetest"
	"github.com/impact-health/impact/internal/testutil/redisserver"
)

// prefixOf finds the key prefix a store uses from its incidents set.
func keysWithPrefix(t *testing.T, c redis.UniversalClient, prefix string) []string {
	t.Helper()
	var out []string
	iter := c.Scan(context.Background(), 0, prefix+"*", 1000).Iterator()
	for iter.Next(context.Background()) {
		out = append(out, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// A replica that missed the pub/sub notice of a publish still answers from
// the version the pointer names: the visible-version cache is a hint.
func TestReadWithStaleVisibleHint(t *testing.T) {
	ctx := context.Background()
	srv := sharedServer(t)
	c := srv.Client(t)
	prefix := fmt.Sprintf("stale%d:", time.Now().UnixNano())
	open := func() *redisstore.Store {
		s, err := redisstore.New(redis.NewClient(&redis.Options{Addr: srv.Addr()}), redisstore.WithPrefix(prefix))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	a, b := open(), open()
	const inc = "stale"
	m := testManifest(2)
	e := genEntries(1, 500, m)
	storetest.Load(t, a, inc, m, e, 100)
	storetest.Publish(t, a, inc, 1, 0)
	if v := storetest.Read(t, b, inc, e[0].Key, nil); v.Visible != 1 || v.Record != e[0].Record {
		t.Fatalf("b reads %+v at v1", v)
	}
	// v2 drops e[0]; flip the pointer behind the stores' backs (no pub/sub
	// notice), as if the notice was lost.
	storetest.Load(t, a, inc, m, e[1:], 100)
	if err := c.HSet(ctx, prefix+"{i:"+inc+"}:head", "visible", 2).Err(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*redisstore.Store{a, b} {
		v := storetest.Read(t, s, inc, e[0].Key, nil)
		if v.Visible != 2 || v.Record.Status != store.NotAffected {
			t.Errorf("read after an unannounced publish: %+v, want v2 not affected", v)
		}
		if v := storetest.Read(t, s, inc, e[1].Key, nil); v.Visible != 2 || v.Record != e[1].Record {
			t.Errorf("read of a kept entry: %+v", v)
		}
	}
}

// If a visible version's bucket is missing, a read fails closed rather
// than answering "not affected".
func TestReadFailsClosedOnMissingRecords(t *testing.T) {
	ctx := context.Background()
	srv := sharedServer(t)
	c := srv.Client(t)
	prefix := fmt.Sprintf("missing%d:", time.Now().UnixNano())
	s, err := redisstore.New(redis.NewClient(&redis.Options{Addr: srv.Addr()}), redisstore.WithPrefix(prefix), redisstore.WithBuckets(4))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	const inc = "missing"
	e := publishEntries(t, s, inc, 2, 100, 100)
	storetest.Read(t, s, inc, e[0].Key, nil)
	for _, k := range keysWithPrefix(t, c, prefix+"{r:") {
		if err := c.Unlink(ctx, k).Err(); err != nil {
			t.Fatal(err)
		}
	}
	absent := randomKey(rand.New(rand.NewPCG(9, 9)))
	for _, k := range []store.Key{e[0].Key, absent} {
		if _, err := s.Read(ctx, inc, k, nil); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("read with the records gone: %v, want ErrUnavailable", err)
		}
	}
	if _, err := s.Records(ctx, inc, 1, []store.Key{absent}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Records with the records gone: %v, want ErrUnavailable", err)
	}
	if err := s.Scan(ctx, inc, 1, func(store.Entry) error { return nil }); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Scan with the records gone: %v, want ErrUnavailable", err)
	}
}

// Key names carry hash tags per bucket or per incident, and never a subject
// key or idempotency key.
func TestKeyNames(t *testing.T) {
	ctx := context.Background()
	srv := sharedServer(t)
	c := srv.Client(t)
	prefix := fmt.Sprintf("names%d:", time.Now().UnixNano())
	s, err := redisstore.New(redis.NewClient(&redis.Options{Addr: srv.Addr()}), redisstore.WithPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	const inc = "names"
	m := testManifest(3)
	e := genEntries(3, 2000, m)
	storetest.Load(t, s, inc, m, e, 500)
	storetest.Publish(t, s, inc, 1, 0)
	idem := store.IdemKey(randomKey(rand.New(rand.NewPCG(4, 4))))
	if err := s.ClaimPin(ctx, inc, e[0].Key, nil, storetest.PinAt(1, e[0].Record, "n-1"), idem); err != nil {
		t.Fatal(err)
	}
	keys := keysWithPrefix(t, c, prefix)
	if len(keys) < 10 {
		t.Fatalf("only %d keys", len(keys))
	}
	tags := map[string]bool{}
	for _, k := range keys {
		if i := strings.IndexByte(k, '{'); i >= 0 {
			tags[k[i:strings.IndexByte(k, '}')+1]] = true
		}
		for _, secret := range [][]byte{e[0].Key[:], idem[:], e[0].Key[:4], idem[:4]} {
			if bytes.Contains([]byte(k), secret) || strings.Contains(k, hex.EncodeToString(secret)) {
				t.Errorf("key name %q holds a subject or idempotency key", k)
			}
		}
	}
	// 2000 entries at ~32 per bucket: 64 record buckets, each its own tag.
	if len(tags) < 64 {
		t.Errorf("%d distinct hash tags for %d keys: want one per bucket", len(tags), len(keys))
	}
}

// Buckets adapt to the roster size and stay listpack-encoded; Scan returns
// increasing key order across buckets.
func TestBucketsAndScanOrder(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		opts    []redisstore.Option
		entries int
		buckets int
	}{
		{"adaptive small", nil, 10, 1},
		{"adaptive", nil, 5000, 256},
		{"adaptive with flushes", []redisstore.Option{redisstore.WithStageBuffer(1000)}, 5000, 128},
		{"fixed", []redisstore.Option{redisstore.WithBuckets(64)}, 5000, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := sharedServer(t)
			c := srv.Client(t)
			prefix := fmt.Sprintf("buckets%d:", time.Now().UnixNano())
			s, err := redisstore.New(redis.NewClient(&redis.Options{Addr: srv.Addr()}), append(tc.opts, redisstore.WithPrefix(prefix))...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			m := testManifest(3)
			e := genEntries(5, tc.entries, m)
			storetest.Load(t, s, "b", m, e, 700)
			buckets := keysWithPrefix(t, c, prefix+"{r:")
			if len(buckets) != tc.buckets {
				t.Errorf("%d buckets, want %d", len(buckets), tc.buckets)
			}
			for _, k := range buckets[:min(20, len(buckets))] {
				if enc, err := c.ObjectEncoding(ctx, k).Result(); err != nil || enc != "listpack" {
					t.Errorf("bucket encoding %q, %v; want listpack", enc, err)
				}
			}
			var prev *store.Key
			n := 0
			err = s.Scan(ctx, "b", 1, func(en store.Entry) error {
				if prev != nil && bytes.Compare(prev[:], en.Key[:]) >= 0 {
					return fmt.Errorf("scan order: %x after %x", en.Key, *prev)
				}
				k := en.Key
				prev = &k
				n++
				return nil
			})
			if err != nil || n != tc.entries {
				t.Fatalf("scan: %d entries, %v", n, err)
			}
		})
	}
}

func TestDeleteVersion(t *testing.T) {
	ctx := context.Background()
	srv := sharedServer(t)
	c := srv.Client(t)
	prefix := fmt.Sprintf("gc%d:", time.Now().UnixNano())
	s, err := redisstore.New(redis.NewClient(&redis.Options{Addr: srv.Addr()}), redisstore.WithPrefix(prefix), redisstore.WithPinBuckets(8))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	const inc = "gc"
	m := testManifest(2)
	e := genEntries(6, 300, m)
	for v := uint64(1); v <= 4; v++ {
		storetest.Load(t, s, inc, m, e, 100)
	}
	storetest.Publish(t, s, inc, 1, 0)
	r := rand.New(rand.NewPCG(6, 6))
	// e[0] is pinned at v1; e[1] was pinned at v1 then moved to v2, leaving
	// an idempotency record at v1.
	claim := func(k store.Key, old *store.Pin, p store.Pin) {
		t.Helper()
		if err := s.ClaimPin(ctx, inc, k, old, p, store.IdemKey(randomKey(r))); err != nil {
			t.Fatal(err)
		}
	}
	p0 := storetest.PinAt(1, e[0].Record, "n-0")
	claim(e[0].Key, nil, p0)
	p1 := storetest.PinAt(1, e[1].Record, "n-1")
	claim(e[1].Key, nil, p1)
	storetest.Publish(t, s, inc, 2, 1)
	p1b := storetest.PinAt(2, store.Record{}, "n-1b")
	claim(e[1].Key, &p1, p1b)
	storetest.Publish(t, s, inc, 3, 2)

	for _, tc := range []struct {
		v    uint64
		want error
	}{
		{3, store.ErrPinned},   // visible
		{1, store.ErrPinned},   // e[0]'s pin
		{2, store.ErrPinned},   // e[1]'s pin
		{9, store.ErrNotFound}, // never existed
	} {
		if err := s.DeleteVersion(ctx, inc, tc.v); !errors.Is(err, tc.want) {
			t.Errorf("DeleteVersion(v%d): %v, want %v", tc.v, err, tc.want)
		}
	}
	// Refusals leave versions intact.
	if n := countScan(t, s, inc, 1); n != len(e) {
		t.Errorf("v1 has %d entries after a refused delete", n)
	}
	// v4 is staged, unpinned, not visible: deleted whole.
	if err := s.DeleteVersion(ctx, inc, 4); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Version(ctx, inc, 4); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Version after delete: %v", err)
	}
	if k := keysWithPrefix(t, c, prefix+"{r:"+inc+":4:"); len(k) != 0 {
		t.Errorf("%d record buckets of v4 remain", len(k))
	}
	if k := keysWithPrefix(t, c, prefix+"{i:"+inc+"}:manifest:4"); len(k) != 0 {
		t.Errorf("manifest of v4 remains")
	}
	if _, err := s.Publish(ctx, store.PublishRequest{Incident: inc, Version: 4, ExpectVisible: 3, Actor: "ops", At: storetest.T0}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("publish of a deleted version: %v", err)
	}
	// Move e[0] on: v1 becomes deletable, and e[1]'s replay record at v1
	// goes with it.
	p0b := storetest.PinAt(3, e[0].Record, "n-0b")
	claim(e[0].Key, &p0, p0b)
	if err := s.DeleteVersion(ctx, inc, 1); err != nil {
		t.Fatal(err)
	}
	idems := 0
	for _, k := range keysWithPrefix(t, c, prefix+"{p:") {
		if strings.HasSuffix(k, ":idem") {
			n, _ := c.HLen(ctx, k).Result()
			idems += int(n)
		}
	}
	if idems != 2 { // e[1] at v2, e[0] at v3
		t.Errorf("%d idempotency records remain, want 2", idems)
	}
	vs, err := s.Versions(ctx, inc)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, vi := range vs {
		got = append(got, vi.Version)
	}
	if fmt.Sprint(got) != "[2 3]" {
		t.Errorf("versions after deletes: %v, want [2 3]", got)
	}
	// Version numbers are never reused.
	if vi := storetest.Load(t, s, inc, m, e, 100); vi.Version != 5 {
		t.Errorf("next version %d, want 5", vi.Version)
	}
}

// A claim that lands on a version while it is being deleted is undone and
// reported as a conflict, so the caller decides again.
func TestClaimOnDeletingVersion(t *testing.T) {
	ctx := context.Background()
	srv := sharedServer(t)
	c := srv.Client(t)
	prefix := fmt.Sprintf("race%d:", time.Now().UnixNano())
	s, err := redisstore.New(redis.NewClient(&redis.Options{Addr: srv.Addr()}), redisstore.WithPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	const inc = "race"
	m := testManifest(1)
	e := genEntries(7, 50, m)
	storetest.Load(t, s, inc, m, e, 50)
	storetest.Load(t, s, inc, m, e, 50)
	storetest.Publish(t, s, inc, 1, 0)
	storetest.Publish(t, s, inc, 2, 1)
	idem := store.IdemKey(randomKey(rand.New(rand.NewPCG(7, 7))))
	first := storetest.PinAt(2, e[0].Record, "first")
	if err := s.ClaimPin(ctx, inc, e[0].Key, nil, first, store.IdemKey{}); err != nil {
		t.Fatal(err)
	}
	// DeleteVersion's first step, as a concurrent deletion would leave it.
	if err := c.HSet(ctx, prefix+"{i:"+inc+"}:versions", "1:state", 5, "1:prev", 3).Err(); err != nil {
		t.Fatal(err)
	}
	// A stale claim at v1 would be refused by the forward-only rule; use a
	// fresh subject.
	err = s.ClaimPin(ctx, inc, e[1].Key, nil, storetest.PinAt(1, e[1].Record, "late"), idem)
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("claim on a deleting version: %v, want ErrConflict", err)
	}
	v := storetest.Read(t, s, inc, e[1].Key, &idem)
	if v.Pin != nil || v.Replay != nil {
		t.Errorf("an undone claim left pin %+v, replay %+v", v.Pin, v.Replay)
	}
	if v := storetest.Read(t, s, inc, e[0].Key, nil); v.Pin == nil || v.Pin.NoticeID != "first" {
		t.Errorf("other pin disturbed: %+v", v.Pin)
	}
}

func countScan(t *testing.T, s store.Store, inc string, v uint64) int {
	t.Helper()
	n := 0
	if err := s.Scan(context.Background(), inc, v, func(store.Entry) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCheckDurability(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		opts []redisserver.Option
		want string // "" for no error
	}{
		{"always", []redisserver.Option{redisserver.AppendOnly(true), redisserver.AppendFsync("always")}, ""},
		{"everysec", []redisserver.Option{redisserver.AppendOnly(true), redisserver.AppendFsync("everysec")}, "up to about one second"},
		{"no fsync", []redisserver.Option{redisserver.AppendOnly(true), redisserver.AppendFsync("no")}, "appendfsync is no"},
		{"no aof", nil, "appendonly is \"no\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redisserver.Start(t, tc.opts...)
			s, err := redisstore.New(redis.NewClient(&redis.Options{Addr: srv.Addr()}))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			err = s.CheckDurability(ctx)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("CheckDurability: %v", err)
				}
				return
			}
			if !errors.Is(err, redisstore.ErrVolatileLedger) || !strings.Contains(err.Error(), tc.want) ||
				!strings.Contains(err.Error(), "failover") {
				t.Fatalf("CheckDurability: %v; want ErrVolatileLedger mentioning %q and failover", err, tc.want)
			}
		})
	}
}

// With appendfsync always, every acknowledged pin survives a SIGKILL of
// redis-server.
func TestPinsSurviveRedisCrash(t *testing.T) {
	ctx := context.Background()
	srv := redisserver.Start(t, redisserver.AppendOnly(true), redisserver.AppendFsync("always"))
	open := func() *redisstore.Store {
		s, err := redisstore.New(redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1}))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	if err := s.CheckDurability(ctx); err != nil {
		t.Fatal(err)
	}
	const inc = "crash"
	m := testManifest(2)
	e := genEntries(8, 2000, m)
	storetest.Load(t, s, inc, m, e, 500)
	storetest.Publish(t, s, inc, 1, 0)

	// Claim concurrently and SIGKILL the server in the middle.
	const workers = 8
	var (
		mu     sync.Mutex
		acked  = map[store.Key]store.Pin{}
		wg     sync.WaitGroup
		kill   sync.Once
		failed int
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(e); i += workers {
				p := storetest.PinAt(1, e[i].Record, fmt.Sprintf("n-%d", i))
				var idem store.IdemKey
				copy(idem[:], e[i].Key[:])
				idem[0] ^= 0xff
				if err := s.ClaimPin(ctx, inc, e[i].Key, nil, p, idem); err != nil {
					if !errors.Is(err, store.ErrUnavailable) {
						t.Errorf("claim: %v", err)
					}
					mu.Lock()
					failed++
					mu.Unlock()
					return
				}
				mu.Lock()
				acked[e[i].Key] = p
				n := len(acked)
				mu.Unlock()
				if n >= 300 {
					kill.Do(srv.Kill) // while the other workers claim
				}
			}
		}(w)
	}
	wg.Wait()
	srv.Kill()
	_ = s.Close()
	if len(acked) < 300 || failed == 0 {
		t.Fatalf("%d claims acknowledged, %d failed: the crash did not interrupt claims", len(acked), failed)
	}
	srv.Restart()
	s = open()
	defer s.Close()
	found := map[store.Key]store.Pin{}
	if err := s.Pins(ctx, inc, func(k store.Key, p store.Pin) error { found[k] = p; return nil }); err != nil {
		t.Fatal(err)
	}
	lost := 0
	for k, p := range acked {
		got, ok := found[k]
		if !ok || got.NoticeID != p.NoticeID || got.Version != p.Version {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged pins lost after SIGKILL", lost, len(acked))
	}
	t.Logf("%d acknowledged pins (%d claims cut by the crash), all present after SIGKILL and restart (%d pins on disk)", len(acked), failed, len(found))
	if v := storetest.Read(t, s, inc, e[0].Key, nil); v.Visible != 1 {
		t.Errorf("visible after restart: %d", v.Visible)
	}
}

// Redis down: every call fails with ErrUnavailable within the deadline;
// once Redis is back, the same store works again.
func TestUnavailableAndRecovery(t *testing.T) {
	srv := redisserver.Start(t, redisserver.AppendOnly(true), redisserver.AppendFsync("always"))
	s, err := redisstore.New(redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const inc = "down"
	e := publishEntries(t, s, inc, 9, 100, 100)
	storetest.Read(t, s, inc, e[0].Key, nil)
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := s.Read(ctx, inc, e[0].Key, nil); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Read with Redis down: %v, want ErrUnavailable", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Ping with Redis down: %v", err)
	}
	if err := s.ClaimPin(ctx, inc, e[0].Key, nil, storetest.PinAt(1, e[0].Record, "n"), store.IdemKey{}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("ClaimPin with Redis down: %v", err)
	}
	if _, err := s.Head(ctx, inc); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Head with Redis down: %v", err)
	}
	srv.Restart()
	if v := storetest.Read(t, s, inc, e[0].Key, nil); v.Record != e[0].Record {
		t.Errorf("read after recovery: %+v", v)
	}
}

// WithWait: a pin is acknowledged only once a replica has it.
func TestWaitForReplicas(t *testing.T) {
	ctx := context.Background()
	primary := redisserver.Start(t, redisserver.Config("repl-diskless-sync-delay 0"))
	replica := redisserver.Start(t, redisserver.Config("replicaof 127.0.0.1 "+strings.Split(primary.Addr(), ":")[1]))
	rc := replica.Client(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, _ := rc.Info(ctx, "replication").Result()
		if strings.Contains(info, "master_link_status:up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("replica did not connect")
		}
		time.Sleep(50 * time.Millisecond)
	}
	s, err := redisstore.New(redis.NewClient(&redis.Options{Addr: primary.Addr(), ContextTimeoutEnabled: true}),
		redisstore.WithWait(1, 2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const inc = "wait"
	e := publishEntries(t, s, inc, 10, 100, 100)
	if err := s.ClaimPin(ctx, inc, e[0].Key, nil, storetest.PinAt(1, e[0].Record, "n-0"), store.IdemKey{1}); err != nil {
		t.Fatalf("claim with a replica: %v", err)
	}
	// The replica has the pin the moment the claim is acknowledged.
	found := false
	for _, k := range keysWithPrefix(t, rc, "impact:{p:"+inc+":") {
		if ok, _ := rc.HExists(ctx, k, string(e[0].Key[:])).Result(); ok {
			found = true
		}
	}
	if !found {
		t.Error("acknowledged pin not on the replica")
	}
	// No replica: the claim is not acknowledged.
	replica.Stop()
	s2, err := redisstore.New(redis.NewClient(&redis.Options{Addr: primary.Addr(), ContextTimeoutEnabled: true}),
		redisstore.WithWait(1, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	err = s2.ClaimPin(ctx, inc, e[1].Key, nil, storetest.PinAt(1, e[1].Record, "n-1"), store.IdemKey{2})
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "0 of 1 replicas") {
		t.Errorf("claim without a replica: %v, want ErrUnavailable (0 of 1 replicas)", err)
	}
}

// roundTrips counts the commands and pipelines a client sends.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

// In the common case a status read is one round trip: the pointer, the
// record, the pin and the replay record in one pipeline.
func TestReadIsOneRoundTrip(t *testing.T) {
	srv := sharedServer(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	hook := &roundTrips{}
	c.AddHook(hook)
	s := newStore(t, c)
	const inc = "rt"
	e := publishEntries(t, s, inc, 12, 1000, 1000)
	idem := store.IdemKey{7}
	storetest.Read(t, s, inc, e[0].Key, &idem) // learns the incident's layout
	r := rand.New(rand.NewPCG(12, 12))
	for i := 0; i < 20; i++ {
		k := e[i].Key
		if i%2 == 1 {
			k = randomKey(r) // absent: the common case
		}
		before := hook.n.Load()
		storetest.Read(t, s, inc, k, &idem)
		if n := hook.n.Load() - before; n != 1 {
			t.Fatalf("read %d took %d round trips, want 1", i, n)
		}
	}
}
