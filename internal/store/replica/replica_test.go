package replica_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
	redisstore "github.com/impact-health/impact/internal/store/redis"
	"github.com/impact-health/impact/internal/store/replica"
	"github.com/impact-health/impact/internal/store/storetest"
	"github.com/impact-health/impact/internal/testutil/netproxy"
	"github.com/impact-health/impact/internal/testutil/redisserver"
)

// One redis-server for the package; every test's replicas share a fresh
// key prefix (one deployment), each replica with its own client.
var shared redisserver.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	shared.Close()
	os.Exit(code)
}

func server(t testing.TB) *redisserver.Server { return shared.Get(t) }

var prefixes atomic.Int64

// cutLease is short so that the cut tests take about a second; the others
// run with the default lease, so that a loaded machine does not make
// leases lapse.
const (
	cutLease  = 600 * time.Millisecond
	cutMargin = 60 * time.Millisecond
)

type deployment struct {
	t             testing.TB
	prefix        string
	addr          string
	lease, margin time.Duration
}

func newDeployment(t testing.TB) *deployment {
	return &deployment{t: t, prefix: fmt.Sprintf("r%d:", prefixes.Add(1)), addr: server(t).Addr(),
		lease: replica.DefaultLease, margin: replica.DefaultMargin}
}

type member struct {
	*replica.Replica
	stopped chan struct{}
	cancel  context.CancelFunc
	stops   atomic.Int64 // times it stopped answering from memory
	stopAt  atomic.Int64 // unix ns of the last stop
}

// start opens a replica on addr (the server's, or a proxy's) and runs it.
func (d *deployment) start(addr string, opts ...redisstore.Option) *member {
	d.t.Helper()
	if addr == "" {
		addr = d.addr
	}
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	eng, err := redisstore.New(c, append([]redisstore.Option{redisstore.WithPrefix(d.prefix)}, opts...)...)
	if err != nil {
		d.t.Fatal(err)
	}
	m := &member{stopped: make(chan struct{})}
	r, err := replica.New(eng, replica.Config{Lease: d.lease, Margin: d.margin, OnServing: func(on bool) {
		if !on {
			m.stopAt.Store(time.Now().UnixNano())
			m.stops.Add(1)
		}
	}})
	if err != nil {
		d.t.Fatal(err)
	}
	m.Replica = r
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() { defer close(m.stopped); _ = r.Run(ctx) }()
	d.t.Cleanup(func() { m.stop(); _ = r.Close() })
	return m
}

func (m *member) stop() {
	m.cancel()
	<-m.stopped
}

// waitServing waits until the replica answers from memory.
func waitServing(t testing.TB, ms ...*member) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, m := range ms {
		for !m.Serving() {
			if time.Now().After(deadline) {
				t.Fatal("replica does not serve from memory")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func TestConformance(t *testing.T) {
	storetest.RunConformance(t, func(t *testing.T) store.Store {
		m := newDeployment(t).start("")
		waitServing(t, m)
		return m.Replica
	})
}

// publishRoster stages and publishes n affected entries on s.
func publishRoster(t testing.TB, s store.Store, incident string, n int, seed uint64) []store.Entry {
	t.Helper()
	ctx := context.Background()
	h, err := s.Head(ctx, incident)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	m := storetest.Manifest(incident, 3)
	es := storetest.Entries(seed, n, m)
	vi := storetest.Load(t, s, incident, m, es, 500)
	storetest.Publish(t, s, incident, vi.Version, h.Visible)
	return es
}

func claim(ctx context.Context, s store.Store, incident string, key store.Key, version uint64, rec store.Record, id string) error {
	var idem store.IdemKey
	copy(idem[:], id)
	return s.ClaimPin(ctx, incident, key, nil, store.Pin{Version: version, Record: rec, NoticeID: id, NotifiedAt: storetest.T0}, idem)
}

// TestClaimOnASeenOnB: a claim acknowledged by replica A is seen by every
// read started afterwards on replica B, while other reads race on B.
func TestClaimOnASeenOnB(t *testing.T) {
	d := newDeployment(t)
	a, b := d.start(""), d.start("")
	es := publishRoster(t, a, "inc", 2000, 1)
	waitServing(t, a, b)
	ctx := context.Background()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 9))
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := b.Read(ctx, "inc", es[r.IntN(len(es))].Key, nil); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(50 * time.Microsecond) // race, without starving the replicas' loops
			}
		}(g)
	}
	fromMemory := 0
	for i, e := range es[:300] {
		id := fmt.Sprintf("n-%04d", i)
		if err := claim(ctx, a, "inc", e.Key, 1, e.Record, id); err != nil {
			t.Fatal(err)
		}
		if b.Serving() {
			fromMemory++
		}
		v, err := b.Read(ctx, "inc", e.Key, nil)
		if err != nil {
			t.Fatal(err)
		}
		if v.Pin == nil || v.Pin.NoticeID != id {
			t.Fatalf("claim %d acknowledged on A is not seen by a read on B started after it: %+v", i, v.Pin)
		}
	}
	close(stop)
	wg.Wait()
	if fromMemory == 0 {
		t.Fatal("B never answered from memory: the test did not test the protocol")
	}
	t.Logf("%d of 300 checks while B served from memory", fromMemory)
}

