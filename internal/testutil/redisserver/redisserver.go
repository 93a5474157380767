// Package redisserver starts throw-away redis-server processes for tests: a
// standalone server with the persistence settings a test chooses, a Redis
// Sentinel monitoring one, or a small Redis Cluster. Every server listens on a free loopback port with its data
// in t.TempDir() and is stopped by t.Cleanup, so tests never touch a Redis
// the machine already runs (such as the one on 6379).
//
// When redis-server is not on PATH, Start, StartSentinel and StartCluster skip the test, or
// fail it when the CI environment variable is "true" (CI installs Redis, so
// a missing binary there is a broken pipeline, not a reason to skip).
package redisserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout bounds how long a server may take to answer PING.
const startTimeout = 20 * time.Second

// Option configures a standalone server.
type Option func(*config)

type config struct {
	appendOnly  bool
	appendFsync string
	extra       []string
}

// AppendOnly turns the append-only file on or off (default off).
func AppendOnly(on bool) Option { return func(c *config) { c.appendOnly = on } }

// AppendFsync sets appendfsync: "always", "everysec" or "no" (default
// "everysec", Redis's own default). It has effect only with AppendOnly(true).
func AppendFsync(policy string) Option { return func(c *config) { c.appendFsync = policy } }

// Config adds raw redis.conf lines (for example "maxmemory 64mb").
func Config(lines ...string) Option {
	return func(c *config) { c.extra = append(c.extra, lines...) }
}

// ErrNotInstalled: redis-server (or redis-cli) is not on PATH.
var ErrNotInstalled = errors.New("redis-server not found on PATH")

// Server is one redis-server process owned by a test (Start) or by a test
// package (StartShared).
type Server struct {
	t    testing.TB // nil for a shared server
	dir  string
	own  bool // dir was made by StartShared and is removed by Close
	conf string
	port int
	args []string // extra redis-server arguments after the config file

	mu  sync.Mutex
	cmd *exec.Cmd
	// done is closed when the running process has exited.
	done chan struct{}
}

// requireBinaries skips (or, under CI=true, fails) the test when a needed
// Redis binary is missing.
func requireBinaries(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			SkipOrFail(t, fmt.Errorf("%w: %s: %v", ErrNotInstalled, name, err))
		}
	}
}

// SkipOrFail ends the test because err prevented starting Redis: a skip
// when err wraps ErrNotInstalled and CI is not "true", a failure otherwise.
func SkipOrFail(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrNotInstalled) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	t.Fatalf("redisserver: %v", err)
}

// Start starts a standalone redis-server for the test and waits until it
// answers PING. It is stopped (SIGKILL if it does not exit on SIGTERM) when
// the test ends. Without options it keeps no data on disk (no AOF, no RDB
// snapshots).
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	requireBinaries(t, "redis-server")
	s, err := newServer(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("redisserver: %v", err)
	}
	s.t = t
	t.Cleanup(s.Stop)
	return s
}

// StartShared starts a standalone server that outlives single tests, for a
// test package's TestMain; Close stops it and removes its data. It returns
// an error wrapping ErrNotInstalled if redis-server is not on PATH (tests
// then call SkipOrFail).
func StartShared(opts ...Option) (*Server, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotInstalled, err)
	}
	dir, err := os.MkdirTemp("", "redisserver-")
	if err != nil {
		return nil, err
	}
	s, err := newServer(dir, opts)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s.own = true
	return s, nil
}

// Shared is one server for a whole test package, started on first use:
//
//	var shared redisserver.Shared
//	func TestMain(m *testing.M) { code := m.Run(); shared.Close(); os.Exit(code) }
//	... srv := shared.Get(t)
type Shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Get returns the package's server, starting it once (SkipOrFail if
// redis-server is missing).
func (sh *Shared) Get(t testing.TB) *Server {
	t.Helper()
	sh.once.Do(func() { sh.srv, sh.err = StartShared() })
	if sh.err != nil {
		SkipOrFail(t, sh.err)
	}
	return sh.srv
}

// Close stops the server if it was started.
func (sh *Shared) Close() {
	if sh.srv != nil {
		sh.srv.Close()
	}
}

// Close stops the server and, for a shared server, removes its data.
func (s *Server) Close() {
	s.Stop()
	if s.own {
		_ = os.RemoveAll(s.dir)
	}
}

