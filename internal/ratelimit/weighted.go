package ratelimit

import (
	"context"
	"hash/maphash"
	"time"
)

// WeightedLimiter decides whether n more events for key are allowed now,
// all or none: a practice checking a register spends one event per id.
// n above the limit's burst is never allowed (retryAfter is then the time
// the whole burst takes to refill).
type WeightedLimiter interface {
	AllowN(ctx context.Context, key string, n int) (ok bool, retryAfter time.Duration, err error)
}

// AllowN implements WeightedLimiter; it never fails.
func (l *Local) AllowN(_ context.Context, key string, n int) (bool, time.Duration, error) {
	if n <= 0 {
		return true, 0, nil
	}
	p := l.current()
	now := l.now()
	cost := satMul(p.interval, int64(n))
	if cost > p.window {
		return false, time.Duration(p.window), nil
	}
	h := maphash.String(l.seed, key)
	sh := &l.shards[h%localShards]
	sh.mu.Lock()
	tat, ok := sh.tat[h]
	if !ok || tat < now {
		tat = now
	}
	next := tat + cost
	if allowAt := next - p.window; allowAt > now {
		sh.mu.Unlock()
		return false, time.Duration(allowAt - now), nil
	}
	if !ok && len(sh.tat) >= l.maxShard {
		sh.evict(now, l.maxShard)
	}
	sh.tat[h] = next
	sh.mu.Unlock()
	return true, 0, nil
}

// AllowN implements WeightedLimiter. A Redis error is returned as is.
func (r *Redis) AllowN(ctx context.Context, key string, n int) (bool, time.Duration, error) {
	if n <= 0 {
		return true, 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	res, err := r.lim.AllowN(ctx, r.prefix+key, r.limit, n)
	if err != nil {
		return false, 0, err
	}
	if res.Allowed > 0 {
		return true, 0, nil
	}
	if res.RetryAfter < 0 { // more than the burst: never allowed
		return false, r.limit.Period, nil
	}
	return false, res.RetryAfter, nil
}

// Allow spends n events, so that the fail-open and logging code of a
// Limiter's caller serves a WeightedLimiter too.
func (w weighted) Allow(ctx context.Context, key string) (bool, time.Duration, error) {
	return w.l.AllowN(ctx, key, w.n)
}

type weighted struct {
	l WeightedLimiter
	n int
}

// Weighted returns a Limiter that spends n events of l per Allow.
func Weighted(l WeightedLimiter, n int) Limiter { return weighted{l, n} }