func (m *member) Stops() int64 { return m.stops.Load() }

// TestPublishSeenByEveryReplica: once Publish returns, every replica
// answers at the new version.
func TestPublishSeenByEveryReplica(t *testing.T) {
	d := newDeployment(t)
	ms := []*member{d.start(""), d.start(""), d.start("")}
	publishRoster(t, ms[0], "inc", 500, 1)
	waitServing(t, ms...)
	ctx := context.Background()
	for round := 2; round <= 4; round++ {
		es := publishRoster(t, ms[round%3], "inc", 500, uint64(round))
		for i, m := range ms {
			v, err := m.Read(ctx, "inc", es[0].Key, nil)
			if err != nil {
				t.Fatal(err)
			}
			if v.Visible != uint64(round) || v.Record != es[0].Record {
				t.Fatalf("replica %d answers v%d %+v after publish of v%d returned (want %+v)", i, v.Visible, v.Record, round, es[0].Record)
			}
		}
	}
	// A publish right after its commit may find the version still
	// loading: such a replica stops serving (writers stop waiting for it),
	// loads, and serves again.
	waitServing(t, ms...)
	for i, m := range ms {
		for deadline := time.Now().Add(5 * time.Second); m.LiveReplicas() != 3; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("replica %d counts %d live replicas, want 3 (a global rate limit is divided by it)", i, m.LiveReplicas())
			}
		}
		if st := m.MemoryStats(); st.Records != 500 {
			t.Errorf("replica %d holds %d records of the visible version, want 500 (older tables must go)", i, st.Records)
		}
	}
}

// TestCutReplicaStopsBeforeClaimCompletes: a replica whose connection to
// Redis freezes stops answering from memory, and a claim on another
// replica completes only after that.
func TestCutReplicaStopsBeforeClaimCompletes(t *testing.T) {
	d := newDeployment(t)
	d.lease, d.margin = cutLease, cutMargin
	px, err := netproxy.Start(d.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	a, b := d.start(""), d.start(px.Addr())
	es := publishRoster(t, a, "inc", 200, 1)
	waitServing(t, a, b)
	ctx := context.Background()

	stopsBefore := b.Stops()
	px.Freeze()
	frozenAt := time.Now()
	if err := claim(ctx, a, "inc", es[0].Key, 1, es[0].Record, "cut-1"); err != nil {
		t.Fatal(err)
	}
	claimedAt := time.Now()
	if b.Stops() == stopsBefore {
		t.Fatal("the claim completed while the cut replica still answered from memory")
	}
	if stopAt := time.Unix(0, b.stopAt.Load()); !stopAt.Before(claimedAt) {
		t.Fatalf("cut replica stopped at %v, after the claim completed at %v", stopAt, claimedAt)
	}
	if b.Serving() {
		t.Fatal("cut replica still serving from memory")
	}
	// Its reads now go to Redis, which it cannot reach: fail closed.
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	_, err = b.Read(rctx, "inc", es[0].Key, nil)
	cancel()
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("read on the cut replica: %v, want ErrUnavailable", err)
	}
	t.Logf("claim waited %v for the cut replica (lease %v)", claimedAt.Sub(frozenAt), cutLease)

	// Healed, it catches up before it serves again, and sees the claim.
	px.Thaw()
	waitServing(t, b)
	v, err := b.Read(ctx, "inc", es[0].Key, nil)
	if err != nil || v.Pin == nil || v.Pin.NoticeID != "cut-1" {
		t.Fatalf("healed replica: %+v, %v; want the claim made while it was cut", v.Pin, err)
	}
}

