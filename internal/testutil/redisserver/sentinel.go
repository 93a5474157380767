package redisserver

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel is one Redis Sentinel process owned by a test.
type Sentinel struct {
	srv  *Server
	name string
}

// StartSentinel starts a Redis Sentinel (redis-server --sentinel) that
// monitors master under name with a quorum of 1 and short down-after and
// failover timeouts, and waits until it answers SENTINEL
// get-master-addr-by-name with master's address. Like Start, it listens on
// a free loopback port with its own directory, is stopped when the test
// ends, and skips the test (fails it under CI=true) when redis-server is
// not on PATH.
func StartSentinel(t testing.TB, master *Server, name string) *Sentinel {
	t.Helper()
	requireBinaries(t, "redis-server")
	if master == nil || name == "" {
		t.Fatalf("redisserver: StartSentinel needs a master and a name")
	}
	dir := t.TempDir()
	host, port, err := net.SplitHostPort(master.Addr())
	if err != nil {
		t.Fatalf("redisserver: %v", err)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		p, err := freePort(false)
		if err != nil {
			t.Fatalf("redisserver: %v", err)
		}
		// Sentinel rewrites its configuration file, so it lives in dir.
		lines := []string{
			"port " + strconv.Itoa(p),
			"bind 127.0.0.1",
			"dir " + dir,
			"logfile " + filepath.Join(dir, "sentinel.log"),
			fmt.Sprintf("sentinel monitor %s %s %s 1", name, host, port),
			fmt.Sprintf("sentinel down-after-milliseconds %s 1000", name),
			fmt.Sprintf("sentinel failover-timeout %s 3000", name),
		}
		conf := filepath.Join(dir, "sentinel.conf")
		if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatalf("redisserver: %v", err)
		}
		s := &Server{t: t, dir: dir, conf: conf, port: p, args: []string{"--sentinel"}}
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Stop)
			sn := &Sentinel{srv: s, name: name}
			if err := sn.waitMaster(master.Addr()); err != nil {
				log, _ := os.ReadFile(filepath.Join(dir, "sentinel.log"))
				t.Fatalf("redisserver: %v\n%s", err, tail(log, 2000))
			}
			return sn
		}
	}
	t.Fatalf("redisserver: could not start sentinel: %v", lastErr)
	return nil
}

// waitMaster polls SENTINEL get-master-addr-by-name until it answers want.
func (s *Sentinel) waitMaster(want string) error {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
	defer func() { _ = c.Close() }()
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		got, err := c.GetMasterAddrByName(ctx, s.name).Result()
		cancel()
		if err == nil && len(got) == 2 && net.JoinHostPort(got[0], got[1]) == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sentinel on %s does not name %s as master %q within %s (last answer %v, %v)", s.Addr(), want, s.name, startTimeout, got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Addr is the sentinel's host:port (a SentinelAddrs entry of a go-redis
// FailoverClient).
func (s *Sentinel) Addr() string { return s.srv.Addr() }

// MasterName is the name under which the sentinel monitors the master.
func (s *Sentinel) MasterName() string { return s.name }
