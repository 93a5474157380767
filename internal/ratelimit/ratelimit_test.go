package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/testutil/redisserver"
)

func TestParseLimit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Limit
		err  bool
	}{
		{"5/s:20", Limit{5, time.Second, 20}, false},
		{"50/s", Limit{50, time.Second, 50}, false},
		{"300/m:10", Limit{300, time.Minute, 10}, false},
		{"1/h", Limit{1, time.Hour, 1}, false},
		{"3/10s:3", Limit{3, 10 * time.Second, 3}, false},
		{"off", Limit{}, false},
		{"", Limit{}, false},
		{"0", Limit{}, false},
		{"5", Limit{}, true},
		{"-1/s", Limit{}, true},
		{"5/s:0", Limit{}, true},
		{"5/fortnight", Limit{}, true},
		{"x/s", Limit{}, true},
		{"2000000000/ns", Limit{}, true},
	} {
		got, err := ParseLimit(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseLimit(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
		if err == nil && !got.IsZero() {
			if back, err := ParseLimit(got.String()); err != nil || back != got {
				t.Errorf("round trip of %v: %v, %v", got, back, err)
			}
		}
	}
}

// fakeClock is a manual monotonic clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Duration
}

func (c *fakeClock) Now() time.Duration  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.now += d; c.mu.Unlock() }

// TestLocalGCRA: a burst, then one event per interval, and the retry delay
// is exactly the time until the next event is allowed.
func TestLocalGCRA(t *testing.T) {
	clk := &fakeClock{now: time.Hour}
	l, err := NewLocal(Limit{Rate: 5, Period: time.Second, Burst: 3}, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if ok, _, _ := l.Allow(ctx, "a"); !ok {
			t.Fatalf("burst event %d refused", i)
		}
	}
	ok, retry, err := l.Allow(ctx, "a")
	if ok || err != nil || retry != 200*time.Millisecond {
		t.Fatalf("4th event: %v %v %v, want refused with 200ms", ok, retry, err)
	}
	// Another key is independent.
	if ok, _, _ := l.Allow(ctx, "b"); !ok {
		t.Fatal("key b refused")
	}
	clk.Add(150 * time.Millisecond)
	if ok, retry, _ := l.Allow(ctx, "a"); ok || retry != 50*time.Millisecond {
		t.Fatalf("after 150ms: %v %v", ok, retry)
	}
	clk.Add(50 * time.Millisecond)
	if ok, _, _ := l.Allow(ctx, "a"); !ok {
		t.Fatal("after 200ms: refused")
	}
	if ok, _, _ := l.Allow(ctx, "a"); ok {
		t.Fatal("a second event in the same interval was allowed")
	}
	// A long quiet spell restores the whole burst, not more.
	clk.Add(time.Minute)
	n := 0
	for {
		if ok, _, _ := l.Allow(ctx, "a"); !ok {
			break
		}
		n++
	}
	if n != 3 {
		t.Fatalf("burst after quiet: %d, want 3", n)
	}
}

// TestLocalBoundedMemory: spraying keys never grows past the bound, and
// keys that are still limited are the last to go.
func TestLocalBoundedMemory(t *testing.T) {
	clk := &fakeClock{}
	l, err := NewLocal(Limit{Rate: 1, Period: time.Second, Burst: 1}, WithClock(clk.Now), WithMaxKeys(64*localShards))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 100_000; i++ {
		if ok, _, _ := l.Allow(ctx, fmt.Sprint("k", i)); !ok {
			t.Fatalf("fresh key %d refused", i)
		}
		if i%1000 == 0 {
			clk.Add(10 * time.Millisecond)
		}
	}
	if n := l.Len(); n > 64*localShards {
		t.Fatalf("%d keys tracked, bound %d", n, 64*localShards)
	}
}