// TestJoinDuringWave: a replica that joins while claims are written misses
// none of them; one restarted in the middle of the wave catches up.
func TestJoinDuringWave(t *testing.T) {
	d := newDeployment(t)
	a := d.start("")
	es := publishRoster(t, a, "inc", 3000, 1)
	waitServing(t, a)
	ctx := context.Background()
	var restarted *member
	b := d.start("")
	for i, e := range es[:1500] {
		switch i {
		case 300:
			restarted = d.start("") // joins mid-wave
		case 900:
			b.stop() // leaves mid-wave ...
		case 1000:
			b = d.start("") // ... and comes back
		}
		if err := claim(ctx, a, "inc", e.Key, 1, e.Record, fmt.Sprintf("w-%04d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitServing(t, restarted, b)
	for _, m := range []*member{restarted, b} {
		for i, e := range es[:1500] {
			v, err := m.Read(ctx, "inc", e.Key, nil)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("w-%04d", i); v.Pin == nil || v.Pin.NoticeID != want {
				t.Fatalf("claim %d missing on a replica that joined during the wave: %+v", i, v.Pin)
			}
		}
		if st := m.MemoryStats(); st.Pins != 1500 {
			t.Fatalf("replica holds %d pins, want 1500", st.Pins)
		}
	}
}

// TestGapLoadsAgain: a replica that missed changes the stream no longer
// holds loads everything again instead of answering without them.
func TestGapLoadsAgain(t *testing.T) {
	d := newDeployment(t)
	px, err := netproxy.Start(d.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	a, b := d.start("", redisstore.WithChangeLog(1000)), d.start(px.Addr(), redisstore.WithChangeLog(1000))
	es := publishRoster(t, a, "inc", 3000, 1)
	waitServing(t, a, b)
	ctx := context.Background()
	px.Freeze()
	for i, e := range es[:2500] { // far more than the stream keeps
		if err := claim(ctx, a, "inc", e.Key, 1, e.Record, fmt.Sprintf("g-%04d", i)); err != nil {
			t.Fatal(err)
		}
	}
	c := redis.NewClient(&redis.Options{Addr: d.addr})
	defer c.Close()
	if n, err := c.XLen(ctx, d.prefix+"{c}:changes").Result(); err != nil || n >= 2500 {
		t.Fatalf("stream holds %d changes (%v): the test needs it trimmed", n, err)
	}
	px.Thaw()
	waitServing(t, b)
	for i, e := range es[:2500] {
		v, err := b.Read(ctx, "inc", e.Key, nil)
		if err != nil {
			t.Fatal(err)
		}
		if v.Pin == nil || v.Pin.NoticeID != fmt.Sprintf("g-%04d", i) {
			t.Fatalf("claim %d missing after the gap: %+v", i, v.Pin)
		}
	}
}

// TestAtLeastAheadGoesToRedis: a fresh read is answered by the engine.
func TestFreshReadAndTombstone(t *testing.T) {
	d := newDeployment(t)
	a, b := d.start(""), d.start("")
	es := publishRoster(t, a, "inc", 100, 1)
	waitServing(t, a, b)
	ctx := context.Background()
	if err := claim(ctx, a, "inc", es[1].Key, 1, es[1].Record, "t-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Tombstone(ctx, es[1].Key); err != nil {
		t.Fatal(err)
	}
	for _, c := range []context.Context{ctx, store.WithFresh(ctx)} {
		v, err := b.Read(c, "inc", es[1].Key, nil)
		if err != nil || !v.Erased || v.Pin != nil {
			t.Fatalf("erased subject on B (fresh %v): %+v, %v", store.IsFresh(c), v, err)
		}
	}
}

// BenchmarkClaim measures a claim's write and its wait for the replicas'
// acknowledgements, 32 claims in flight (as a wave sends them), with 1 and
// 3 replicas on one Redis, against the bare engine (no wait).
func BenchmarkClaim(b *testing.B) {
	for _, n := range []int{0, 1, 3} {
		name := fmt.Sprintf("replicas=%d", n)
		if n == 0 {
			name = "engine"
		}
		b.Run(name, func(b *testing.B) {
			d := newDeployment(b)
			var s store.Store
			ms := []*member{}
			for i := 0; i < max(n, 1); i++ {
				ms = append(ms, d.start(""))
			}
			s = ms[0].Replica
			if n == 0 {
				s = ms[0].Unwrap()
			}
			es := publishRoster(b, ms[0], "inc", 20000, 1)
			waitServing(b, ms...)
			var next atomic.Int64
			b.SetParallelism(16) // 32 in flight on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1)
					e := es[int(i)%len(es)]
					var idem store.IdemKey
					copy(idem[:], fmt.Sprintf("b-%d", i))
					p := store.Pin{Version: 1, Record: e.Record, NoticeID: fmt.Sprintf("b-%d", i), NotifiedAt: storetest.T0}
					// A fresh notice each time over whatever is pinned: read the current pin first.
					v, err := s.Read(store.WithFresh(context.Background()), "inc", e.Key, nil)
					if err != nil {
						b.Error(err)
						return
					}
					if err := s.ClaimPin(context.Background(), "inc", e.Key, v.Pin, p, idem); err != nil && !errors.Is(err, store.ErrConflict) {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
