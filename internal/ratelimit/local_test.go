package ratelimit

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// burstOf spends events of key until one is refused and returns how many
// passed and the refusal's retry delay.
func burstOf(t *testing.T, l *Local, key string) (int, time.Duration) {
	t.Helper()
	for n := 0; n < 1_000_000; n++ {
		ok, retry, err := l.Allow(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return n, retry
		}
	}
	t.Fatal("never refused")
	return 0, 0
}

// near: equal but for the nanoseconds an interval's rounding leaves.
func near(d, want time.Duration) bool { return (d - want).Abs() < time.Microsecond }

// TestLocalReplicas: the limit is divided by the replica count, rate and
// burst; a new count applies to the next decision, keeping what each key
// spent; an unknown count keeps the last one.
func TestLocalReplicas(t *testing.T) {
	clk := &fakeClock{now: time.Hour}
	var n atomic.Int64
	n.Store(1)
	l, err := NewLocal(Limit{Rate: 6, Period: time.Second, Burst: 12}, WithClock(clk.Now),
		WithReplicas(func() int { return int(n.Load()) }))
	if err != nil {
		t.Fatal(err)
	}
	if got, retry := burstOf(t, l, "a"); got != 12 || retry != 166_666_667 {
		t.Fatalf("1 replica: burst %d, retry %v; want 12, 1/6 s", got, retry)
	}

	// Three replicas: 2/s, bursts of 4, each.
	n.Store(3)
	if got, retry := burstOf(t, l, "b"); got != 4 || retry != 500*time.Millisecond {
		t.Fatalf("3 replicas: burst %d, retry %v; want 4, 500ms", got, retry)
	}
	if rn, rate, burst := l.Replicas(); rn != 3 || rate != 2 || burst != 4 {
		t.Fatalf("Replicas() = %d, %v, %d", rn, rate, burst)
	}
	// Key a spent its whole burst at one replica: still refused at three,
	// until this replica's share refills one event.
	if ok, retry, _ := l.Allow(context.Background(), "a"); ok || !near(retry, 500*time.Millisecond) {
		t.Fatalf("a after the change: %v, retry %v; want refused for 500ms", ok, retry)
	}
	// Back to one replica: b, which spent its burst of 4 at three replicas
	// (a window of 2 s), is refused until one event at 6/s refills.
	n.Store(1)
	if ok, retry, _ := l.Allow(context.Background(), "b"); ok || !near(retry, 166_666_667) {
		t.Fatalf("b at 1 replica: %v, retry %v", ok, retry)
	}
	// A key that spent half its burst keeps half across a change: 6 of 12
	// at one replica is 3 of 6 at two.
	for i := 0; i < 6; i++ {
		if ok, _, _ := l.Allow(context.Background(), "c"); !ok {
			t.Fatal("c refused within its burst")
		}
	}
	n.Store(2)
	if got, _ := burstOf(t, l, "c"); got != 3 {
		t.Fatalf("c at 2 replicas: %d more, want 3 (half of 6)", got)
	}
	// Unknown counts keep the last known one.
	for _, unknown := range []int64{0, -1} {
		n.Store(unknown)
		if got, _ := burstOf(t, l, "d"+strconv.Itoa(int(unknown))); got != 6 {
			t.Fatalf("count %d: burst %d, want the 2 replicas' 6", unknown, got)
		}
	}
	// More replicas than the burst: one event each, never zero; a count
	// beyond MaxReplicas is MaxReplicas.
	n.Store(100)
	if got, _ := burstOf(t, l, "e"); got != 1 {
		t.Fatalf("100 replicas: burst %d, want 1", got)
	}
	n.Store(MaxReplicas * 10)
	if rn, _, _ := l.Replicas(); rn != 100 {
		t.Fatalf("before a decision, Replicas() = %d", rn)
	}
	burstOf(t, l, "f")
	if rn, _, burst := l.Replicas(); rn != MaxReplicas || burst != 1 {
		t.Fatalf("count beyond the cap: %d replicas, burst %d", rn, burst)
	}
	// A long quiet spell restores this replica's share, not more.
	n.Store(3)
	clk.Add(time.Hour)
	if got, _ := burstOf(t, l, "a"); got != 4 {
		t.Fatalf("after an hour at 3 replicas: %d, want 4", got)
	}
}

