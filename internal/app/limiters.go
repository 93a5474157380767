package app

import (
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/ratelimit"
	redisstore "github.com/impact-health/impact/internal/store/redis"
)

// newLimiters builds the patient listener's rate limiters: in Redis (shared
// by every replica) with StoreRedis, in process otherwise. The Redis
// limiters use a client of their own (same topology and password as the
// store's) so that their short deadline never shares a pool with the
// ledger. Limiter keys are keyed hashes of the subject or client address
// under a secret derived from the pepper (so replicas agree), never the raw
// values. closeFn releases the client.
func newLimiters(c *Config, pepper []byte) (subject, addr ratelimit.Limiter, keys *ratelimit.Hasher, closeFn func(), err error) {
	closeFn = func() {}
	if c.RateSubject.IsZero() && c.RateIP.IsZero() {
		return nil, nil, nil, closeFn, nil
	}
	if keys, err = ratelimit.NewHasherFromPepper(pepper); err != nil {
		return nil, nil, nil, closeFn, err
	}
	var client redis.UniversalClient
	if c.Store == StoreRedis {
		if client, err = c.Redis.NewClient(); err != nil {
			return nil, nil, nil, closeFn, err
		}
		closeFn = func() { _ = client.Close() }
	}
	build := func(l ratelimit.Limit) (ratelimit.Limiter, error) {
		switch {
		case l.IsZero():
			return nil, nil
		case client != nil:
			return ratelimit.NewRedis(client, redisstore.DefaultPrefix, l)
		default:
			return ratelimit.NewLocal(l)
		}
	}
	if subject, err = build(c.RateSubject); err == nil {
		addr, err = build(c.RateIP)
	}
	if err != nil {
		closeFn()
		return nil, nil, nil, func() {}, fmt.Errorf("rate limit: %w", err)
	}
	return subject, addr, keys, closeFn, nil
}
