package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// ErrVolatileLedger: the Redis configuration can lose acknowledged pins.
var ErrVolatileLedger = errors.New("redis may lose acknowledged notice pins")

// CheckDurability reads appendonly and appendfsync (on every master in
// Cluster mode) and returns an error wrapping ErrVolatileLedger that says
// what a crash could lose, unless every server runs with appendonly yes and
// appendfsync always. impactd refuses to start on such a Redis unless
// --allow-volatile-ledger is given.
//
// Even with appendfsync always, replication is asynchronous: a Sentinel or
// Cluster failover can promote a replica that has not received the latest
// pins. WithWait narrows that window; the notifier's wave files (the outbox)
// restore lost pins.
func (s *Store) CheckDurability(ctx context.Context) error {
	var (
		mu       sync.Mutex
		problems []string
	)
	check := func(ctx context.Context, c redis.Cmdable, addr string) error {
		cfg, err := c.ConfigGet(ctx, "append*").Result()
		if err != nil {
			return fmt.Errorf("redisstore: cannot read the persistence settings of %s (CONFIG GET): %w", addr, unavailable(err))
		}
		if p := durabilityProblem(cfg["appendonly"], cfg["appendfsync"]); p != "" {
			mu.Lock()
			problems = append(problems, addr+": "+p)
			mu.Unlock()
		}
		return nil
	}
	var err error
	switch c := s.c.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return check(ctx, m, m.Options().Addr)
		})
	case *redis.Client:
		err = check(ctx, c, c.Options().Addr)
	default:
		err = check(ctx, c, "redis")
	}
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s; in addition, replication is asynchronous, so a failover can lose pins that replicas had not received", ErrVolatileLedger, strings.Join(problems, "; "))
	}
	return nil
}

// durabilityProblem explains what a server with these settings can lose on
// a crash, or returns "" if it loses no acknowledged write.
func durabilityProblem(appendonly, appendfsync string) string {
	if appendonly != "yes" {
		return "appendonly is " + quoteOr(appendonly) + ": without the append-only file a crash loses every pin written since the last RDB snapshot (all of them if snapshots are off); set appendonly yes and appendfsync always"
	}
	switch appendfsync {
	case "always":
		return ""
	case "everysec":
		return "appendfsync is everysec: a crash can lose up to about one second of acknowledged pins; set appendfsync always"
	case "no":
		return "appendfsync is no: the kernel decides when the append-only file reaches the disk, so a machine crash can lose tens of seconds of acknowledged pins; set appendfsync always"
	}
	return "appendfsync is " + quoteOr(appendfsync) + ": unknown policy; set appendfsync always"
}

func quoteOr(s string) string {
	if s == "" {
		return "unset"
	}
	return `"` + s + `"`
}
