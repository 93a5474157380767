package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of Config.
const (
	// DefaultWaitTimeout bounds each WAIT when Config.WaitReplicas is set.
	DefaultWaitTimeout = time.Second
	// DefaultDurabilityTimeout bounds the durability check of Open.
	DefaultDurabilityTimeout = 5 * time.Second
)

// Fail fast: with Redis down, go-redis's defaults (3 retries, each dialing
// up to 5 times) hold every patient request about 2 s before it answers
// UNAVAILABLE (measured in internal/e2e). One retry covers a dropped
// connection; the caller's deadline bounds the rest.
const (
	dialTimeout   = 2 * time.Second
	ioTimeout     = 2 * time.Second
	maxRetries    = 1
	dialerRetries = 1
)

// Config says where the store finds Redis (exactly one topology: a
// standalone URL, Sentinel, or Cluster) and the durability it demands of
// it. impactd fills it from --redis-url, --redis-sentinel-master,
// --redis-sentinel-addrs, --redis-cluster-addrs, --redis-password,
// --redis-wait-replicas and --allow-volatile-ledger.
type Config struct {
	// URL is a standalone Redis, e.g. redis://127.0.0.1:6379/0 (it
	// carries its own password).
	URL string
	// SentinelMaster is the master name the sentinels at SentinelAddrs
	// monitor.
	SentinelMaster string
	SentinelAddrs  []string
	// ClusterAddrs are Redis Cluster seed addresses.
	ClusterAddrs []string
	// Password authenticates to Sentinel-managed or Cluster servers.
	Password string

	// WaitReplicas is how many replicas must acknowledge each pin and
	// publish (WAIT), within WaitTimeout (zero: DefaultWaitTimeout).
	WaitReplicas int
	WaitTimeout  time.Duration
	// AllowVolatileLedger lets Open succeed on a Redis that could lose
	// acknowledged pins (appendonly no, or appendfsync not always),
	// logging the risk instead of refusing.
	AllowVolatileLedger bool
}

// Validate checks that c names exactly one topology.
func (c Config) Validate() error {
	n := 0
	for _, set := range []bool{c.URL != "", len(c.SentinelAddrs) > 0, len(c.ClusterAddrs) > 0} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("--store redis needs exactly one of --redis-url, --redis-sentinel-addrs, --redis-cluster-addrs")
	}
	if len(c.SentinelAddrs) > 0 && c.SentinelMaster == "" {
		return errors.New("--redis-sentinel-addrs needs --redis-sentinel-master")
	}
	if c.WaitReplicas < 0 {
		return errors.New("--redis-wait-replicas must not be negative")
	}
	return nil
}

// NewClient builds the go-redis client of c's topology. Every command is
// bounded by the caller's context (ContextTimeoutEnabled), so a request
// deadline bounds its Redis calls and an outage fails fast.
func (c Config) NewClient() (redis.UniversalClient, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	switch {
	case len(c.ClusterAddrs) > 0:
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: c.ClusterAddrs, Password: c.Password,
			DialTimeout: dialTimeout, ReadTimeout: ioTimeout, WriteTimeout: ioTimeout, ContextTimeoutEnabled: true,
			MaxRetries: maxRetries, DialerRetries: dialerRetries,
		}), nil
	case len(c.SentinelAddrs) > 0:
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: c.SentinelMaster, SentinelAddrs: c.SentinelAddrs, Password: c.Password,
			DialTimeout: dialTimeout, ReadTimeout: ioTimeout, WriteTimeout: ioTimeout, ContextTimeoutEnabled: true,
			MaxRetries: maxRetries, DialerRetries: dialerRetries,
		}), nil
	default:
		opt, err := redis.ParseURL(c.URL)
		if err != nil {
			return nil, fmt.Errorf("--redis-url: %w", err)
		}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.ContextTimeoutEnabled = dialTimeout, ioTimeout, ioTimeout, true
		opt.MaxRetries, opt.DialerRetries = maxRetries, dialerRetries
		return redis.NewClient(opt), nil
	}
}

// Open connects the store described by c (default key prefix) and checks
// that Redis keeps the notice ledger durable (appendonly yes, appendfsync
// always): it refuses a Redis that could lose acknowledged pins unless
// c.AllowVolatileLedger accepts the risk, which it then logs on log. go-redis
// logs through log from then on (SetLogger). Once Redis answered, it adds
// the auto-pipelining read client (NewReadClient, WithReadClient).
func Open(ctx context.Context, c Config, log *slog.Logger) (*Store, error) {
	if log != nil {
		SetLogger(log)
	}
	client, err := c.NewClient()
	if err != nil {
		return nil, err
	}
	var opts []Option
	if c.WaitReplicas > 0 {
		timeout := c.WaitTimeout
		if timeout <= 0 {
			timeout = DefaultWaitTimeout
		}
		opts = append(opts, WithWait(c.WaitReplicas, timeout))
	}
	st, err := New(client, opts...)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, DefaultDurabilityTimeout)
	defer cancel()
	switch err := st.CheckDurability(cctx); {
	case err == nil:
	case errors.Is(err, ErrVolatileLedger) && c.AllowVolatileLedger:
		if log != nil {
			log.Warn("volatile notice ledger accepted by --allow-volatile-ledger", "risk", err.Error())
		}
	case errors.Is(err, ErrVolatileLedger):
		_ = st.Close()
		return nil, fmt.Errorf("%w (start with --allow-volatile-ledger to accept that risk)", err)
	default:
		_ = st.Close()
		return nil, err
	}
	// Redis answered: the read client connects now (see readclient.go).
	rc, err := c.NewReadClient()
	if err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("redis read client: %w", err)
	}
	st.rc = rc
	return st, nil
}
