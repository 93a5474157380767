// Package impacttest starts a real impactd in process for tests: the server
// internal/app wires from its Config (the same function impactd calls), on
// loopback listeners, with the embedded (bbolt) store, dev keys and the real
// token verifier, all under t.TempDir() and stopped by t.Cleanup. It also
// holds what the tests of several packages share: dev tokens and a
// throw-away certificate authority for TLS and mutual TLS.
package impacttest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/app"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/practice"
	"github.com/impact-health/impact/internal/ratelimit"
	"github.com/impact-health/impact/internal/server"
	"github.com/impact-health/impact/internal/snapshot"
	istatus "github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/telemetry"
)

// DefaultReadyInterval is the readiness probe period of a test server
// whose Options leave Config.ReadyInterval zero.
const DefaultReadyInterval = 50 * time.Millisecond

// Options configure Start. The zero value is a plaintext server with no
// telemetry, no rate limits and no web page that logs nothing.
type Options struct {
	// Config is the server configuration. Empty listener addresses
	// default to 127.0.0.1:0, a zero ReadyInterval to
	// DefaultReadyInterval and an empty UploadDir to Env.Dir; the rest
	// keeps server.Config's own defaults.
	Config server.Config
	// Web is served at "/" of the patient REST listener (app.Options.Web).
	Web http.Handler
	// Telemetry, when set, instruments the store and traces and measures
	// the server (app.Options.Telemetry).
	Telemetry *telemetry.Telemetry
	// SubjectLimiter, AddrLimiter and RateKeys are the patient listener's
	// rate limits (app.Options); nil means no limit.
	SubjectLimiter, AddrLimiter ratelimit.Limiter
	RateKeys                    *ratelimit.Hasher
	// RateSubject and RateIP, when the limiters above are nil, are the
	// limits app builds from its Config (zero: off), divided among
	// Replicas() replicas when Replicas is set (app.Options.Replicas).
	RateSubject, RateIP ratelimit.Limit
	Replicas            func() int
	// PracticeLimiter limits the ids each practice checks (needs
	// RateKeys); nil means no limit. PracticeOptions configure the
	// practice view (app.Options).
	PracticeLimiter ratelimit.WeightedLimiter
	PracticeOptions []practice.Option
	// Logger is the server's logger. When nil, the server logs JSON to
	// LogWriter (with trace ids, as impactd does), or nowhere when
	// LogWriter is nil too.
	Logger    *slog.Logger
	LogWriter io.Writer
	// PublishApprovals and ApprovalTTL are app.Config's (0: its defaults).
	PublishApprovals int
	ApprovalTTL      time.Duration
	// RedisURL, when set, is the Redis store the server uses instead of
	// the embedded one in Env.Dir.
	RedisURL string
}

// Env is one running server and the parts a test reaches past the
// listeners.
type Env struct {
	// Dir holds the dev keys, the database and the upload spool.
	Dir string
	// App is the wired server.
	App *app.App
	// Store is the store the server uses (instrumented when
	// Options.Telemetry is set); closing it simulates an outage.
	Store     store.Store
	Server    *server.Server
	Addrs     server.Addrs
	Keyer     *auth.Keyer
	Catalog   *snapshot.Catalog
	Status    *istatus.Service
	Snapshots *snapshot.Service
	Practice  *practice.Service
}

// Config is the app configuration Start gives a server with opts in dir:
// impactd's defaults, --dev keys in dir, the embedded store (or
// opts.RedisURL's), and no rate limit unless opts sets limiters or
// limits.
func Config(dir string, opts Options) app.Config {
	cfg := app.DefaultConfig()
	cfg.Server = opts.Config
	for _, a := range []*string{&cfg.Server.GRPCAddr, &cfg.Server.HTTPAddr, &cfg.Server.AdminGRPCAddr, &cfg.Server.AdminHTTPAddr} {
		if *a == "" {
			*a = "127.0.0.1:0"
		}
	}
	if cfg.Server.ReadyInterval == 0 {
		cfg.Server.ReadyInterval = DefaultReadyInterval
	}
	if cfg.Server.UploadDir == "" {
		cfg.Server.UploadDir = dir
	}
	if cfg.Server.MaxBodyBytes == 0 {
		cfg.Server.MaxBodyBytes = server.DefaultMaxBodyBytes
	}
	cfg.Store, cfg.DataDir, cfg.Dev = app.StoreEmbedded, dir, true
	if opts.RedisURL != "" {
		cfg.Store, cfg.Redis.URL = app.StoreRedis, opts.RedisURL
	}
	cfg.RateSubject, cfg.RateIP, cfg.RatePracticeIDs = opts.RateSubject, opts.RateIP, ratelimit.Limit{}
	if opts.PublishApprovals > 0 {
		cfg.PublishApprovals = opts.PublishApprovals
	}
	if opts.ApprovalTTL > 0 {
		cfg.ApprovalTTL = opts.ApprovalTTL
	}
	return cfg
}

// Start starts a server with opts and returns once its listeners are
// bound (not necessarily ready: see WaitReady). The server stops, and the
// test fails if Run returned an error, when the test ends.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	dir := t.TempDir()
	logger := opts.Logger
	switch {
	case logger != nil:
	case opts.LogWriter != nil:
		logger = app.NewLogger(app.LogConfig{Level: app.DefaultLogLevel, JSON: true}, opts.LogWriter)
	default:
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, Config(dir, opts), app.Options{
		Logger: logger, Telemetry: opts.Telemetry, Web: opts.Web,
		SubjectLimiter: opts.SubjectLimiter, AddrLimiter: opts.AddrLimiter, RateKeys: opts.RateKeys, Replicas: opts.Replicas,
		PracticeLimiter: opts.PracticeLimiter, PracticeOptions: opts.PracticeOptions,
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	e := &Env{
		Dir: dir, App: a, Store: a.Store, Server: a.Server, Addrs: a.Addrs(),
		Keyer: a.Keyer, Catalog: a.Catalog, Status: a.Status, Snapshots: a.Snapshots, Practice: a.Practice,
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server run: %v", err)
		}
	})
	return e
}

// Token mints a dev token (one hour) for sub with scopes, signed by the
// server's dev key.
func (e *Env) Token(t testing.TB, sub string, scopes ...string) string {
	t.Helper()
	tok, err := auth.MintDevToken(e.Dir, sub, scopes, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// WaitReady waits up to 10 s for the server's readiness probe to pass.
// grpc.health.v1 and /readyz flip together with it, so once it returns
// both answer SERVING.
func (e *Env) WaitReady(t testing.TB) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if e.Server.Ready() {
			return
		}
	}
	t.Fatal("server never became ready")
}

// WriteFile writes data to dir/name (mode 0600) and returns the path.
func WriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// PracticeToken mints a dev practice token (one hour): user sub of
// practice, with the impact.practice scope and the practice_id claim.
func (e *Env) PracticeToken(t testing.TB, sub, practice string) string {
	t.Helper()
	tok, err := auth.MintDevPracticeToken(e.Dir, sub, practice, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
