package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/impact-health/impact/internal/store"
	redisstore "github.com/impact-health/impact/internal/store/redis"
	"github.com/impact-health/impact/internal/store/storetest"
	"github.com/impact-health/impact/internal/testutil/redisserver"
)

// sentinelConfig is the configuration of an impactd that finds its Redis
// through the sentinel s (--redis-sentinel-master, --redis-sentinel-addrs).
func sentinelConfig(s *redisserver.Sentinel) *config {
	return &config{RedisSentinelMaster: s.MasterName(), RedisSentinelAddrs: " " + s.Addr() + ", "}
}

// The store impactd opens through Sentinel (redisClient's FailoverClient,
// openRedis's durability check) passes the conformance suite against the
// master the sentinel names.
func TestSentinelConformance(t *testing.T) {
	master := redisserver.Start(t, redisserver.AppendOnly(true), redisserver.AppendFsync("always"))
	sentinel := redisserver.StartSentinel(t, master, "impact-master")
	cfg := sentinelConfig(sentinel)
	direct := master.Client(t)
	log := slog.New(slog.DiscardHandler)

	storetest.RunConformance(t, func(t *testing.T) store.Store {
		ctx := context.Background()
		// openRedis builds its store with the default key prefix, so each
		// subtest starts from an empty master instead.
		if err := direct.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		st, err := openRedis(ctx, cfg, log)
		if err != nil {
			t.Fatalf("openRedis through sentinel: %v", err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	})

	// The store wrote to the master the sentinel names, under the default
	// prefix.
	n, err := direct.Exists(context.Background(), redisstore.DefaultPrefix+"incidents").Result()
	if err != nil || n != 1 {
		t.Fatalf("master holds %sincidents: %d, %v; want the conformance run's incidents there", redisstore.DefaultPrefix, n, err)
	}
}

// openRedis checks the durability of the master it reaches through
// Sentinel: it refuses a master with appendfsync everysec unless
// --allow-volatile-ledger accepts the risk.
func TestSentinelDurabilityCheck(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	durable := redisserver.StartSentinel(t,
		redisserver.Start(t, redisserver.AppendOnly(true), redisserver.AppendFsync("always")), "durable")
	volatile := redisserver.StartSentinel(t,
		redisserver.Start(t, redisserver.AppendOnly(true), redisserver.AppendFsync("everysec")), "volatile")
	for _, tc := range []struct {
		name     string
		sentinel *redisserver.Sentinel
		allow    bool
		wantErr  bool
	}{
		{"appendfsync always", durable, false, false},
		{"appendfsync everysec", volatile, false, true},
		{"appendfsync everysec with --allow-volatile-ledger", volatile, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := sentinelConfig(tc.sentinel)
			cfg.AllowVolatileLedger = tc.allow
			st, err := openRedis(ctx, cfg, log)
			if tc.wantErr {
				if err == nil {
					_ = st.Close()
					t.Fatal("openRedis accepted a master with appendfsync everysec")
				}
				if !errors.Is(err, redisstore.ErrVolatileLedger) || !strings.Contains(err.Error(), "--allow-volatile-ledger") ||
					!strings.Contains(err.Error(), "everysec") {
					t.Fatalf("error %q: want ErrVolatileLedger naming everysec and --allow-volatile-ledger", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("openRedis: %v", err)
			}
			defer func() { _ = st.Close() }()
			if err := st.Ping(ctx); err != nil {
				t.Fatalf("ping through sentinel: %v", err)
			}
		})
	}
}

// The client really asks the sentinel: a master name the sentinel does not
// monitor leaves openRedis without a server to check.
func TestSentinelUnknownMaster(t *testing.T) {
	master := redisserver.Start(t, redisserver.AppendOnly(true), redisserver.AppendFsync("always"))
	sentinel := redisserver.StartSentinel(t, master, "impact-master")
	cfg := sentinelConfig(sentinel)
	cfg.RedisSentinelMaster = "other-master"
	st, err := openRedis(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		_ = st.Close()
		t.Fatal("openRedis succeeded with a master name the sentinel does not know")
	}
	if errors.Is(err, redisstore.ErrVolatileLedger) {
		t.Fatalf("error %v: want a connection failure, not a durability verdict", err)
	}
}
