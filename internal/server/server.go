// Package server is Impact's transport: the patient-facing gRPC and REST
// listeners, the ops listeners, interceptors, health and the lifecycle.
// It maps domain errors to gRPC codes in exactly one place (errors.go); the
// REST gateway calls the services in process through the same chain as the
// gRPC listener of its side (inproc.go), so that every request, whatever
// its transport, passes the same interceptors.
//
// One file per service (status_service.go, snapshot_service.go,
// notice_service.go, subject_service.go), conversions to messages in
// convert.go, request rules in validate.go. Impact's internal/status is
// imported by its name; grpc's status package, where needed, as grpcstatus.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/stats"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/audit"
	"github.com/impact-health/impact/internal/erasure"
	"github.com/impact-health/impact/internal/notice"
	"github.com/impact-health/impact/internal/pace"
	"github.com/impact-health/impact/internal/practice"
	"github.com/impact-health/impact/internal/ratelimit"
	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/telemetry"
)

// Defaults of Config: the listeners of the public contract and the limits
// of a call. DefaultConfig gathers them; flags take their defaults from it.
const (
	DefaultGRPCAddr        = ":9090"          // patient gRPC
	DefaultHTTPAddr        = ":8080"          // patient REST
	DefaultAdminGRPCAddr   = "127.0.0.1:9091" // ops gRPC: loopback unless configured
	DefaultAdminHTTPAddr   = "127.0.0.1:8081" // ops REST: loopback unless configured
	DefaultRequestTimeout  = 5 * time.Second
	DefaultShutdownTimeout = 15 * time.Second
	DefaultReadyInterval   = 2 * time.Second
	DefaultMaxUploadBytes  = 2 << 30
)

// Config is the transport configuration. Zero values take the defaults of
// DefaultConfig (an empty UploadDir: os.TempDir()).
type Config struct {
	GRPCAddr      string // patient gRPC
	HTTPAddr      string // patient REST
	AdminGRPCAddr string // ops gRPC
	AdminHTTPAddr string // ops REST

	RequestTimeout  time.Duration // deadline of a unary call
	ShutdownTimeout time.Duration // graceful drain before a forced stop
	ReadyInterval   time.Duration // readiness probe period
	UploadDir       string        // where uploads are spooled
	MaxUploadBytes  int64         // largest upload

	// Transport security and abuse limits (tls.go, cors.go, guard.go).
	TLSCertFile, TLSKeyFile string         // TLS on the patient listeners (PEM)
	AdminClientCAFile       string         // mutual TLS on the ops listeners (PEM CA bundle)
	CORSOrigins             []string       // origins allowed on the patient REST listener (see ParseCORSOrigins)
	TrustedProxyHeader      string         // e.g. X-Forwarded-For; believed only from TrustedProxies
	TrustedProxies          []netip.Prefix // peers whose TrustedProxyHeader is believed
	MaxBodyBytes            int64          // REST request body cap
}

// DefaultConfig is the configuration every zero field of a Config takes.
func DefaultConfig() Config {
	return Config{
		GRPCAddr:        DefaultGRPCAddr,
		HTTPAddr:        DefaultHTTPAddr,
		AdminGRPCAddr:   DefaultAdminGRPCAddr,
		AdminHTTPAddr:   DefaultAdminHTTPAddr,
		RequestTimeout:  DefaultRequestTimeout,
		ShutdownTimeout: DefaultShutdownTimeout,
		ReadyInterval:   DefaultReadyInterval,
		MaxUploadBytes:  DefaultMaxUploadBytes,
		MaxBodyBytes:    DefaultMaxBodyBytes,
	}
}

func (c *Config) defaults() {
	d := DefaultConfig()
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.GRPCAddr, d.GRPCAddr)
	def(&c.HTTPAddr, d.HTTPAddr)
	def(&c.AdminGRPCAddr, d.AdminGRPCAddr)
	def(&c.AdminHTTPAddr, d.AdminHTTPAddr)
	def(&c.UploadDir, os.TempDir())
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = d.ShutdownTimeout
	}
	if c.ReadyInterval <= 0 {
		c.ReadyInterval = d.ReadyInterval
	}
	if c.MaxUploadBytes <= 0 {
		c.MaxUploadBytes = d.MaxUploadBytes
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
}