func TestHasher(t *testing.T) {
	if _, err := NewHasher([]byte("short")); err == nil {
		t.Fatal("short secret accepted")
	}
	h1, _ := NewHasher([]byte(strings.Repeat("k", 32)))
	h2, _ := NewHasher([]byte(strings.Repeat("j", 32)))
	a := h1.Key("sub", "patient-0001")
	if a != h1.Key("sub", "patient-0001") || a == h1.Key("ip", "patient-0001") || a == h2.Key("sub", "patient-0001") {
		t.Fatal("keys must be stable per secret and namespace, and differ otherwise")
	}
	if strings.Contains(a, "patient") || !strings.HasPrefix(a, "sub:") || len(a) != len("sub:")+32 {
		t.Fatalf("key %q", a)
	}
	long := strings.Repeat("n", 70)
	if k := h1.Key(long, "x"); !strings.HasPrefix(k, long+":") || len(k) != len(long)+33 || k[len(long)+1:] == h1.Key("sub", "x")[4:] {
		t.Fatalf("long namespace key %q", k)
	}
}

// TestRedisGCRA: the Redis limiter enforces the same limit across two
// clients (two replicas), its keys hold no raw identifier, and an outage is
// an error (the caller decides to fail open).
func TestRedisGCRA(t *testing.T) {
	srv := redisserver.Start(t)
	ctx := context.Background()
	newClient := func() redis.UniversalClient {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	limit := Limit{Rate: 1, Period: time.Hour, Burst: 4}
	r1, err := NewRedis(newClient(), "impact:", limit)
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := NewRedis(newClient(), "impact:", limit)
	h, _ := NewHasher([]byte(strings.Repeat("s", 32)))
	key := h.Key("sub", "patient-0042")
	allowed := 0
	var lastRetry time.Duration
	for i := 0; i < 10; i++ {
		l := r1
		if i%2 == 1 {
			l = r2
		}
		ok, retry, err := l.Allow(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			allowed++
		} else {
			lastRetry = retry
		}
	}
	if allowed != 4 {
		t.Fatalf("%d events allowed across replicas, want the burst of 4", allowed)
	}
	if lastRetry < 59*time.Minute || lastRetry > time.Hour {
		t.Fatalf("retry after %v, want about an hour", lastRetry)
	}
	keys, err := newClient().Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "rate:impact:"+key || strings.Contains(keys[0], "patient") {
		t.Fatalf("redis keys %q", keys)
	}

	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, ContextTimeoutEnabled: true})
	defer dead.Close()
	rd, _ := NewRedis(dead, "impact:", limit)
	_, _, derr := rd.Allow(ctx, key)
	if derr == nil {
		t.Fatal("an unreachable Redis must be an error")
	}
	var ee *ExceededError
	if errors.As(derr, &ee) {
		t.Fatal("unreachable is not exceeded")
	}

	// A Redis that accepts connections and never answers: the decision
	// ends at the limiter's own deadline, not the caller's.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	mute := redis.NewClient(&redis.Options{Addr: l.Addr().String(), MaxRetries: -1, ContextTimeoutEnabled: true,
		ReadTimeout: time.Hour, WriteTimeout: time.Hour, DialTimeout: time.Hour})
	defer mute.Close()
	rm, _ := NewRedis(mute, "impact:", limit)
	_, _, err = rm.Allow(context.Background(), key)
	var ne net.Error
	if !errors.Is(err, context.DeadlineExceeded) && !(errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("silent Redis: %v, want the limiter's deadline", err)
	}
}

func BenchmarkLocalAllow(b *testing.B) {
	l, _ := NewLocal(Limit{Rate: 1_000_000, Period: time.Second, Burst: 1_000_000})
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprint("sub:", i)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			_, _, _ = l.Allow(ctx, keys[i&1023])
			i++
		}
	})
}

func BenchmarkHasherKey(b *testing.B) {
	h, _ := NewHasher([]byte(strings.Repeat("s", 32)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = h.Key("sub", "patient-0042")
	}
}
