package ratelimit

import (
	"context"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxKeys bounds the keys a Local limiter tracks (about 3 MB, see
// BenchmarkLocalMemory). A key is worth tracking only while its theoretical
// arrival time is ahead of the clock, at most one window (burst x interval:
// 4 s for 5/s:20, 2 s for 1000/s:2000); a replica answering ~12,000 reads a
// second, every one from a new key, needs ~50,000 keys for a 4 s window.
const DefaultMaxKeys = 100_000

// MaxReplicas caps the replica count a limit is divided by.
const MaxReplicas = 1024

const localShards = 64

// Local is an in-process GCRA limiter with bounded memory. It tracks, per
// key, the theoretical arrival time (TAT) of the next event. A key whose TAT
// is in the past holds no state worth keeping (its full burst is available
// again). When a shard is full, a few keys are sampled: the expired ones are
// dropped or, if none is, the one closest to expiry, which hands it back part
// of its burst early but never lets memory grow. It is safe for concurrent
// use; no decision leaves the process.
//
// A Local limit may be global, shared by the replicas of a deployment that
// each run their own Local (WithReplicas): each then enforces the rate
// divided by the number of live replicas and the burst divided likewise
// (at least 1). The state is a time (the TAT), so a new count applies to
// the next decision without losing what each key has spent: dividing rate
// and burst by the same N keeps the window (burst x interval) about the
// same, and a key that had spent its burst stays refused.
//
// Keys are reduced to a 64-bit seeded hash (maphash, random per process):
// two keys colliding share a budget, with odds of about 1 in 10^8 among a
// million keys at once.
type Local struct {
	limit    Limit
	replicas func() int // nil: 1
	params   atomic.Pointer[localParams]
	maxShard int
	seed     maphash.Seed
	now      func() int64 // monotonic ns
	shards   [localShards]localShard
}

// localParams is the limit this replica enforces for n replicas.
type localParams struct {
	n        int
	interval int64 // ns between events
	burst    int
	window   int64 // ns of burst: interval * burst
}

type localShard struct {
	mu        sync.Mutex
	tat       map[uint64]int64
	evictions int
	_         [40]byte // one shard per 64-byte cache line: no false sharing between locks
}

// compactEvery: a shard's map is rebuilt after this many evictions per key
// it may hold. Deleting from a Go map leaves tombstones that later inserts
// only partly reuse, so a full map under steady churn (a spray of new keys)
// slowly grows its table; rebuilding it from its live keys, O(keys) once
// every compactEvery x keys evictions, keeps it at its bound.
const compactEvery = 4

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

// WithReplicas makes the limit global: replicas returns how many replicas
// enforce it (this one included) and each decision uses the limit divided
// by that count. It is called on every decision, so it must be cheap (an
// atomic load). A count below 1 means unknown: the last known count stays
// in force (1 before any).
func WithReplicas(replicas func() int) LocalOption {
	return func(l *Local) { l.replicas = replicas }
}

// NewLocal returns an in-process limiter for limit.
func NewLocal(limit Limit, opts ...LocalOption) (*Local, error) {
	if err := limit.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	l := &Local{
		limit:    limit,
		maxShard: DefaultMaxKeys / localShards,
		seed:     maphash.MakeSeed(),
		now:      func() int64 { return int64(time.Since(start)) },
	}
	for _, o := range opts {
		o(l)
	}
	l.params.Store(divide(limit, 1))
	for i := range l.shards {
		l.shards[i].tat = make(map[uint64]int64)
	}
	return l, nil
}

// divide returns the share of limit one of n replicas enforces: the
// interval n times longer (rounded up) and the burst divided by n (rounded
// down, at least 1), so that n shares never exceed limit while n is at
// most the burst.
func divide(limit Limit, n int) *localParams {
	n = min(max(n, 1), MaxReplicas)
	interval := satMul(int64(limit.Period), int64(n))
	interval = (interval + int64(limit.Rate) - 1) / int64(limit.Rate)
	burst := max(1, limit.Burst/n)
	return &localParams{n: n, interval: interval, burst: burst, window: satMul(interval, int64(burst))}
}

// maxSpan caps every span in ns (146 years), so that TAT + cost never
// overflows.
const maxSpan = math.MaxInt64 / 2

// satMul is a*b for non-negative a and b, capped at maxSpan.
func satMul(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	if a > maxSpan/b {
		return maxSpan
	}
	return a * b
}

// current returns the parameters for the replica count in force.
func (l *Local) current() *localParams {
	p := l.params.Load()
	if l.replicas == nil {
		return p
	}
	n := l.replicas()
	if n < 1 {
		return p // unknown: keep the last count
	}
	if n = min(n, MaxReplicas); n == p.n {
		return p
	}
	q := divide(l.limit, n)
	l.params.Store(q) // racing stores compute from a count just read: either is current
	return q
}

// Replicas returns the replica count of the last decision, and the rate
// (events per Period of the configured limit, as a fraction) and burst this
// replica enforced for it.
func (l *Local) Replicas() (n int, rate float64, burst int) {
	p := l.params.Load()
	return p.n, float64(l.limit.Period) / float64(p.interval), p.burst
}

// Allow implements Limiter (one event: AllowN of 1); it never fails.
func (l *Local) Allow(ctx context.Context, key string) (bool, time.Duration, error) {
	return l.AllowN(ctx, key, 1)
}

// evict makes room for one key in O(1) amortized: among a few keys sampled
// from a random point of the map, the expired ones go; if none was expired,
// the one with the earliest TAT goes. Every compactEvery x maxShard
// evictions the map is rebuilt from its live keys.
func (sh *localShard) evict(now int64, maxShard int) {
	if sh.evictions++; sh.evictions >= compactEvery*maxShard {
		live := make(map[uint64]int64, maxShard)
		for k, t := range sh.tat {
			if t > now {
				live[k] = t
			}
		}
		sh.tat, sh.evictions = live, 0
		if len(live) < maxShard {
			return
		}
	}
	const samples = 8
	var (
		victim   uint64
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
