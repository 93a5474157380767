package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/testutil/redisserver"
)

// checkWeighted drives a WeightedLimiter of 100 ids a minute, bursts of
// 100: 60 + 40 pass, then 1 is refused; more than the burst never passes.
func checkWeighted(t *testing.T, l WeightedLimiter, advance func(time.Duration)) {
	t.Helper()
	ctx := context.Background()
	for _, n := range []int{60, 40} {
		if ok, _, err := l.AllowN(ctx, "practice:a", n); !ok || err != nil {
			t.Fatalf("AllowN(%d): %v, %v", n, ok, err)
		}
	}
	ok, retry, err := l.AllowN(ctx, "practice:a", 1)
	if ok || err != nil || retry <= 0 || retry > time.Second {
		t.Fatalf("AllowN(1) over the limit: %v, retry %s, %v", ok, retry, err)
	}
	if ok, _, _ := l.AllowN(ctx, "practice:b", 100); !ok {
		t.Fatal("another key shares the first one's budget")
	}
	if ok, retry, err := l.AllowN(ctx, "practice:c", 101); ok || err != nil || retry <= 0 {
		t.Fatalf("AllowN over the burst: %v, retry %s, %v", ok, retry, err)
	}
	if advance != nil {
		advance(30 * time.Second)
		if ok, _, _ := l.AllowN(ctx, "practice:a", 50); !ok {
			t.Fatal("half a minute later, 50 ids refused")
		}
		if ok, _, _ := l.AllowN(ctx, "practice:a", 1); ok {
			t.Fatal("refill beyond the rate")
		}
	}
	// Through Weighted, as the transport uses it.
	if ok, _, _ := Weighted(l, 10).Allow(ctx, "practice:a"); ok {
		t.Fatal("Weighted spends nothing")
	}
}

func TestLocalAllowN(t *testing.T) {
	c := &fakeClock{}
	l, err := NewLocal(Limit{Rate: 100, Period: time.Minute, Burst: 100}, WithClock(c.Now))
	if err != nil {
		t.Fatal(err)
	}
	checkWeighted(t, l, c.Add)
}

func TestRedisAllowN(t *testing.T) {
	srv := redisserver.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	l, err := NewRedis(c, "impact:", Limit{Rate: 100, Period: time.Minute, Burst: 100})
	if err != nil {
		t.Fatal(err)
	}
	checkWeighted(t, l, nil)
}
