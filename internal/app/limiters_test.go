package app

import (
	"strings"
	"testing"

	"github.com/impact-health/impact/internal/ratelimit"
	redisstore "github.com/impact-health/impact/internal/store/redis"
)

func TestNewLimiters(t *testing.T) {
	pepper := []byte(strings.Repeat("p", 32))
	c := &Config{Store: StoreEmbedded, RateSubject: DefaultRateSubject}
	sub, addr, keys, closeFn, err := newLimiters(c, pepper)
	defer closeFn()
	if err != nil || addr != nil || keys == nil {
		t.Fatalf("%v %v %v", addr, keys, err)
	}
	if _, ok := sub.(*ratelimit.Local); !ok {
		t.Fatalf("embedded store: %T, want an in-process limiter", sub)
	}
	// Replicas sharing the pepper agree on keys; another pepper does not.
	_, _, keys2, _, _ := newLimiters(c, pepper)
	_, _, keys3, _, _ := newLimiters(c, []byte(strings.Repeat("q", 32)))
	if keys.Key("sub", "alice") != keys2.Key("sub", "alice") || keys.Key("sub", "alice") == keys3.Key("sub", "alice") {
		t.Fatal("limiter keys must follow the pepper")
	}
	r := &Config{Store: StoreRedis, Redis: redisstore.Config{URL: "redis://127.0.0.1:1/0"}, RateSubject: DefaultRateSubject, RateIP: DefaultRateIP}
	sub, addr, _, closeFn, err = newLimiters(r, pepper)
	defer closeFn()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sub.(*ratelimit.Redis); !ok {
		t.Fatalf("redis store: %T, want a Redis limiter", sub)
	}
	if _, ok := addr.(*ratelimit.Redis); !ok {
		t.Fatalf("redis store: %T, want a Redis limiter", addr)
	}
	if s, a, _, _, _ := newLimiters(&Config{}, pepper); s != nil || a != nil {
		t.Fatal("no limits configured, limiters built")
	}
}