// TestDivideNeverExceedsTheLimit: for every count up to the burst, the
// replicas' shares add up to at most the configured rate and burst, and to
// at least (rate - N ns rounding) and (burst - N + 1).
func TestDivideNeverExceedsTheLimit(t *testing.T) {
	for _, lim := range []Limit{{5, time.Second, 20}, {1000, time.Second, 2000}, {3, time.Minute, 7}, {60_000, time.Minute, 20_000}, {7, 10 * time.Second, 1}} {
		for n := 1; n <= min(lim.Burst, MaxReplicas); n++ {
			p := divide(lim, n)
			rate := float64(n) * float64(lim.Period) / float64(p.interval)
			if rate > float64(lim.Rate) || rate < float64(lim.Rate)*(1-1e-6) {
				t.Fatalf("%v over %d replicas: total rate %v", lim, n, rate)
			}
			if total := n * p.burst; total > lim.Burst || total < lim.Burst-n+1 {
				t.Fatalf("%v over %d replicas: total burst %d", lim, n, total)
			}
			if p.window != p.interval*int64(p.burst) {
				t.Fatalf("window %d", p.window)
			}
		}
	}
	// Absurd periods saturate instead of overflowing.
	if p := divide(Limit{Rate: 1, Period: 100 * 365 * 24 * time.Hour, Burst: 1 << 30}, MaxReplicas); p.interval <= 0 || p.window <= 0 || p.window > maxSpan {
		t.Fatalf("overflow: %+v", p)
	}
}

