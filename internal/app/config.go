package app

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/pace"
	"github.com/impact-health/impact/internal/ratelimit"
	"github.com/impact-health/impact/internal/server"
	"github.com/impact-health/impact/internal/snapshot"
	redisstore "github.com/impact-health/impact/internal/store/redis"
	"github.com/impact-health/impact/internal/store/replica"
)

// Store engines of Config.Store.
const (
	StoreEmbedded = "embedded" // one local bbolt file under DataDir
	StoreRedis    = "redis"    // a shared Redis (Config.Redis)
)

// Defaults of Config that belong to no other package.
const (
	// DefaultCatalogSize bounds the per-version cache (specs and
	// dictionaries).
	DefaultCatalogSize = 64
	// DefaultDataDir holds the embedded store and the upload spool.
	DefaultDataDir = "impact-data"
	// DefaultDevDataDir is the data directory with Dev: where
	// `impactctl dev token` looks by default.
	DefaultDevDataDir = ".impact-dev"
	// DefaultLogLevel is the slog level of the default logger.
	DefaultLogLevel = "info"
)

// Default rate limits of the patient listener, global (what one subject or
// one address gets across the deployment; each replica enforces its share).
// The per-subject limit is the per-patient protection: an app polls a
// status a few times a visit. The per-address limit only stops one abusive
// source: behind one carrier-grade NAT address thousands of mobile patients
// may check at once during a spike (4,000 patients x 5 reads within a
// minute is ~330 req/s), while 1,000 req/s is ~16% of what one replica
// serves over REST. docs/contract.md, "Rate limits", has the reasoning.
var (
	DefaultRateSubject = ratelimit.Limit{Rate: 5, Period: time.Second, Burst: 20}
	DefaultRateIP      = ratelimit.Limit{Rate: 1000, Period: time.Second, Burst: 2000}
)

// Config is everything an Impact server is built from. Start from
// DefaultConfig: a zero rate limit means no limit, while the other zero
// fields take their package's defaults when New completes the Config.
type Config struct {
	// Server is the transport: listeners, timeouts, TLS, CORS, proxies.
	Server server.Config

	// Store is StoreEmbedded or StoreRedis.
	Store string
	// DataDir holds the embedded store (impact.db), the upload spool by
	// default and, with Dev, the development keys. Empty: DefaultDataDir,
	// or DefaultDevDataDir with Dev.
	DataDir string
	// Redis is the topology and durability policy of StoreRedis.
	Redis redisstore.Config
	// MemoryReads makes impactd answer patient reads from memory under a
	// lease (package store/replica), over the embedded store's change log
	// or a standalone or Sentinel Redis's change stream; off, or on a
	// Cluster, every read goes to the store.
	MemoryReads bool
	// ReplicaLease is the lease of a replica that answers from memory: one
	// cut off from Redis stops answering from memory within it, and a write
	// waits at most about that long for a replica that vanished. Its
	// safety margin is a tenth of it.
	ReplicaLease time.Duration

	// Auth verifies tokens (JWKS, issuer, audience).
	Auth auth.Config
	// PepperFile holds the secret pepper of subject keys.
	PepperFile string
	// Dev creates (once) a local signing key, JWKS and pepper in DataDir
	// and uses them where Auth and PepperFile leave them unset.
	Dev bool

	// Web serves the patient web page at "/" of the patient REST listener.
	Web bool
	// UploadReadRate caps how fast uploads read rosters, bytes per second
	// over all uploads; 0 is unlimited.
	UploadReadRate int
	// BackgroundMaxPause is the longest pause of one Yield of background
	// work (uploads, staging, read-back) while patient calls are in flight:
	// the progress floor of package pace. 0 turns pacing off; DefaultConfig
	// sets pace.DefaultMaxPause.
	BackgroundMaxPause time.Duration
	// PublishApprovals is how many admins every publish and rollback
	// needs, the requester included: with 2 or more a publish is a pending
	// request that other admins approve. ApprovalTTL is how long a request
	// waits for them before it lapses.
	PublishApprovals int
	ApprovalTTL      time.Duration
	// RateSubject and RateIP limit the patient listener per token subject
	// and per client address (IPv6 per /64), in process, each a global
	// limit divided among the replicas (limiters.go); zero is off.
	RateSubject, RateIP ratelimit.Limit
	// RatePracticeIDs limits the subject ids each practice checks
	// (practice.go); zero is off.
	RatePracticeIDs ratelimit.Limit
	// CatalogSize bounds the per-version cache; zero: DefaultCatalogSize.
	CatalogSize int

	// Log configures the logger Run builds.
	Log LogConfig
}

// LogConfig is the logger of Run.
type LogConfig struct {
	Level string // debug, info, warn or error; empty: DefaultLogLevel
	JSON  bool   // JSON lines (text when false)
}

