// Package app wires Impact: from one Config it builds the store, the
// domain services, the listeners and their lifecycle. cmd/impactd turns
// flags and IMPACT_* variables into a Config and calls Run; every test that
// needs a whole server (internal/testutil/impacttest) calls New, so there
// is one copy of the wiring.
package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/impact-health/impact/internal/audit"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/erasure"
	"github.com/impact-health/impact/internal/notice"
	"github.com/impact-health/impact/internal/pace"
	"github.com/impact-health/impact/internal/practice"
	"github.com/impact-health/impact/internal/ratelimit"
	"github.com/impact-health/impact/internal/server"
	"github.com/impact-health/impact/internal/snapshot"
	istatus "github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/store/embedded"
	"github.com/impact-health/impact/internal/store/instrumented"
	redisstore "github.com/impact-health/impact/internal/store/redis"
	"github.com/impact-health/impact/internal/store/replica"
	"github.com/impact-health/impact/internal/telemetry"
	"github.com/impact-health/impact/internal/web"
)

// Options are what a caller provides beside the Config: process-wide
// providers, and the seams tests use to inject a fault.
type Options struct {
	// Logger logs the server; nil: slog.Default().
	Logger *slog.Logger
	// Telemetry, when set, instruments the store and traces and measures
	// the server.
	Telemetry *telemetry.Telemetry
	// Web, when set, is served at "/" of the patient REST listener
	// instead of the page Config.Web selects.
	Web http.Handler
	// SubjectLimiter and AddrLimiter, when either is set, replace the
	// limiters Config.RateSubject and Config.RateIP would build; RateKeys
	// is then required (see server.Deps).
	SubjectLimiter, AddrLimiter ratelimit.Limiter
	RateKeys                    *ratelimit.Hasher
	// Replicas, when set, returns how many replicas serve the deployment,
	// this one included (below 1: unknown, the last count stays): the
	// patient rate limits are global and each replica enforces its share
	// (limiters.go). nil: the replica registry's live count when reads come
	// from memory (Replica.LiveReplicas), else one replica.
	Replicas func() int
	// PracticeLimiter, when set, replaces the limiter
	// Config.RatePracticeIDs would build (RateKeys is then required);
	// PracticeOptions configure the practice view.
	PracticeLimiter ratelimit.WeightedLimiter
	PracticeOptions []practice.Option
}

// App is one wired server: its listeners are bound, Run serves them.
type App struct {
	// Config is the completed configuration (data dir, dev keys, ...).
	Config Config
	// Store is the store the services use (instrumented when
	// Options.Telemetry is set).
	Store     store.Store
	Keyer     *auth.Keyer
	Catalog   *snapshot.Catalog
	Status    *istatus.Service
	Snapshots *snapshot.Service
	Audit     *audit.Recorder
	Erasure   *erasure.Service
	Notices   *notice.Service
	Practice  *practice.Service
	Server    *server.Server
	// Replica answers reads from memory (nil: every read goes to the
	// store); Run runs its protocol.
	Replica *replica.Replica
	// Pacer counts the patient listener's calls in flight; background
	// loops call its Yield between units of work (pace.go). Nil when
	// pacing is off (a nil Pacer never pauses).
	Pacer *pace.Pacer

	log       *slog.Logger
	closers   []func() // in the order they run
	closeOnce sync.Once
}