// Store is what the transport asks of the store itself: whether it is
// reachable (readiness) and the incidents' heads (readiness and the
// visible-version gauge). Everything else goes through the domain services.
type Store interface {
	store.Pinger
	store.Heads
}

// Deps are the domain services and providers the transport serves.
type Deps struct {
	Store         Store
	Status        *status.Service
	Snapshots     *snapshot.Service
	Catalog       *snapshot.Catalog
	Audit         *audit.Recorder
	Erasure       *erasure.Service
	Notices       *notice.Service
	Authenticator Authenticator
	Logger        *slog.Logger
	// Web, when set, is served at "/" of the patient REST listener (the
	// patient web page).
	Web http.Handler
	// Telemetry, when set, traces and measures the listeners and serves
	// /metrics on the ops REST listener; nil means no telemetry.
	Telemetry *telemetry.Telemetry
	// SubjectLimiter and AddrLimiter rate-limit the patient listener per
	// token subject and per client address (IPv6 per /64); nil means no
	// limit. RateKeys turns subjects and addresses into limiter keys and is
	// required when either limiter is set.
	SubjectLimiter, AddrLimiter ratelimit.Limiter
	RateKeys                    *ratelimit.Hasher
	// Practice, when set, serves PracticeService on the patient listeners
	// and PracticeStatsService on the ops listeners; PracticeLimiter limits
	// the ids each practice checks (needs RateKeys; nil: no limit).
	Practice        *practice.Service
	PracticeLimiter ratelimit.WeightedLimiter
	// Reads, when set, counts the patient listener's unary calls (reads
	// and practice checks; REST too, through the gateway) while they run:
	// background work paces itself by it (package pace).
	Reads *pace.Pacer
}

// Server owns the four listeners.
type Server struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	public, admin               *side // gRPC server and the gateway's in-process connection
	publicHealth                *health.Server
	adminHealth                 *health.Server
	publicLis, adminLis         net.Listener
	publicHTTPLis, adminHTTPLis net.Listener
	publicHTTP, adminHTTP       *http.Server

	tls   *tlsSetup
	cors  *corsPolicy
	guard *guard // patient listener admission (rate limits)

	mu       sync.Mutex
	ready    bool
	draining bool // set by shutdown: readiness never returns

	stopObserve func() // unregisters metric callbacks
}

// Addrs are the bound addresses (useful with ":0").
type Addrs struct {
	GRPC, HTTP, AdminGRPC, AdminHTTP string
}

