package redisstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
	redisstore "github.com/impact-health/impact/internal/store/redis"
	"github.com/impact-health/impact/internal/store/storetest"
	"github.com/impact-health/impact/internal/testutil/redisserver"
)

// TestCluster runs stage, publish, claim and read against a 3-master Redis
// Cluster: every script and transaction must stay within one slot, and the
// data must spread over the masters.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	ctx := context.Background()
	cl := redisserver.StartCluster(t, 3)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), ContextTimeoutEnabled: true})
	s, err := redisstore.New(cc, redisstore.WithPinBuckets(64))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckDurability(ctx); err == nil {
		t.Error("CheckDurability passed on masters without AOF")
	}

	const inc = "cluster"
	m := testManifest(3)
	e := genEntries(11, 5000, m)
	vi := storetest.Load(t, s, inc, m, e, 1000)
	if vi.Version != 1 || vi.Counts.Entries != uint64(len(e)) {
		t.Fatalf("staged %+v", vi)
	}
	storetest.Publish(t, s, inc, 1, 0)
	if n := countScan(t, s, inc, 1); n != len(e) {
		t.Fatalf("scan: %d entries", n)
	}

	// v2 drops the first 100 entries.
	storetest.Load(t, s, inc, m, e[100:], 1000)

	// Claim for the first 200 subjects at v1, then publish v2 while reads
	// run, then read: pinned subjects answer from their pins.
	pins := map[store.Key]store.Pin{}
	for i := 0; i < 200; i++ {
		p := storetest.PinAt(1, e[i].Record, "n-"+string(rune('a'+i%26))+string(rune('a'+i/26)))
		idem := store.IdemKey(e[i].Key)
		idem[15] ^= 1
		if err := s.ClaimPin(ctx, inc, e[i].Key, nil, p, idem); err != nil {
			t.Fatalf("claim %d: %v", i, err)
		}
		pins[e[i].Key] = p
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 300; i++ {
			v, err := s.Read(ctx, inc, e[i].Key, nil)
			if err != nil {
				t.Errorf("read during publish: %v", err)
				return
			}
			// Invariant 2: the record is from exactly the visible version.
			want := e[i].Record
			if v.Visible == 2 && i < 100 {
				want = store.Record{}
			}
			if v.Record != want {
				t.Errorf("read at v%d: %+v, want %+v", v.Visible, v.Record, want)
			}
		}
	}()
	storetest.Publish(t, s, inc, 2, 1)
	wg.Wait()

	for i := 0; i < 300; i++ {
		idem := store.IdemKey(e[i].Key)
		idem[15] ^= 1
		v := storetest.Read(t, s, inc, e[i].Key, &idem)
		if v.Visible != 2 {
			t.Fatalf("visible %d", v.Visible)
		}
		p, pinned := pins[e[i].Key]
		switch {
		case pinned && (v.Pin == nil || v.Pin.NoticeID != p.NoticeID || v.Replay == nil || v.Replay.NoticeID != p.NoticeID):
			t.Errorf("subject %d: pin %+v replay %+v, want %s", i, v.Pin, v.Replay, p.NoticeID)
		case !pinned && v.Pin != nil:
			t.Errorf("subject %d: unexpected pin", i)
		case i < 100 && v.Record.Status != store.NotAffected:
			t.Errorf("subject %d: %v at v2, want not affected", i, v.Record.Status)
		}
	}
	// A correction claim moves subject 0 forward to v2 (not affected).
	p0 := pins[e[0].Key]
	next := storetest.PinAt(2, store.Record{}, "corr-0")
	if err := s.ClaimPin(ctx, inc, e[0].Key, &p0, next, store.IdemKey{9}); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := s.Pins(ctx, inc, func(store.Key, store.Pin) error { n++; return nil }); err != nil || n != 200 {
		t.Errorf("Pins: %d, %v", n, err)
	}
	if err := s.DeleteVersion(ctx, inc, 1); err == nil {
		t.Error("deleted v1 while pins refer to it")
	}

	// A claim at a version that is being deleted is undone (the check after
	// the write, Cluster only).
	if err := cc.HSet(ctx, "impact:{i:"+inc+"}:versions", "1:state", 5, "1:prev", 3).Err(); err != nil {
		t.Fatal(err)
	}
	late := store.IdemKey{8}
	err = s.ClaimPin(ctx, inc, e[4000].Key, nil, storetest.PinAt(1, e[4000].Record, "late"), late)
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("claim on a deleting version: %v, want ErrConflict", err)
	}
	if v := storetest.Read(t, s, inc, e[4000].Key, &late); v.Pin != nil || v.Replay != nil {
		t.Errorf("undone claim left pin %+v replay %+v", v.Pin, v.Replay)
	}
	if err := cc.HSet(ctx, "impact:{i:"+inc+"}:versions", "1:state", 3).Err(); err != nil {
		t.Fatal(err)
	}

	// Keys spread over every master: no tag covers a whole snapshot.
	var mu sync.Mutex
	sizes := map[string]int64{}
	err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		n, err := c.DBSize(ctx).Result()
		mu.Lock()
		sizes[c.Options().Addr] = n
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for addr, n := range sizes {
		if n < 50 {
			t.Errorf("master %s holds %d keys: records are not spread", addr, n)
		}
	}
}

// TestConformanceCluster runs the conformance suite on a Redis Cluster.
func TestConformanceCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	cl := redisserver.StartCluster(t, 3)
	storetest.RunConformance(t, func(t *testing.T) store.Store {
		cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), ContextTimeoutEnabled: true})
		// Reads auto-pipelined, as Open builds the store: on a Cluster
		// every read goes to Redis.
		rc := readClient(t, redisstore.Config{ClusterAddrs: cl.Addrs()})
		return newStore(t, cc, redisstore.WithPinBuckets(64), redisstore.WithReadClient(rc))
	})
}
