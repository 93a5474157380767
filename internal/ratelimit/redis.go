package ratelimit

import (
	"context"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Redis is a GCRA limiter kept in Redis (go-redis/redis_rate: one Lua
// script per decision, on one key, so it works on standalone, Sentinel and
// Cluster deployments) and therefore shared by every replica. Keys are
// stored as "rate:" + prefix + key; pass hashed keys (see Hasher), never raw
// identifiers. It is safe for concurrent use.
type Redis struct {
	lim     *redis_rate.Limiter
	limit   redis_rate.Limit
	prefix  string
	timeout time.Duration
}

// DefaultRedisTimeout bounds one decision: a limiter must not add a
// noticeable delay when Redis is slow or gone (the caller then fails open).
// The client needs ContextTimeoutEnabled for the deadline to bound its I/O.
const DefaultRedisTimeout = 100 * time.Millisecond

// NewRedis returns a Redis limiter for limit on client; prefix namespaces
// its keys (e.g. "impact:").
func NewRedis(client redis.UniversalClient, prefix string, limit Limit) (*Redis, error) {
	if err := limit.Validate(); err != nil {
		return nil, err
	}
	return &Redis{
		lim:     redis_rate.NewLimiter(client),
		limit:   redis_rate.Limit{Rate: limit.Rate, Period: limit.Period, Burst: limit.Burst},
		prefix:  prefix,
		timeout: DefaultRedisTimeout,
	}, nil
}

// Allow implements Limiter (one event: AllowN of 1). A Redis error is
// returned as is: the caller decides whether to fail open.
func (r *Redis) Allow(ctx context.Context, key string) (bool, time.Duration, error) {
	return r.AllowN(ctx, key, 1)
}