// New binds the listeners and builds the servers; Run serves them.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg.defaults()
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger}
	if err := s.setupSecurity(); err != nil {
		return nil, err
	}
	var err error
	listen := func(addr string) net.Listener {
		if err != nil {
			return nil
		}
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err != nil {
			err = fmt.Errorf("listen %s: %w", addr, err)
		}
		return l
	}
	s.publicLis = listen(cfg.GRPCAddr)
	s.publicHTTPLis = listen(cfg.HTTPAddr)
	s.adminLis = listen(cfg.AdminGRPCAddr)
	s.adminHTTPLis = listen(cfg.AdminHTTPAddr)
	if err != nil {
		s.closeListeners()
		return nil, err
	}
	if c := s.tls.httpTLS(false); c != nil {
		s.publicHTTPLis = tls.NewListener(s.publicHTTPLis, c)
	}
	if c := s.tls.httpTLS(true); c != nil {
		s.adminHTTPLis = tls.NewListener(s.adminHTTPLis, c)
	}

	s.public, s.publicHealth = s.grpcServer(false)
	impactv1.RegisterStatusServiceServer(s.public, &statusService{
		status: deps.Status, metrics: deps.Telemetry.Metrics(), pad: newPadder(deps.Catalog, s.log), asJSON: s.guard.addrs.viaGateway,
	})
	if deps.Practice != nil {
		impactv1.RegisterPracticeServiceServer(s.public, &practiceService{practice: deps.Practice, limit: deps.PracticeLimiter, guard: s.guard})
	}
	s.admin, s.adminHealth = s.grpcServer(true)
	impactv1.RegisterSnapshotServiceServer(s.admin, &snapshotService{
		snapshots: deps.Snapshots, catalog: deps.Catalog, audit: deps.Audit, metrics: deps.Telemetry.Metrics(), uploadDir: cfg.UploadDir, maxUpload: cfg.MaxUploadBytes,
	})
	impactv1.RegisterNoticeServiceServer(s.admin, &noticeService{status: deps.Status, notices: deps.Notices, metrics: deps.Telemetry.Metrics()})
	impactv1.RegisterSubjectServiceServer(s.admin, &subjectService{erasure: deps.Erasure})
	if deps.Practice != nil {
		impactv1.RegisterPracticeStatsServiceServer(s.admin, &practiceStatsService{practice: deps.Practice})
	}
	s.setServing(false)
	if deps.Telemetry != nil {
		if s.stopObserve, err = s.observe(); err != nil {
			s.closeListeners()
			return nil, err
		}
	}

	if s.publicHTTP, err = s.httpServer(context.Background(), false); err != nil {
		s.closeListeners()
		return nil, err
	}
	if s.adminHTTP, err = s.httpServer(context.Background(), true); err != nil {
		s.closeListeners()
		return nil, err
	}
	return s, nil
}

// callChain is what a side runs around every call, outermost first: the
// telemetry stats handler, then the interceptors. The side's gRPC server
// and its gateway's in-process connection are both built from it: one
// enforcement point, whatever the transport.
type callChain struct {
	stats  stats.Handler // nil: no telemetry
	unary  []grpc.UnaryServerInterceptor
	stream []grpc.StreamServerInterceptor
}

func (s *Server) callChain(admin bool) callChain {
	ic := &interceptors{authn: s.deps.Authenticator, log: s.log, verbose: admin, timeout: s.cfg.RequestTimeout}
	if !admin {
		ic.guard, ic.reads = s.guard, s.deps.Reads
	}
	return callChain{
		stats:  s.grpcTelemetry(admin),
		unary:  []grpc.UnaryServerInterceptor{ic.unary},
		stream: []grpc.StreamServerInterceptor{ic.stream},
	}
}

// grpcServer builds the gRPC server of a side and the in-process
// connection of its gateway, with the same chain.
func (s *Server) grpcServer(admin bool) (*side, *health.Server) {
	chain := s.callChain(admin)
	var opts []grpc.ServerOption
	if chain.stats != nil {
		opts = append(opts, grpc.StatsHandler(chain.stats))
	}
	g := grpc.NewServer(append(opts,
		grpc.Creds(s.tls.grpcCreds(admin)),
		grpc.ChainUnaryInterceptor(chain.unary...),
		grpc.ChainStreamInterceptor(chain.stream...),
		grpc.MaxRecvMsgSize(serverMaxRecvMsgSize),
		// Reuse goroutines for streams instead of one (whose stack grows)
		// per call: about 7% of a read's CPU in make load's profile.
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute}),
	)...)
	// Health and reflection: on the listener only (no REST route).
	h := health.NewServer()
	healthpb.RegisterHealthServer(g, h)
	reflection.Register(g)
	return &side{Server: g, inproc: newInprocConn(chain, s.gatewayTelemetry())}, h
}

func (s *Server) closeListeners() {
	for _, l := range []net.Listener{s.publicLis, s.publicHTTPLis, s.adminLis, s.adminHTTPLis} {
		if l != nil {
			_ = l.Close()
		}
	}
}

// Addrs returns the bound addresses.
func (s *Server) Addrs() Addrs {
	return Addrs{
		GRPC: s.publicLis.Addr().String(), HTTP: s.publicHTTPLis.Addr().String(),
		AdminGRPC: s.adminLis.Addr().String(), AdminHTTP: s.adminHTTPLis.Addr().String(),
	}
}