// TestReplicasTogether: N replicas, each with its own Local limiter for the
// same global limit, and one client sending far more than the limit for
// 60 s of simulated time. Spread over the replicas (round robin or at
// random) the client gets at most the global limit, rate x t + N x burst/N;
// all on one replica, it gets that replica's share (under-admission). These
// are the bounds docs/contract.md states.
func TestReplicasTogether(t *testing.T) {
	lim := Limit{Rate: 5, Period: time.Second, Burst: 20}
	const (
		n       = 3
		horizon = 60 * time.Second
		step    = 10 * time.Millisecond // the client sends 100 a second
	)
	run := func(pick func(i int) int) int {
		clk := &fakeClock{now: time.Hour}
		reps := make([]*Local, n)
		for i := range reps {
			reps[i], _ = NewLocal(lim, WithClock(clk.Now), WithReplicas(func() int { return n }))
		}
		admitted := 0
		for i := 0; time.Duration(i)*step < horizon; i++ {
			if ok, _, _ := reps[pick(i)].Allow(context.Background(), "sub:x"); ok {
				admitted++
			}
			clk.Add(step)
		}
		return admitted
	}
	p := divide(lim, n)
	upper := int(horizon/time.Duration(p.interval))*n + n*p.burst
	global := int(horizon/time.Second)*lim.Rate + lim.Burst
	if upper > global {
		t.Fatalf("the bound %d exceeds the global limit %d", upper, global)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for name, pick := range map[string]func(int) int{
		"round robin": func(i int) int { return i % n },
		"random":      func(int) int { return rnd.IntN(n) },
	} {
		if got := run(pick); got > upper || got < upper*9/10 {
			t.Errorf("%s: %d admitted in %s, want at most %d (and near it)", name, got, horizon, upper)
		}
	}
	one := run(func(int) int { return 0 })
	// The burst at the start, then one per interval up to the end.
	if want := int((horizon-step)/time.Duration(p.interval)) + p.burst; one != want {
		t.Errorf("all on one replica: %d admitted, want its share %d", one, want)
	}
}

// TestLocalSpike: a spike of a million distinct keys (250,000 under the
// race detector) keeps the limiter at its bound, in keys and in heap
// (~47 B a key: ~4.7 MB at the bound, ~47 MB for a million unbounded), and
// a key that is still limited survives it (eviction takes the keys closest
// to expiry first).
func TestLocalSpike(t *testing.T) {
	spike := 1_000_000
	if raceEnabled {
		spike = 250_000
	}
	clk := &fakeClock{now: time.Hour}
	l, err := NewLocal(Limit{Rate: 1, Period: time.Hour, Burst: 2}, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l.Allow(ctx, "heavy")
	l.Allow(ctx, "heavy") // its TAT is 2 h ahead, every other key's 1 h
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	buf := make([]byte, 0, 16)
	for i := 0; i < spike; i++ {
		buf = strconv.AppendInt(append(buf[:0], "ip:"...), int64(i), 10)
		if ok, _, _ := l.Allow(ctx, string(buf)); !ok {
			t.Fatalf("fresh key %d refused", i)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := l.Len(); n > DefaultMaxKeys {
		t.Fatalf("%d keys tracked, bound %d", n, DefaultMaxKeys)
	}
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew %.1f MB for %d keys tracked (%.0f B/key)", float64(grown)/1e6, l.Len(), float64(grown)/float64(l.Len()))
	if grown > 8<<20 {
		t.Fatalf("heap grew %d bytes over %d keys; the bound is %d keys", grown, spike, DefaultMaxKeys)
	}
	if ok, _, _ := l.Allow(ctx, "heavy"); ok {
		t.Fatal("the limited key was evicted by the spike")
	}
	runtime.KeepAlive(l)
}

// BenchmarkLocalAllowReplicas: one decision with a replica count (an
// atomic load, as the registry provides it), from every core at once, for
// keys drawn from 50,000 (below the bound: lookups and updates, no
// eviction). Each key is formatted in a buffer the way the Hasher's is,
// hot in cache as it is after the Hasher wrote it.
func BenchmarkLocalAllowReplicas(b *testing.B) {
	var n atomic.Int64
	n.Store(3)
	l, _ := NewLocal(Limit{Rate: 1_000_000, Period: time.Second, Burst: 1_000_000}, WithReplicas(func() int { return int(n.Load()) }))
	const keys = 50_000
	key := func(buf []byte, i uint64) string {
		var raw [16]byte
		binary.BigEndian.PutUint64(raw[8:], i)
		buf = append(buf[:0], "sub:"...)
		buf = hex.AppendEncode(buf, raw[:])
		return unsafe.String(&buf[0], len(buf)) // Local keeps no key string
	}
	ctx := context.Background()
	buf := make([]byte, 0, 40)
	for i := range uint64(keys) {
		l.Allow(ctx, key(buf, i))
	}
	var seed atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(seed.Add(1), 0))
		buf := make([]byte, 0, 40)
		for pb.Next() {
			_, _, _ = l.Allow(ctx, key(buf, r.Uint64N(keys)))
		}
	})
}

// BenchmarkLocalAllowSpray: every decision a new key on a full limiter
// (DefaultMaxKeys tracked, none expired), from every core at once: the
// eviction path, as under a spray of addresses.
func BenchmarkLocalAllowSpray(b *testing.B) {
	l, _ := NewLocal(Limit{Rate: 1, Period: time.Hour, Burst: 1})
	ctx := context.Background()
	for i := 0; i < DefaultMaxKeys; i++ {
		l.Allow(ctx, "fill:"+strconv.Itoa(i))
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 0, 32)
		for pb.Next() {
			buf = strconv.AppendInt(append(buf[:0], "ip:"...), next.Add(1), 10)
			_, _, _ = l.Allow(ctx, string(buf))
		}
	})
}

// BenchmarkLocalMemory reports the heap a limiter holds per key: "fill",
// DefaultMaxKeys keys inserted below the bound; "churn", the same limiter
// at its bound after a million distinct keys went through it.
func BenchmarkLocalMemory(b *testing.B) {
	ctx := context.Background()
	measure := func(b *testing.B, maxKeys, spray int) {
		var perKey float64
		for i := 0; i < b.N; i++ {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			l, _ := NewLocal(Limit{Rate: 1, Period: time.Hour, Burst: 1}, WithMaxKeys(maxKeys))
			buf := make([]byte, 0, 40)
			for k := 0; k < spray; k++ {
				buf = strconv.AppendInt(append(buf[:0], "sub:"...), int64(k), 10)
				l.Allow(ctx, string(buf))
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			perKey = float64(after.HeapAlloc-before.HeapAlloc) / float64(l.Len())
			runtime.KeepAlive(l)
		}
		b.ReportMetric(perKey, "B/key")
	}
	b.Run("fill", func(b *testing.B) { measure(b, 2*DefaultMaxKeys, DefaultMaxKeys) })
	b.Run("churn", func(b *testing.B) { measure(b, DefaultMaxKeys, 1_000_000) })
}
