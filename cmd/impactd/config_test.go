package main

import (
	"io"
	"slices"
	"testing"

	"github.com/impact-health/impact/internal/app"
	"github.com/impact-health/impact/internal/server"
)

// The flags' defaults are app.DefaultConfig's, so that each default is
// written once.
func TestFlagDefaults(t *testing.T) {
	c, err := parseConfig([]string{"--dev"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Server
	if s.GRPCAddr != ":9090" || s.HTTPAddr != ":8080" || s.AdminGRPCAddr != "127.0.0.1:9091" || s.AdminHTTPAddr != "127.0.0.1:8081" {
		t.Fatalf("listeners %+v", s)
	}
	d := server.DefaultConfig()
	if s.RequestTimeout != d.RequestTimeout || s.ShutdownTimeout != d.ShutdownTimeout || s.MaxBodyBytes != d.MaxBodyBytes {
		t.Fatalf("server defaults %+v", s)
	}
	if c.Store != app.StoreEmbedded || c.Log != (app.LogConfig{Level: "info", JSON: true}) {
		t.Fatalf("store %q, log %+v", c.Store, c.Log)
	}
}

// The Redis flags fill the store's Config; address lists are split on
// commas and trimmed.
func TestRedisFlags(t *testing.T) {
	c, err := parseConfig([]string{"--dev", "--store", "redis",
		"--redis-sentinel-master", "m", "--redis-sentinel-addrs", " a:26379, b:26379,",
		"--redis-wait-replicas", "2", "--allow-volatile-ledger"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Redis
	if r.SentinelMaster != "m" || !slices.Equal(r.SentinelAddrs, []string{"a:26379", "b:26379"}) || r.WaitReplicas != 2 || !r.AllowVolatileLedger {
		t.Fatalf("redis config %+v", r)
	}
	t.Setenv("IMPACT_REDIS_CLUSTER_ADDRS", "c:7000,d:7000")
	c, err = parseConfig([]string{"--dev", "--store", "redis"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Redis.ClusterAddrs, []string{"c:7000", "d:7000"}) {
		t.Fatalf("cluster addrs %q", c.Redis.ClusterAddrs)
	}
	if _, err := parseConfig([]string{"--dev", "--store", "redis", "--redis-url", "redis://x", "--redis-cluster-addrs", "c:1"}, io.Discard); err == nil {
		t.Fatal("two topologies accepted")
	}
}
