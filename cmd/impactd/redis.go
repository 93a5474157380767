package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
	redisstore "github.com/impact-health/impact/internal/store/redis"
)

// redisClient builds the go-redis client of the configured topology. Every
// command is bounded by the caller's context (ContextTimeoutEnabled), so a
// request deadline bounds its Redis calls and an outage fails fast.
func redisClient(cfg *config) (redis.UniversalClient, error) {
	split := func(s string) []string {
		var out []string
		for _, a := range strings.Split(s, ",") {
			if a = strings.TrimSpace(a); a != "" {
				out = append(out, a)
			}
		}
		return out
	}
	// Fail fast: with Redis down, go-redis's defaults (3 retries, each
	// dialing up to 5 times) hold every patient request about 2 s before it
	// answers UNAVAILABLE (measured in internal/e2e). One retry covers a
	// dropped connection; the caller's deadline bounds the rest.
	const (
		dialTimeout   = 2 * time.Second
		ioTimeout     = 2 * time.Second
		maxRetries    = 1
		dialerRetries = 1
	)
	switch {
	case cfg.RedisClusterAddrs != "":
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: split(cfg.RedisClusterAddrs), Password: cfg.RedisPassword,
			DialTimeout: dialTimeout, ReadTimeout: ioTimeout, WriteTimeout: ioTimeout, ContextTimeoutEnabled: true,
			MaxRetries: maxRetries, DialerRetries: dialerRetries,
		}), nil
	case cfg.RedisSentinelAddrs != "":
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: cfg.RedisSentinelMaster, SentinelAddrs: split(cfg.RedisSentinelAddrs), Password: cfg.RedisPassword,
			DialTimeout: dialTimeout, ReadTimeout: ioTimeout, WriteTimeout: ioTimeout, ContextTimeoutEnabled: true,
			MaxRetries: maxRetries, DialerRetries: dialerRetries,
		}), nil
	default:
		opt, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("--redis-url: %w", err)
		}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.ContextTimeoutEnabled = dialTimeout, ioTimeout, ioTimeout, true
		opt.MaxRetries, opt.DialerRetries = maxRetries, dialerRetries
		return redis.NewClient(opt), nil
	}
}

// openRedis connects the Redis store and checks that Redis keeps the notice
// ledger durable (appendonly yes, appendfsync always) unless the operator
// accepts the risk with --allow-volatile-ledger.
func openRedis(ctx context.Context, cfg *config, log *slog.Logger) (store.Store, error) {
	client, err := redisClient(cfg)
	if err != nil {
		return nil, err
	}
	var opts []redisstore.Option
	if cfg.RedisWaitReplicas > 0 {
		opts = append(opts, redisstore.WithWait(cfg.RedisWaitReplicas, time.Second))
	}
	st, err := redisstore.New(client, opts...)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	switch err := st.CheckDurability(cctx); {
	case err == nil:
	case errors.Is(err, redisstore.ErrVolatileLedger) && cfg.AllowVolatileLedger:
		log.Warn("volatile notice ledger accepted by --allow-volatile-ledger", "risk", err.Error())
	case errors.Is(err, redisstore.ErrVolatileLedger):
		_ = st.Close()
		return nil, fmt.Errorf("%w (start with --allow-volatile-ledger to accept that risk)", err)
	default:
		_ = st.Close()
		return nil, err
	}
	return st, nil
}
