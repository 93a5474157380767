package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// DefaultMaxKeys bounds the keys a Local limiter tracks.
const DefaultMaxKeys = 100_000

const localShards = 32

// Local is an in-process GCRA limiter with bounded memory. It tracks, per
// key, the theoretical arrival time (TAT) of the next event. A key whose TAT
// is in the past holds no state worth keeping (its full burst is available
// again). When a shard is full, a few keys are sampled: the expired ones are
// dropped or, if none is, the one closest to expiry, which hands it back part
// of its burst early but never lets memory grow. It is safe for
// concurrent use.
type Local struct {
	interval int64 // ns between events
	window   int64 // ns of burst: interval * burst
	maxShard int
	seed     maphash.Seed
	now      func() int64 // monotonic ns
	shards   [localShards]localShard
}

type localShard struct {
	mu  sync.Mutex
	tat map[string]int64
}

// LocalOption configures a Local limiter.
type LocalOption func(*Local)

// WithMaxKeys bounds the number of keys tracked (default DefaultMaxKeys).
func WithMaxKeys(n int) LocalOption {
	return func(l *Local) { l.maxShard = max(1, n/localShards) }
}

// WithClock replaces the clock (tests): now returns a monotonic time.
func WithClock(now func() time.Duration) LocalOption {
	return func(l *Local) { l.now = func() int64 { return int64(now()) } }
}

// NewLocal returns an in-process limiter for limit.
func NewLocal(limit Limit, opts ...LocalOption) (*Local, error) {
	if err := limit.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	l := &Local{
		interval: int64(limit.Interval()),
		window:   int64(limit.Interval()) * int64(limit.Burst),
		maxShard: DefaultMaxKeys / localShards,
		seed:     maphash.MakeSeed(),
		now:      func() int64 { return int64(time.Since(start)) },
	}
	for _, o := range opts {
		o(l)
	}
	for i := range l.shards {
		l.shards[i].tat = make(map[string]int64)
	}
	return l, nil
}

// Allow implements Limiter (one event: AllowN of 1); it never fails.
func (l *Local) Allow(ctx context.Context, key string) (bool, time.Duration, error) {
	return l.AllowN(ctx, key, 1)
}

// evict makes room for one key in O(1): among a few keys sampled from a
// random point of the map, the expired ones go; if none was expired, the one
// with the earliest TAT goes.
func (sh *localShard) evict(now int64) {
	const samples = 8
	var (
		victim   string
		earliest int64
		have     bool
		freed    bool
		i        int
	)
	for k, t := range sh.tat { // map iteration starts at a random point
		if t <= now {
			delete(sh.tat, k)
			freed = true
		} else if !have || t < earliest {
			victim, earliest, have = k, t, true
		}
		if i++; i == samples {
			break
		}
	}
	if !freed && have {
		delete(sh.tat, victim)
	}
}

// Len returns the number of keys tracked.
func (l *Local) Len() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.tat)
		sh.mu.Unlock()
	}
	return n
}