// DefaultConfig is the configuration of impactd before flags and the
// environment: every default in one place.
func DefaultConfig() Config {
	return Config{
		Server:       server.DefaultConfig(),
		Store:        StoreEmbedded,
		RateSubject:  DefaultRateSubject,
		RateIP:       DefaultRateIP,
		CatalogSize:  DefaultCatalogSize,
		MemoryReads:  true,
		ReplicaLease: replica.DefaultLease,
		Log:          LogConfig{Level: DefaultLogLevel, JSON: true},

		BackgroundMaxPause: pace.DefaultMaxPause,
		PublishApprovals:   1,
		ApprovalTTL:        snapshot.DefaultApprovalTTL,

		RatePracticeIDs: DefaultRatePracticeIDs,
	}
}

// Validate checks c without touching the file system or the network.
func (c *Config) Validate() error {
	switch c.Store {
	case StoreEmbedded:
	case StoreRedis:
		if err := c.Redis.Validate(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("--store must be embedded or redis, not %q", c.Store)
	}
	if !c.Dev {
		var missing []string
		if c.Auth.JWKSFile == "" && c.Auth.JWKSURL == "" {
			missing = append(missing, "--jwks-file or --jwks-url")
		}
		for _, f := range [][2]string{{"--issuer", c.Auth.Issuer}, {"--audience", c.Auth.Audience}, {"--pepper-file", c.PepperFile}} {
			if f[1] == "" {
				missing = append(missing, f[0])
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("missing %s (or use --dev on a workstation)", strings.Join(missing, ", "))
		}
	}
	if c.PublishApprovals < 1 {
		return fmt.Errorf("--publish-approvals must be at least 1, not %d", c.PublishApprovals)
	}
	if c.BackgroundMaxPause < 0 {
		return fmt.Errorf("--background-max-pause must not be negative, not %s", c.BackgroundMaxPause)
	}
	if c.ApprovalTTL <= 0 {
		return fmt.Errorf("--approval-ttl must be positive, not %s", c.ApprovalTTL)
	}
	if err := c.validateSecurity(); err != nil {
		return err
	}
	if c.ReplicaLease < 100*time.Millisecond {
		return errors.New("--replica-lease must be at least 100ms")
	}
	if err := c.validatePractice(); err != nil { // practice.go
		return err
	}
	switch c.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		return errors.New("--log-level must be debug, info, warn or error")
	}
	return nil
}

// validateSecurity checks the transport combinations flag parsing cannot.
func (c *Config) validateSecurity() error {
	s := &c.Server
	if (s.TLSCertFile == "") != (s.TLSKeyFile == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if s.AdminClientCAFile != "" && s.TLSCertFile == "" {
		return errors.New("--admin-client-ca needs --tls-cert and --tls-key (the ops listeners serve the same certificate)")
	}
	if (s.TrustedProxyHeader == "") != (len(s.TrustedProxies) == 0) {
		return errors.New("--trusted-proxy-header and --trusted-proxies go together")
	}
	if s.MaxBodyBytes <= 0 {
		return errors.New("--max-body-bytes must be positive")
	}
	for _, l := range []ratelimit.Limit{c.RateSubject, c.RateIP} {
		if !l.IsZero() {
			if err := l.Validate(); err != nil {
				return fmt.Errorf("rate limit %s: %w", l, err)
			}
		}
	}
	return nil
}

// complete fills the defaults that depend on other fields: the data
// directory, the upload spool under it, the catalog size and log level.
// With Dev it creates the development keys and uses them where c leaves
// authentication unset.
func (c *Config) complete() error {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
		if c.Dev {
			c.DataDir = DefaultDevDataDir
		}
	}
	if c.Server.UploadDir == "" {
		c.Server.UploadDir = c.DataDir + "/uploads"
	}
	if c.CatalogSize <= 0 {
		c.CatalogSize = DefaultCatalogSize
	}
	if c.Log.Level == "" {
		c.Log.Level = DefaultLogLevel
	}
	if !c.Dev {
		return nil
	}
	files, err := auth.EnsureDevKeys(c.DataDir)
	if err != nil {
		return fmt.Errorf("dev keys: %w", err)
	}
	if c.Auth.JWKSFile == "" && c.Auth.JWKSURL == "" {
		c.Auth.JWKSFile = files.JWKSFile
	}
	if c.Auth.Issuer == "" {
		c.Auth.Issuer = auth.DevIssuer
	}
	if c.Auth.Audience == "" {
		c.Auth.Audience = auth.DevAudience
	}
	if c.PepperFile == "" {
		c.PepperFile = files.PepperFile
	}
	return nil
}