var publicServices = []string{"", impactv1.StatusService_ServiceDesc.ServiceName, impactv1.PracticeService_ServiceDesc.ServiceName}
var adminServices = []string{"", impactv1.SnapshotService_ServiceDesc.ServiceName, impactv1.NoticeService_ServiceDesc.ServiceName, impactv1.SubjectService_ServiceDesc.ServiceName,
	impactv1.PracticeStatsService_ServiceDesc.ServiceName}

// setServing flips grpc.health.v1 and /readyz together.
func (s *Server) setServing(ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setServingLocked(ok)
}

// setServingLocked is setServing with s.mu held. Once draining, readiness
// stays NOT_SERVING whatever a late probe found.
func (s *Server) setServingLocked(ok bool) {
	if s.draining {
		return
	}
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for _, n := range publicServices {
		s.publicHealth.SetServingStatus(n, st)
	}
	for _, n := range adminServices {
		s.adminHealth.SetServingStatus(n, st)
	}
	changed := s.ready != ok
	s.ready = ok
	if changed {
		s.log.Info("readiness changed", "ready", ok)
	}
}

// Ready reports the last readiness probe result.
func (s *Server) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

// probe checks that the store answers and that every served incident's
// visible version can be loaded.
func (s *Server) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyInterval)
	defer cancel()
	if err := s.deps.Store.Ping(ctx); err != nil {
		return err
	}
	heads, err := s.deps.Store.Incidents(ctx)
	if err != nil {
		return err
	}
	for _, h := range heads {
		if h.Visible == 0 {
			continue
		}
		if _, err := s.deps.Catalog.Get(ctx, h.Incident, h.Visible); err != nil {
			return fmt.Errorf("incident visible version not loadable: %w", err)
		}
	}
	return nil
}

// Run serves until ctx is done, then drains: readiness goes NOT_SERVING,
// HTTP servers shut down and gRPC servers stop gracefully, forced after
// ShutdownTimeout.
func (s *Server) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	serveGRPC := func(srv *grpc.Server, l net.Listener) func() error {
		return func() error {
			// A shutdown that starts before Serve makes it return
			// ErrServerStopped: that is a clean stop, not a failure.
			if err := srv.Serve(l); err != nil && !(errors.Is(err, grpc.ErrServerStopped) && gctx.Err() != nil) {
				return err
			}
			return nil
		}
	}
	serveHTTP := func(srv *http.Server, l net.Listener) func() error {
		return func() error {
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}
	}
	g.Go(serveGRPC(s.public.Server, s.publicLis))
	g.Go(serveGRPC(s.admin.Server, s.adminLis))
	g.Go(serveHTTP(s.publicHTTP, s.publicHTTPLis))
	g.Go(serveHTTP(s.adminHTTP, s.adminHTTPLis))
	g.Go(func() error {
		t := time.NewTicker(s.cfg.ReadyInterval)
		defer t.Stop()
		for {
			err := s.probe(gctx)
			if err != nil && gctx.Err() == nil {
				s.log.Warn("readiness probe failed", "err", err.Error())
			}
			if gctx.Err() != nil {
				return nil
			}
			s.setServing(err == nil)
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
			}
		}
	})
	g.Go(func() error {
		<-gctx.Done()
		s.shutdown()
		return nil
	})
	return g.Wait()
}

func (s *Server) shutdown() {
	s.beginDrain()
	s.log.Info("draining")
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, h := range []*http.Server{s.publicHTTP, s.adminHTTP} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = h.Shutdown(ctx) }()
	}
	for _, g := range []*grpc.Server{s.public.Server, s.admin.Server} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := make(chan struct{})
			go func() { g.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				g.Stop()
			}
		}()
	}
	wg.Wait()
	if s.stopObserve != nil {
		s.stopObserve()
	}
	s.log.Info("stopped")
}
