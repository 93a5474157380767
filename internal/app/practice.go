package app

import (
	"fmt"
	"time"

	"github.com/impact-health/impact/internal/audit"
	"github.com/impact-health/impact/internal/practice"
	"github.com/impact-health/impact/internal/ratelimit"
	"github.com/impact-health/impact/internal/snapshot"
	istatus "github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
	redisstore "github.com/impact-health/impact/internal/store/redis"
)

// DefaultRatePracticeIDs: a practice checks its whole register (a large
// one is 30,000 patients) in about a minute, one full batch at once.
var DefaultRatePracticeIDs = ratelimit.Limit{Rate: 60_000, Period: time.Minute, Burst: 20_000}

func (c *Config) validatePractice() error {
	l := c.RatePracticeIDs
	if l.IsZero() {
		return nil
	}
	if err := l.Validate(); err != nil {
		return fmt.Errorf("--rate-practice-ids %s: %w", l, err)
	}
	if l.Burst < practice.MaxBatch {
		return fmt.Errorf("--rate-practice-ids: the burst must be at least %d (one full batch), not %d", practice.MaxBatch, l.Burst)
	}
	return nil
}

// newPractice builds the practice view over the store, reading versions
// through catalog and answering patients through answers, recording every
// call with rec.
func newPractice(st store.Store, catalog *snapshot.Catalog, answers *istatus.Service, keyer istatus.Keyer, rec *audit.Recorder, opts ...practice.Option) *practice.Service {
	return practice.New(st, catalog, answers, keyer, rec, opts...)
}

// newPracticeLimiter builds the per-practice limit on ids checked, in
// Redis with StoreRedis (shared by every replica, exact, on a client of its
// own so that its short deadline never shares a pool with the ledger), in
// process otherwise, and the limiter keys (keyed hashes of the practice id)
// when the patient limits made none. Unlike the patient limits it is not
// divided among replicas: a practice's stream of batches stays on one
// replica, which a share would slow N times, and one decision per batch of
// up to practice.MaxBatch ids makes the round trip negligible.
func newPracticeLimiter(c *Config, pepper []byte, keys *ratelimit.Hasher) (ratelimit.WeightedLimiter, *ratelimit.Hasher, func(), error) {
	closeFn := func() {}
	if c.RatePracticeIDs.IsZero() {
		return nil, keys, closeFn, nil
	}
	if keys == nil {
		k, err := ratelimit.NewHasherFromPepper(pepper)
		if err != nil {
			return nil, nil, closeFn, err
		}
		keys = k
	}
	if c.Store != StoreRedis {
		l, err := ratelimit.NewLocal(c.RatePracticeIDs)
		return l, keys, closeFn, err
	}
	client, err := c.Redis.NewClient()
	if err != nil {
		return nil, nil, closeFn, err
	}
	l, err := ratelimit.NewRedis(client, redisstore.DefaultPrefix, c.RatePracticeIDs)
	if err != nil {
		_ = client.Close()
		return nil, nil, closeFn, fmt.Errorf("practice rate limit: %w", err)
	}
	return l, keys, func() { _ = client.Close() }, nil
}
