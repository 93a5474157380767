// Package impacttest starts a real impactd in process for tests: the
// internal/server listeners on loopback, the embedded (bbolt) store, dev
// keys and the real token verifier, all under t.TempDir() and stopped by
// t.Cleanup. It also holds what the tests of several packages share: dev
// tokens and a throw-away certificate authority for TLS and mutual TLS.
//
// Nothing here is a fake: the server, store, verifier and services are the
// ones cmd/impactd wires, minus flags and process plumbing.
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

	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/ratelimit"
	"github.com/impact-health/impact/internal/server"
	"github.com/impact-health/impact/internal/snapshot"
	istatus "github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/store/embedded"
	"github.com/impact-health/impact/internal/store/instrumented"
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
	// Web is served at "/" of the patient REST listener (server.Deps.Web).
	Web http.Handler
	// Telemetry, when set, instruments the store and traces and measures
	// the server (server.Deps.Telemetry).
	Telemetry *telemetry.Telemetry
	// SubjectLimiter, AddrLimiter and RateKeys are the patient listener's
	// rate limits (server.Deps); nil means no limit.
	SubjectLimiter, AddrLimiter ratelimit.Limiter
	RateKeys                    *ratelimit.Hasher
	// Logger is the server's logger. When nil, the server logs JSON to
	// LogWriter (with trace ids, as impactd does), or nowhere when
	// LogWriter is nil too.
	Logger    *slog.Logger
	LogWriter io.Writer
}

// Env is one running server and the parts a test reaches past the
// listeners.
type Env struct {
	// Dir holds the dev keys, the database and the upload spool.
	Dir string
	// Store is the store the server uses (instrumented when
	// Options.Telemetry is set); closing it simulates an outage.
	Store     store.Store
	Server    *server.Server
	Addrs     server.Addrs
	Keyer     *auth.Keyer
	Catalog   *snapshot.Catalog
	Status    *istatus.Service
	Snapshots *snapshot.Service
}

// Start starts a server with opts and returns once its listeners are
// bound (not necessarily ready: see WaitReady). The server stops, and the
// test fails if Run returned an error, when the test ends.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	dir := t.TempDir()
	files, err := auth.EnsureDevKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	verifier, err := auth.NewVerifier(ctx, auth.Config{JWKSFile: files.JWKSFile, Issuer: auth.DevIssuer, Audience: auth.DevAudience})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	e := &Env{Dir: dir}
	closeAll := func() {
		cancel()
		verifier.Close()
		if e.Store != nil {
			_ = e.Store.Close()
		}
	}
	fail := func(err error) {
		closeAll()
		t.Fatal(err)
	}
	pepper, err := auth.LoadPepper(files.PepperFile)
	if err != nil {
		fail(err)
	}
	if e.Keyer, err = auth.NewKeyer(pepper); err != nil {
		fail(err)
	}
	st, err := embedded.Open(filepath.Join(dir, "impact.db"))
	if err != nil {
		fail(err)
	}
	e.Store = instrumented.New(st, opts.Telemetry)
	e.Catalog = snapshot.NewCatalog(e.Store, 16)
	e.Status = istatus.New(e.Store, e.Catalog, e.Keyer)
	e.Snapshots = snapshot.NewService(e.Store, e.Keyer, snapshot.WithCatalog(e.Catalog))

	cfg := opts.Config
	for _, a := range []*string{&cfg.GRPCAddr, &cfg.HTTPAddr, &cfg.AdminGRPCAddr, &cfg.AdminHTTPAddr} {
		if *a == "" {
			*a = "127.0.0.1:0"
		}
	}
	if cfg.ReadyInterval == 0 {
		cfg.ReadyInterval = DefaultReadyInterval
	}
	if cfg.UploadDir == "" {
		cfg.UploadDir = dir
	}
	logger := opts.Logger
	switch {
	case logger != nil:
	case opts.LogWriter != nil:
		logger = slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(opts.LogWriter, nil)))
	default:
		logger = slog.New(slog.DiscardHandler)
	}
	srv, err := server.New(cfg, server.Deps{
		Store: e.Store, Catalog: e.Catalog, Authenticator: verifier,
		Status: e.Status, Snapshots: e.Snapshots, Logger: logger,
		Web: opts.Web, Telemetry: opts.Telemetry,
		SubjectLimiter: opts.SubjectLimiter, AddrLimiter: opts.AddrLimiter, RateKeys: opts.RateKeys,
	})
	if err != nil {
		fail(err)
	}
	e.Server, e.Addrs = srv, srv.Addrs()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server run: %v", err)
		}
		closeAll()
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