func newServer(dir string, opts []Option) (*Server, error) {
	c := config{appendFsync: "everysec"}
	for _, o := range opts {
		o(&c)
	}
	switch c.appendFsync {
	case "always", "everysec", "no":
	default:
		return nil, fmt.Errorf("appendfsync must be always, everysec or no, not %q", c.appendFsync)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort(false)
		if err != nil {
			return nil, err
		}
		conf, err := writeConf(dir, port, append([]string{"appendonly " + yesNo(c.appendOnly), "appendfsync " + c.appendFsync}, c.extra...)...)
		if err != nil {
			return nil, err
		}
		s := &Server{dir: dir, conf: conf, port: port}
		if lastErr = s.start(); lastErr == nil {
			return s, nil
		}
	}
	return nil, fmt.Errorf("could not start redis-server: %w", lastErr)
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Dir is the server's data directory (AOF, logs).
func (s *Server) Dir() string { return s.dir }

// Client returns a go-redis client for the server, closed when t ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (s *Server) start() error {
	cmd := exec.Command("redis-server", append([]string{s.conf}, s.args...)...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	if err := waitReady(s.Addr(), done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
		return fmt.Errorf("%w\n%s%s", err, stderr.Bytes(), tail(log, 2000))
	}
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	return nil
}

// Kill sends SIGKILL and waits for the process to exit: a crash, with no
// chance to flush anything that was not already written.
func (s *Server) Kill() {
	cmd, done := s.take()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// take hands over the running process (nil if none) to the caller that
// stops it, so that it is stopped once.
func (s *Server) take() (*exec.Cmd, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	return cmd, done
}

// Stop shuts the server down gracefully (SIGTERM), killing it if it has not
// exited within 10 s. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	cmd, done := s.take()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sigterm)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Restart stops the server if it runs and starts it again on the same port
// with the same data directory, so whatever it persisted (AOF) is loaded.
func (s *Server) Restart() {
	if s.t != nil {
		s.t.Helper()
	}
	s.Stop()
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // the port may linger briefly
	}
	if s.t == nil {
		panic(fmt.Sprintf("redisserver: restart: %v", err))
	}
	s.t.Fatalf("redisserver: restart: %v", err)
}

// Cluster is a Redis Cluster of master-only nodes owned by a test.
type Cluster struct {
	nodes []*Server
}

// StartCluster starts masters (at least 3) redis-server nodes with
// cluster-enabled yes, joins them with redis-cli --cluster create (no
// replicas) and waits until every node reports cluster_state:ok.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	requireBinaries(t, "redis-server", "redis-cli")
	if masters < 3 {
		t.Fatalf("redisserver: a cluster needs at least 3 masters, not %d", masters)
	}
	c := &Cluster{}
	for i := 0; i < masters; i++ {
		c.nodes = append(c.nodes, startClusterNode(t))
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redisserver: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range c.nodes {
		cl := redis.NewClient(&redis.Options{Addr: n.Addr()})
		for {
			info, err := cl.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				_ = cl.Close()
				t.Fatalf("redisserver: cluster node %s not ok: %v %s", n.Addr(), err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = cl.Close()
	}
	return c
}

// writeConf writes dir/redis.conf: a server on 127.0.0.1:port with its
// data and log in dir and no RDB snapshots, then the lines of extra. It
// returns the file's path.
func writeConf(dir string, port int, extra ...string) (string, error) {
	lines := append([]string{
		"port " + strconv.Itoa(port),
		"bind 127.0.0.1",
		"dir " + dir,
		"logfile " + filepath.Join(dir, "redis.log"),
		`save ""`,
	}, extra...)
	conf := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return "", err
	}
	return conf, nil
}

func startClusterNode(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort(true)
		if err != nil {
			t.Fatalf("redisserver: %v", err)
		}
		conf, err := writeConf(dir, port, "appendonly no", "cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 5000")
		if err != nil {
			t.Fatalf("redisserver: %v", err)
		}
		s := &Server{t: t, dir: dir, conf: conf, port: port}
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
		_ = os.Remove(filepath.Join(dir, "nodes.conf"))
	}
	t.Fatalf("redisserver: could not start cluster node: %v", lastErr)
	return nil
}

// Addrs lists the nodes' host:port addresses (seed addresses for a
// ClusterClient).
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Addr()
	}
	return out
}

// Nodes returns the cluster's servers.
func (c *Cluster) Nodes() []*Server { return c.nodes }

// Client returns a go-redis cluster client for the cluster, closed when the
// test ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// freePort finds a loopback port nobody listens on. For cluster nodes the
// cluster bus port (port+10000) must be free too.
func freePort(withBus bool) (int, error) {
	for attempt := 0; attempt < 100; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if port == 6379 {
			continue
		}
		if !withBus {
			return port, nil
		}
		if port+10000 > 65535 {
			continue
		}
		b, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		if err != nil {
			continue
		}
		_ = b.Close()
		return port, nil
	}
	return 0, errors.New("no free port pair found")
}

// waitReady polls PING until the server answers or the process exits.
func waitReady(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			return errors.New("redis-server exited during start-up")
		default:
		}
		if conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			_ = conn.SetDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 64)
			_, err = conn.Write([]byte("PING\r\n"))
			n := 0
			if err == nil {
				n, err = conn.Read(buf)
			}
			_ = conn.Close()
			// -LOADING while the AOF is replayed: keep waiting.
			if err == nil && strings.HasPrefix(string(buf[:n]), "+PONG") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s did not answer PING within %s", addr, startTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
