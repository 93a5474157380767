package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/testutil/netproxy"
	"github.com/impact-health/impact/internal/testutil/redisserver"
)

// Binaries are the built programs a scenario runs.
type Binaries struct {
	Impactd, Impactctl string
}

// Env is one scenario's processes and files, all under Dir; Close stops
// every process it started.
type Env struct {
	Dir            string
	DataDir        string // dev keys, and the embedded store's data
	ImpactdBin     string
	ImpactctlBin   string
	RequestTimeout time.Duration

	mu       sync.Mutex
	cleanups []func()
	logs     []string // every impactd's log file
}

// NewEnv makes a scenario environment in a fresh directory under parent.
func NewEnv(parent, name string, bins Binaries) (*Env, error) {
	dir, err := os.MkdirTemp(parent, name+"-")
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, DataDir: filepath.Join(dir, "data"), ImpactdBin: bins.Impactd, ImpactctlBin: bins.Impactctl,
		RequestTimeout: 2 * time.Second}
	if err := os.MkdirAll(e.DataDir, 0o700); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *Env) cleanup(f func()) {
	e.mu.Lock()
	e.cleanups = append(e.cleanups, f)
	e.mu.Unlock()
}

// Close stops every process, last started first.
func (e *Env) Close() {
	e.mu.Lock()
	fs := e.cleanups
	e.cleanups = nil
	e.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// StartRedis starts a standalone redis-server that keeps every
// acknowledged write (appendonly yes, appendfsync always), as impactd
// requires for the ledger.
func (e *Env) StartRedis(opts ...redisserver.Option) (*redisserver.Server, error) {
	opts = append([]redisserver.Option{redisserver.AppendOnly(true), redisserver.AppendFsync("always")}, opts...)
	srv, err := redisserver.StartShared(opts...)
	if err != nil {
		return nil, fmt.Errorf("redis-server: %w", err)
	}
	e.cleanup(srv.Close)
	return srv, nil
}

// StartProxiedRedis starts a redis-server as StartRedis does and a TCP
// proxy in front of it (closed with the scenario), for faults between
// impactd and Redis.
func (e *Env) StartProxiedRedis() (*redisserver.Server, *netproxy.Proxy, error) {
	srv, err := e.StartRedis()
	if err != nil {
		return nil, nil, err
	}
	px, err := netproxy.Start(srv.Addr())
	if err != nil {
		return nil, nil, err
	}
	e.cleanup(px.Close)
	return srv, px, nil
}

// Token mints a dev token for sub with the scenario's dev keys (impactd
// --dev creates them when the first replica starts).
func (e *Env) Token(sub string, scopes ...string) (string, error) {
	return auth.MintDevToken(e.DataDir, sub, scopes, 2*time.Hour)
}

// RedisFlags are impactd's flags for a standalone Redis at addr.
func RedisFlags(addr string) []string {
	return []string{"--store", "redis", "--redis-url", "redis://" + addr + "/0"}
}
