package chaos

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// recoverTimeout bounds the wait for the first answer after a fault ends.
const recoverTimeout = 45 * time.Second

// Scenarios lists every scenario, in the order of the issue that asked
// for them.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "impactd-sigkill/embedded", Run: impactdKill("embedded")},
		{Name: "impactd-sigkill/redis", Run: impactdKill("redis")},
		{Name: "redis-sigkill-under-claims", Run: redisKill},
		{Name: "sentinel-failover-under-claims", Run: failover},
		{Name: "redis-latency-and-resets", Run: redisNetwork},
		{Name: "replicas-publish-race", Run: replicasRace, NoFault: true},
		{Name: "replica-lease-partition", Run: replicaLease},
	}
}

// lostPins sweeps every subject through d and records the pins that
// claims acknowledged before cut and that the sweep no longer shows, each
// as a violation unless lossAllowed (asynchronous replication).
func lostPins(ctx context.Context, w *World, d *Impactd, f *Figures, cut time.Duration, lossAllowed bool) ([]Op, error) {
	var before []Op
	for _, op := range w.Rec.History() {
		if op.Return < cut {
			before = append(before, op)
		}
	}
	final, err := w.FinalPins(ctx, d)
	if err != nil {
		return nil, err
	}
	lost := LostPins(before, final)
	f.Lost += len(lost)
	if !lossAllowed {
		for _, op := range lost {
			f.Violations = append(f.Violations, Violation{Rule: "lost-pin",
				Detail: fmt.Sprintf("%s: acknowledged pin v%d, the ledger now says v%d", op.Subject, op.Pinned, final[op.Subject]), Ops: []Op{op}})
		}
	}
	return lost, nil
}

// redisKill: redis-server (appendfsync always) is SIGKILLed and restarted
// under claims and reads, then a new version is published; impactd is
// never restarted. Every acknowledged pin must survive.
func redisKill(ctx context.Context, e *Env, b Bounds) (Figures, error) {
	return redisKillWith(ctx, e, b, false)
}

// redisKillWith runs redisKill; with forgetPins the fault, instead of a
// kill, deletes the ledger's keys (pins and idempotency records) from
// Redis, as a failover to a replica that missed them would: the harness's
// own test that it sees lost pins.
func redisKillWith(ctx context.Context, e *Env, b Bounds, forgetPins bool) (Figures, error) {
	var f Figures
	srv, err := e.StartRedis()
	if err != nil {
		return f, err
	}
	l, err := startLoaded(ctx, e, b, b.Fillers, Load{Readers: b.Readers, Claimers: b.Claimers, Pause: b.Pause}, RedisFlags(srv.Addr()), "A")
	if err != nil {
		return f, err
	}
	w, a := l.w, l.replicas[0]
	for i := 0; i < b.Faults; i++ {
		if err := sleep(ctx, b.Phase); err != nil {
			return f, err
		}
		cut := w.Rec.Now()
		f.Faults++
		if forgetPins {
			if err := deleteKeys(ctx, srv.Addr(), "*{p:*"); err != nil {
				return f, err
			}
		} else {
			srv.Kill()
			if err := sleep(ctx, b.Phase/2); err != nil {
				return f, err
			}
		}
		start := time.Now()
		if !forgetPins {
			srv.Restart()
		}
		if _, err := w.WaitRecovered(ctx, a, recoverTimeout); err != nil {
			return f, err
		}
		f.Recovery = max(f.Recovery, time.Since(start))
		if _, err := lostPins(ctx, w, a, &f, cut, false); err != nil {
			return f, err
		}
		if err := sleep(ctx, b.Phase/2); err != nil {
			return f, err
		}
		// A new version after the restart: claims are due again.
		if _, err := w.StageAndPublish(ctx, a); err != nil {
			return f, err
		}
	}
	if err := l.finish(ctx, e, b, &f); err != nil {
		return f, err
	}
	f.Note = "appendfsync always; impactd not restarted"
	return f, nil
}

// deleteKeys deletes every key matching pattern.
func deleteKeys(ctx context.Context, addr, pattern string) error {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer func() { _ = c.Close() }()
	it := c.Scan(ctx, 0, pattern, 1000).Iterator()
	for it.Next(ctx) {
		if err := c.Del(ctx, it.Val()).Err(); err != nil {
			return err
		}
	}
	return it.Err()
}
