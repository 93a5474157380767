package redisstore_test

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

// sentinelConfig is the configuration of a store that finds its Redis
// through the sentinel s (impactd's --redis-sentinel-master and
// --redis-sentinel-addrs).
func sentinelConfig(s *redisserver.Sentinel) redisstore.Config {
	return redisstore.Config{SentinelMaster: s.MasterName(), SentinelAddrs: []string{s.Addr()}}
}

// The store Open builds through Sentinel (NewClient's FailoverClient, Open's
// durability check) passes the conformance suite against the master the
// sentinel names.
func TestSentinelConformance(t *testing.T) {
	master := redisserver.Start(t, redisserver.AppendOnly(true), redisserver.AppendFsync("always"))
	sentinel := redisserver.StartSentinel(t, master, "impact-master")
	cfg := sentinelConfig(sentinel)
	direct := master.Client(t)
	log := slog.New(slog.DiscardHandler)

	storetest.RunConformance(t, func(t *testing.T) store.Store {
		ctx := context.Background()
		// Open builds its store with the default key prefix, so each
		// subtest starts from an empty master instead.
		if err := direct.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		st, err := redisstore.Open(ctx, cfg, log)
		if err != nil {
			t.Fatalf("Open through sentinel: %v", err)
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

// Open checks the durability of the master it reaches through Sentinel: it
// refuses a master with appendfsync everysec unless AllowVolatileLedger
// (--allow-volatile-ledger) accepts the risk.
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
			st, err := redisstore.Open(ctx, cfg, log)
			if tc.wantErr {
				if err == nil {
					_ = st.Close()
					t.Fatal("Open accepted a master with appendfsync everysec")
				}
				if !errors.Is(err, redisstore.ErrVolatileLedger) || !strings.Contains(err.Error(), "--allow-volatile-ledger") ||
					!strings.Contains(err.Error(), "everysec") {
					t.Fatalf("error %q: want ErrVolatileLedger naming everysec and --allow-volatile-ledger", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer func() { _ = st.Close() }()
			if err := st.Ping(ctx); err != nil {
				t.Fatalf("ping through sentinel: %v", err)
			}
		})
	}
}

// The client really asks the sentinel: a master name the sentinel does not
// monitor leaves Open without a server to check.
func TestSentinelUnknownMaster(t *testing.T) {
	master := redisserver.Start(t, redisserver.AppendOnly(true), redisserver.AppendFsync("always"))
	sentinel := redisserver.StartSentinel(t, master, "impact-master")
	cfg := sentinelConfig(sentinel)
	cfg.SentinelMaster = "other-master"
	st, err := redisstore.Open(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		_ = st.Close()
		t.Fatal("Open succeeded with a master name the sentinel does not know")
	}
	if errors.Is(err, redisstore.ErrVolatileLedger) {
		t.Fatalf("error %v: want a connection failure, not a durability verdict", err)
	}
}
