package app

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/impact-health/impact/internal/ratelimit"
	redisstore "github.com/impact-health/impact/internal/store/redis"
)

// TestNewLimiters: the patient limits are in process in every store mode
// (no Redis client, so an unreachable Redis changes nothing), divided by
// the replica count when one is given, and keyed under the pepper.
func TestNewLimiters(t *testing.T) {
	pepper := []byte(strings.Repeat("p", 32))
	c := &Config{Store: StoreEmbedded, RateSubject: DefaultRateSubject}
	sub, addr, keys, err := newLimiters(c, pepper, nil)
	if err != nil || addr != nil || keys == nil {
		t.Fatalf("%v %v %v", addr, keys, err)
	}
	if _, ok := sub.(*ratelimit.Local); !ok {
		t.Fatalf("embedded store: %T, want an in-process limiter", sub)
	}
	// Replicas sharing the pepper agree on keys; another pepper does not.
	_, _, keys2, _ := newLimiters(c, pepper, nil)
	_, _, keys3, _ := newLimiters(c, []byte(strings.Repeat("q", 32)), nil)
	if keys.Key("sub", "alice") != keys2.Key("sub", "alice") || keys.Key("sub", "alice") == keys3.Key("sub", "alice") {
		t.Fatal("limiter keys must follow the pepper")
	}

	var replicas atomic.Int64
	replicas.Store(4)
	r := &Config{Store: StoreRedis, Redis: redisstore.Config{URL: "redis://127.0.0.1:1/0"}, RateSubject: DefaultRateSubject, RateIP: DefaultRateIP}
	sub, addr, _, err = newLimiters(r, pepper, func() int { return int(replicas.Load()) })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, l := range map[string]ratelimit.Limiter{"subject": sub, "address": addr} {
		if _, ok := l.(*ratelimit.Local); !ok {
			t.Fatalf("redis store, %s: %T, want an in-process limiter", name, l)
		}
		ok, _, err := l.Allow(ctx, "k")
		if !ok || err != nil {
			t.Fatalf("%s: first event %v, %v (the Redis at :1 is unreachable and must not matter)", name, ok, err)
		}
	}
	// Four replicas: this one enforces a quarter of each limit.
	if n, rate, burst := sub.(*ratelimit.Local).Replicas(); n != 4 || rate != 1.25 || burst != 5 {
		t.Fatalf("subject limit at 4 replicas: %d, %v/s, burst %d; want 1.25/s, burst 5", n, rate, burst)
	}
	if n, rate, burst := addr.(*ratelimit.Local).Replicas(); n != 4 || rate != 250 || burst != 500 {
		t.Fatalf("address limit at 4 replicas: %d, %v/s, burst %d", n, rate, burst)
	}
	if s, a, _, _ := newLimiters(&Config{}, pepper, nil); s != nil || a != nil {
		t.Fatal("no limits configured, limiters built")
	}
}
