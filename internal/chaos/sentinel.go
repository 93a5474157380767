package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/testutil/netproxy"
	"github.com/impact-health/impact/internal/testutil/redisserver"
	"github.com/impact-health/impact/internal/testutil/testproc"
)

// SentinelSet is a master, one replica and one Sentinel (quorum 1) that
// promotes the replica when the master stops answering.
type SentinelSet struct {
	Master, Replica *redisserver.Server
	Sentinel        *Proc
	SentinelAddr    string
	Name            string
	link            *netproxy.Proxy // the replication link, when it lags
}

// KillMaster SIGKILLs the master, with the replication link cut at the
// same instant (a zone lost: what the link still held never arrives).
func (s *SentinelSet) KillMaster() {
	if s.link != nil {
		s.link.Close()
	}
	s.Master.Kill()
}

// StartSentinelSet starts the master and its replica (both appendonly
// yes, appendfsync always: only replication is asynchronous), waits until
// the replica is in sync, then starts the Sentinel. With lag > 0 the
// replica reaches the master through a netproxy.Proxy that delays the replication
// stream by lag (a link between zones), so that it runs behind.
func (e *Env) StartSentinelSet(ctx context.Context, lag time.Duration) (*SentinelSet, error) {
	s := &SentinelSet{Name: "chaos"}
	var err error
	if s.Master, err = e.StartRedis(); err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(s.Master.Addr())
	link := s.Master.Addr()
	var px *netproxy.Proxy
	if lag > 0 {
		if px, err = netproxy.Start(s.Master.Addr()); err != nil {
			return nil, err
		}
		e.cleanup(px.Close)
		link = px.Addr()
	}
	lhost, lport, _ := net.SplitHostPort(link)
	if s.Replica, err = e.StartRedis(redisserver.Config("replicaof " + lhost + " " + lport)); err != nil {
		return nil, err
	}
	if err := waitInfo(ctx, s.Replica.Addr(), "master_link_status:up"); err != nil {
		return nil, fmt.Errorf("replica: %w", err)
	}
	if px != nil {
		px.SetLatency(lag, lag)
		s.link = px
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, err
	}
	addrs, err := testproc.FreeAddrs(1)
	if err != nil {
		return nil, err
	}
	_, sport, _ := net.SplitHostPort(addrs[0])
	dir := filepath.Join(e.Dir, "sentinel")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// Sentinel rewrites its configuration file, so it lives in dir.
	conf := filepath.Join(dir, "sentinel.conf")
	lines := []string{
		"port " + sport, "bind 127.0.0.1", "dir " + dir,
		fmt.Sprintf("sentinel monitor %s %s %s 1", s.Name, host, port),
		fmt.Sprintf("sentinel down-after-milliseconds %s 500", s.Name),
		fmt.Sprintf("sentinel failover-timeout %s 5000", s.Name),
	}
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	if s.Sentinel, err = StartProc("sentinel", filepath.Join(dir, "sentinel.log"), "redis-server", testproc.CleanEnv(), conf, "--sentinel"); err != nil {
		return nil, err
	}
	e.cleanup(s.Sentinel.Stop)
	s.SentinelAddr = addrs[0]
	if err := s.waitMaster(ctx, s.Master.Addr(), 20*time.Second); err != nil {
		return nil, err
	}
	return s, nil
}

// Flags are impactd's flags for the set.
func (s *SentinelSet) Flags() []string {
	return []string{"--store", "redis", "--redis-sentinel-master", s.Name, "--redis-sentinel-addrs", s.SentinelAddr}
}

// waitMaster polls the Sentinel until it names want as the master.
func (s *SentinelSet) waitMaster(ctx context.Context, want string, timeout time.Duration) error {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.SentinelAddr})
	defer func() { _ = c.Close() }()
	deadline := time.Now().Add(timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		got, err := c.GetMasterAddrByName(cctx, s.Name).Result()
		cancel()
		if err == nil && len(got) == 2 && net.JoinHostPort(got[0], got[1]) == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sentinel does not name %s as master within %s (last %v, %v): %w", want, timeout, got, err, errTimeout)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// waitInfo polls INFO replication on addr until it contains want.
func waitInfo(ctx context.Context, addr, want string) error {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer func() { _ = c.Close() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := c.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %q in INFO replication: %w", addr, want, errTimeout)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// WaitCaughtUp waits until the replica has applied everything the master
// has written so far (bounded).
func (s *SentinelSet) WaitCaughtUp(ctx context.Context, timeout time.Duration) error {
	m := redis.NewClient(&redis.Options{Addr: s.Master.Addr()})
	r := redis.NewClient(&redis.Options{Addr: s.Replica.Addr()})
	defer func() { _ = m.Close(); _ = r.Close() }()
	deadline := time.Now().Add(timeout)
	for {
		want, err1 := infoInt(ctx, m, "master_repl_offset")
		got, err2 := infoInt(ctx, r, "slave_repl_offset")
		if err1 == nil && err2 == nil && got >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replica at offset %d, master at %d after %s: %w", got, want, timeout, errTimeout)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

func infoInt(ctx context.Context, c *redis.Client, field string) (int64, error) {
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			var n int64
			_, err := fmt.Sscan(v, &n)
			return n, err
		}
	}
	return 0, fmt.Errorf("no %s in INFO replication", field)
}
