package redisserver

import (
	"context"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestRestartKeepsAOFData(t *testing.T) {
	s := Start(t, AppendOnly(true), AppendFsync("always"))
	ctx := context.Background()
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	if err := c.Get(ctx, "k").Err(); err == nil {
		t.Fatal("GET succeeded against a killed server")
	}
	s.Restart()
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("after restart: %q, %v; want v", got, err)
	}
	if s.Addr() == "127.0.0.1:6379" {
		t.Fatal("server uses the default port")
	}
}

func TestVolatileByDefault(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	if err := c.Get(ctx, "k").Err(); err == nil {
		t.Fatal("data survived a restart without persistence")
	}
}

func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster start-up takes a few seconds")
	}
	cl := StartCluster(t, 3)
	if len(cl.Addrs()) != 3 {
		t.Fatalf("addrs = %v", cl.Addrs())
	}
	c := cl.Client(t)
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		if err := c.Set(ctx, k, k, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	total, nonEmpty := int64(0), 0
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		mu.Lock()
		defer mu.Unlock()
		total += n
		if n > 0 {
			nonEmpty++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if total != 5 || nonEmpty < 2 {
		t.Fatalf("keys spread: total %d over %d masters; want 5 keys on at least 2 masters", total, nonEmpty)
	}
}

func TestSentinel(t *testing.T) {
	m := Start(t)
	s := StartSentinel(t, m, "mymaster")
	if s.Addr() == m.Addr() || s.MasterName() != "mymaster" {
		t.Fatalf("sentinel %s (%s), master %s", s.Addr(), s.MasterName(), m.Addr())
	}
	ctx := context.Background()
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "mymaster", SentinelAddrs: []string{s.Addr()}})
	defer func() { _ = c.Close() }()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := m.Client(t).Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("master has %q, %v; want the value written through the sentinel", got, err)
	}
}