// New completes and validates cfg, opens the store, builds the services
// and binds the listeners. Close releases what New acquired when Run is
// never called.
func New(ctx context.Context, cfg Config, opts Options) (a *App, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	a = &App{Config: cfg, log: log}
	self := a // a is nil by the time a failing New's deferred call runs
	defer func() {
		if err != nil {
			self.Close()
			a = nil
		}
	}()
	if cfg.Dev {
		log.Warn("development mode: local signing key and pepper; never use in production", "data_dir", cfg.DataDir)
	}
	if err := os.MkdirAll(cfg.Server.UploadDir, 0o700); err != nil {
		return nil, fmt.Errorf("upload dir: %w", err)
	}
	if n, err := server.RemoveSpools(cfg.Server.UploadDir); err != nil {
		return nil, fmt.Errorf("upload dir: %w", err)
	} else if n > 0 {
		log.Warn("removed upload spools left by an interrupted upload", "count", n)
	}

	pepper, err := auth.LoadPepper(cfg.PepperFile)
	if err != nil {
		return nil, err
	}
	if a.Keyer, err = auth.NewKeyer(pepper); err != nil {
		return nil, err
	}
	verifier, err := auth.NewVerifier(ctx, cfg.Auth)
	if err != nil {
		return nil, err
	}
	a.onClose(verifier.Close)

	st, err := openStore(ctx, &cfg, log)
	if err != nil {
		return nil, err
	}
	a.onClose(func() { _ = st.Close() })
	a.Pacer = newPacer(&cfg) // pace.go
	if a.Replica, err = newReplica(&cfg, st, a.Pacer, log); err != nil {
		return nil, err
	}
	if a.Replica != nil {
		a.onClose(func() { _ = a.Replica.Close() })
		st = a.Replica
		r := a.Replica
		stop, err := opts.Telemetry.Metrics().ObserveReplica(func() telemetry.ReplicaStatus {
			s := r.Status()
			return telemetry.ReplicaStatus{Serving: s.Serving, Lag: s.Lag, MemoryBytes: s.MemoryBytes, Pins: s.Pins, Waits: s.Waits, WaitTime: s.WaitTime}
		})
		if err != nil {
			return nil, err
		}
		a.onClose(func() { _ = stop() })
	}
	subjectLimit, addrLimit, rateKeys := opts.SubjectLimiter, opts.AddrLimiter, opts.RateKeys
	replicas := opts.Replicas
	if replicas == nil && a.Replica != nil {
		replicas = a.Replica.LiveReplicas
	}
	if subjectLimit == nil && addrLimit == nil {
		if subjectLimit, addrLimit, rateKeys, err = newLimiters(&cfg, pepper, replicas); err != nil { // limiters.go
			return nil, err
		}
	}
	a.Store = instrumented.New(st, opts.Telemetry)

	a.Catalog = snapshot.NewCatalog(a.Store, cfg.CatalogSize)
	a.Audit = audit.New(a.Store)
	a.Erasure = erasure.New(a.Store, a.Keyer, a.Audit)
	a.Notices = notice.New(a.Store, a.Catalog, a.Keyer, a.Audit)
	a.Status = istatus.New(a.Store, a.Catalog, a.Keyer)
	a.Snapshots = snapshot.NewService(a.Store, a.Keyer,
		snapshot.WithCatalog(a.Catalog), snapshot.WithReadRate(cfg.UploadReadRate),
		snapshot.WithApprovals(cfg.PublishApprovals, cfg.ApprovalTTL), pacedSnapshots(a.Pacer))
	a.Practice = newPractice(a.Store, a.Catalog, a.Status, a.Keyer, a.Audit, opts.PracticeOptions...) // practice.go
	practiceLimit := opts.PracticeLimiter
	if rateKeys == nil {
		rateKeys = opts.RateKeys // a practice limiter's keys, the patient limits off
	}
	if practiceLimit == nil {
		var closeLimiter func()
		if practiceLimit, rateKeys, closeLimiter, err = newPracticeLimiter(&cfg, pepper, rateKeys); err != nil {
			return nil, err
		}
		a.onClose(closeLimiter)
	}
	page := opts.Web
	if page == nil {
		page = cfg.WebPage()
	}
	a.Server, err = server.New(cfg.Server, server.Deps{
		Store:         a.Store,
		Status:        a.Status,
		Snapshots:     a.Snapshots,
		Catalog:       a.Catalog,
		Audit:         a.Audit,
		Erasure:       a.Erasure,
		Notices:       a.Notices,
		Authenticator: verifier,
		Logger:        log,
		Web:           page,
		Telemetry:     opts.Telemetry,

		SubjectLimiter: subjectLimit,
		AddrLimiter:    addrLimit,
		RateKeys:       rateKeys,

		Practice:        a.Practice,
		PracticeLimiter: practiceLimit,
		Reads:           a.Pacer,
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// onClose registers f to run on Close, before the functions registered
// earlier.
func (a *App) onClose(f func()) { a.closers = append([]func(){f}, a.closers...) }

// Close releases the store, the practice limiter's Redis client and the
// verifier. Run calls it once the server has drained; calling it again does
// nothing.
func (a *App) Close() {
	a.closeOnce.Do(func() {
		for _, f := range a.closers {
			f()
		}
	})
}

// Addrs are the bound listener addresses (useful with ":0").
func (a *App) Addrs() server.Addrs { return a.Server.Addrs() }

// Run serves until ctx is done, then drains (readiness NOT_SERVING, a
// graceful stop forced after Config.Server.ShutdownTimeout: server.Run)
// and closes the app.
func (a *App) Run(ctx context.Context) error {
	defer a.Close()
	ad := a.Addrs()
	a.log.Info("serving", "grpc", ad.GRPC, "http", ad.HTTP, "admin_grpc", ad.AdminGRPC, "admin_http", ad.AdminHTTP, "store", a.Config.Store)
	// The stage reaper: at start, then every lease, it collects the
	// versions whose loader (on any replica) stopped renewing its lease.
	rctx, stopReaper := context.WithCancel(ctx)
	reaped := make(chan struct{})
	go func() { defer close(reaped); a.Snapshots.RunReaper(rctx, store.DefaultStageLease, a.log) }()
	defer func() { stopReaper(); <-reaped }()
	if a.Replica != nil {
		left := make(chan struct{})
		go func() { defer close(left); _ = a.Replica.Run(rctx) }()
		defer func() { stopReaper(); <-left }()
	}
	return a.Server.Run(ctx)
}

// Run is impactd: it builds the logger (to w) and the telemetry of the
// process from cfg and the OTEL_* environment, then New and Run the app
// until ctx is done.
func Run(ctx context.Context, cfg Config, w io.Writer) error {
	log := NewLogger(cfg.Log, w)
	slog.SetDefault(log)
	tel, stopTelemetry, err := startTelemetry(ctx, log)
	if err != nil {
		return err
	}
	defer stopTelemetry()
	a, err := New(ctx, cfg, Options{Logger: log, Telemetry: tel})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// WebPage is the patient web page served at "/" of the patient REST
// listener, or nil when c.Web is off.
func (c *Config) WebPage() http.Handler {
	if !c.Web {
		return nil
	}
	return web.Handler(web.Options{Dev: c.Dev})
}

// newReplica decorates an engine that has a change stream (the embedded
// store; Redis standalone or Sentinel) with a replica answering from
// memory, when cfg.MemoryReads is on.
func newReplica(cfg *Config, st store.Store, p *pace.Pacer, log *slog.Logger) (*replica.Replica, error) {
	eng, ok := st.(replica.Engine)
	if !ok || !cfg.MemoryReads {
		return nil, nil
	}
	// An engine may implement store.Feed and still have no stream in its
	// topology (a Redis Cluster).
	if f, ok := st.(interface{ HasFeed() bool }); ok && !f.HasFeed() {
		log.Info("Redis Cluster: every read goes to Redis (no change stream across slots)")
		return nil, nil
	}
	rc := replica.Config{
		Lease:  cfg.ReplicaLease,
		Margin: cfg.ReplicaLease / 10,
		Log:    log.With("replica", "memory"),
	}
	if p != nil {
		rc.Yield = p.Yield // loading a version backs off while patient reads wait
	}
	return replica.New(eng, rc)
}

func openStore(ctx context.Context, cfg *Config, log *slog.Logger) (store.Store, error) {
	switch cfg.Store {
	case StoreRedis:
		return redisstore.Open(ctx, cfg.Redis, log)
	default:
		// #nosec G703 -- the data directory is the operator's choice, not request input.
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
		return embedded.Open(filepath.Join(cfg.DataDir, "impact.db"))
	}
}

// NewLogger is the slog logger of c writing to w, with the trace and span
// ids of the request's context.
func NewLogger(c LogConfig, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.JSON {
		return slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(w, opts)))
	}
	return slog.New(telemetry.NewLogHandler(slog.NewTextHandler(w, opts)))
}
