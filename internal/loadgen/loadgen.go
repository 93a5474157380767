// Package loadgen is Impact's load harness (`make load`, cmd/impact-load).
// It starts its own redis-server (appendfsync always) and impactd (Redis
// store, JWT verification on, dev keys), publishes a demo roster, mints
// tokens for many distinct subjects, and measures, with one lean Go client
// at a fixed concurrency:
//
//   - gRPC GetMyStatus and REST GET /v1/incidents/{id}/status on impactd;
//   - the same load against a minimal grpc-go server and a minimal net/http
//     handler (protojson per request) returning one fixed answer, run in a
//     process of their own: the ratio impactd/minimal is the figure;
//   - a minimal grpc-go server that sends, per request, the one Redis
//     pipeline a read cannot avoid while the pin lives only in Redis (head,
//     pin, record: the "old ceiling");
//   - CPU time, heap allocations (impactd's /metrics) and RSS per target;
//   - the p99 of gRPC reads while a large roster is uploaded and published,
//     next to the idle p99, and impactd's RSS over it;
//   - a wave of claims on one impactd alone, then with more replicas on the
//     same Redis serving reads (claims.go).
//
// All traffic goes to 127.0.0.1, and every loop is bounded in count and
// time.
package loadgen

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/testutil/testproc"
)

// Config is the harness's settings (one flag each).
type Config struct {
	Impactd      string        // impactd binary
	RedisServer  string        // redis-server binary
	Rows         int           // rows of the published roster
	PublishRows  int           // rows of the roster published under load (phase v); 0 skips it
	Tokens       int           // distinct subjects with a token
	AffectedPct  float64       // share of those subjects in the roster, percent
	Concurrency  int           // concurrent requests
	Duration     time.Duration // measured time of each phase
	Warmup       time.Duration // unmeasured time before each phase
	Conns        int           // gRPC client connections per server
	Rounds       int           // the side-by-side phases take turns in this many slices
	PacedPercent float64       // phase v again at this percent of the idle gRPC rate; 0 skips it
	LogLevel     string        // impactd --log-level
	WorkDir      string        // where data and logs go (default: a temporary directory, removed)
	Ghz          string        // ghz binary for the optional comparison ("" looks on PATH; "off" skips)
	CPUProfile   string        // write the generator's CPU profile here
	PerfRecord   string        // record impactd with perf during one phase into this file
	PerfPhase    string        // that phase: grpc or rest
	ImpactdFlags []string      // extra impactd flags (a repeated flag's last value wins)
	RedisQuery   string        // query appended to impactd's --redis-url, e.g. protocol=2
	AppendFsync  string        // redis-server appendfsync: always (default) or, for comparison, everysec

	// The claim phase (claims.go) and the report (summary.go).
	Claims        int      // claims per wave of the claim phase; 0 skips it
	Replicas      int      // impactd replicas in the second wave (1 skips that wave)
	ClaimWindow   int      // claims in flight
	ClaimReadRate float64  // patient reads per second during the waves
	JSON          bool     // the report as JSON instead of text
	Args          []string // the command line, for the report
}

func parseFlags(args []string, stderr io.Writer) (*Config, error) {
	c := &Config{Args: args}
	fs := flag.NewFlagSet("impact-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Impactd, "impactd", "bin/impactd", "impactd binary")
	fs.StringVar(&c.RedisServer, "redis-server", "redis-server", "redis-server binary")
	fs.IntVar(&c.Rows, "rows", 2_000_000, "rows of the published demo roster")
	fs.IntVar(&c.PublishRows, "publish-rows", -1, "rows of the roster published under load (default: --rows; 0 skips that phase)")
	fs.IntVar(&c.Tokens, "tokens", 10_000, "distinct subjects with a token")
	fs.Float64Var(&c.AffectedPct, "affected-percent", 6, "percent of the token subjects that are in the roster")
	fs.IntVar(&c.Concurrency, "c", 50, "concurrent requests")
	fs.DurationVar(&c.Duration, "duration", 15*time.Second, "measured time of each phase")
	fs.DurationVar(&c.Warmup, "warmup", 2*time.Second, "unmeasured warm-up before each phase")
	fs.IntVar(&c.Conns, "conns", 4, "gRPC client connections per server")
	fs.IntVar(&c.Rounds, "rounds", 3, "slices in which the four side-by-side targets take turns (each gets --duration in total)")
	fs.Float64Var(&c.PacedPercent, "paced-percent", 50, "repeat the publish phase paced at this percent of the idle gRPC rate (0: skip)")
	fs.StringVar(&c.LogLevel, "impactd-log-level", "info", "impactd --log-level (info logs every call, as in production)")
	fs.StringVar(&c.WorkDir, "work-dir", "", "directory for Redis data and logs (default: temporary, removed at the end)")
	fs.StringVar(&c.Ghz, "ghz", "", `ghz binary for an extra run against the minimal gRPC server ("" looks on PATH, "off" skips)`)
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write the load generator's CPU profile to this file")
	fs.StringVar(&c.PerfRecord, "perf-record", "", "record impactd's CPU with `perf record -g` during one phase into this file (Linux perf)")
	fs.StringVar(&c.PerfPhase, "perf-phase", "grpc", "phase --perf-record records: grpc or rest")
	fs.Func("impactd-flag", "extra impactd flag, e.g. --impactd-flag=--log-level=warn (repeatable)", func(v string) error {
		c.ImpactdFlags = append(c.ImpactdFlags, v)
		return nil
	})
	fs.StringVar(&c.RedisQuery, "redis-url-query", "", "query string appended to impactd's --redis-url (e.g. protocol=2)")
	fs.StringVar(&c.AppendFsync, "redis-appendfsync", "always", "redis-server appendfsync: always, or everysec for comparison (impactd then runs with --allow-volatile-ledger)")
	fs.IntVar(&c.Claims, "claims", 10_000, "claims per wave of the claim phase (1 replica, then --replicas); 0 skips the phase")
	fs.IntVar(&c.Replicas, "replicas", 3, "impactd replicas on the same Redis during the second claim wave (1: only the first wave)")
	fs.IntVar(&c.ClaimWindow, "claim-window", 32, "claims in flight on the wave's stream (impactd claims 32 of a stream at once)")
	fs.Float64Var(&c.ClaimReadRate, "claim-read-rate", 2000, "patient reads per second during each claim wave (on the other replicas when there are some; 0: none)")
	fs.BoolVar(&c.JSON, "json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.PublishRows < 0 {
		c.PublishRows = c.Rows
	}
	// Two waves of distinct roster subjects, besides the token subjects.
	c.Claims = min(c.Claims, c.Rows/4)
	switch {
	case c.Rows < 2 || c.Rows > demo.MaxN, c.PublishRows != 0 && (c.PublishRows < 2 || c.PublishRows > demo.MaxN):
		return nil, fmt.Errorf("--rows and --publish-rows must be in [2, %d]", demo.MaxN)
	case c.Tokens < 1 || c.Tokens > 1_000_000:
		return nil, errors.New("--tokens must be in [1, 1000000]")
	case c.AffectedPct < 0 || c.AffectedPct > 100:
		return nil, errors.New("--affected-percent must be in [0, 100]")
	case c.Concurrency < 1 || c.Concurrency > 10_000:
		return nil, errors.New("--c must be in [1, 10000]")
	case c.Duration <= 0 || c.Duration > 10*time.Minute || c.Warmup < 0 || c.Warmup > time.Minute:
		return nil, errors.New("--duration must be in (0, 10m], --warmup in [0, 1m]")
	case c.Conns < 1 || c.Conns > 64:
		return nil, errors.New("--conns must be in [1, 64]")
	case c.AppendFsync != "always" && c.AppendFsync != "everysec":
		return nil, errors.New("--redis-appendfsync must be always or everysec")
	case c.Rounds < 1 || c.Rounds > 20:
		return nil, errors.New("--rounds must be in [1, 20]")
	case c.PacedPercent < 0 || c.PacedPercent > 100:
		return nil, errors.New("--paced-percent must be in [0, 100]")
	case c.Claims < 0 || c.Claims > 1_000_000:
		return nil, errors.New("--claims must be in [0, 1000000]")
	case c.Replicas < 1 || c.Replicas > 8:
		return nil, errors.New("--replicas must be in [1, 8]")
	case c.ClaimWindow < 1 || c.ClaimWindow > 4096:
		return nil, errors.New("--claim-window must be in [1, 4096]")
	case c.ClaimReadRate < 0 || c.ClaimReadRate > 1e6:
		return nil, errors.New("--claim-read-rate must be in [0, 1000000]")
	}
	return c, nil
}

// Main runs the harness (or, with MinimalCommand first, the minimal
// servers) and prints the results table to stdout.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == MinimalCommand {
		return ServeMinimal(ctx, args[1:], stderr)
	}
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	h := &harness{cfg: cfg, out: stdout, logw: stderr}
	defer h.close()
	return h.run(ctx)
}

// harness is one run.
type harness struct {
	cfg  *Config
	out  io.Writer
	logw io.Writer // progress

	work    string
	ownWork bool
	redis   *proc
	redisAt string
	impactd *impactdProc
	minimal *proc
	minGRPC string
	minHTTP string

	minRGRPC      string     // the minimal server with one Redis pipeline per request
	dataDir       string     // impactd's (dev keys)
	impactdFlags  []string   // extra flags of every impactd
	subjects      []string   // the token subjects, one per token
	claimSubjects [][]string // the claim phase's waves: roster subjects not claimed in setup

	adminConn *grpc.ClientConn
	pubConn   *grpc.ClientConn
	loadConns []*grpc.ClientConn // the generator's, closed at the end
	adminCtx  context.Context
	report    *Report // the run's, once done
	spec      []byte
	tokens    []string      // one per subject
	tokenMD   []metadata.MD // outgoing gRPC metadata per token
	authHdr   []string      // "Bearer ..." per token
	affected  int           // token subjects in the roster
	// publishRetries are the publishes that came back UNAVAILABLE and were
	// tried again (see publish), for the report.
	publishRetries []string
	notified       int // of which claimed (pinned)
	pinned         int // subjects claimed so far (setup and claim waves)
	visible        uint32
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.logw, "impact-load: "+format+"\n", args...)
}

func (h *harness) close() {
	for _, c := range append([]*grpc.ClientConn{h.adminConn, h.pubConn}, h.loadConns...) {
		if c != nil {
			_ = c.Close()
		}
	}
	h.minimal.stop()
	if h.impactd != nil {
		h.impactd.stop()
	}
	h.redis.stop()
	if h.ownWork {
		_ = os.RemoveAll(h.work)
	}
}

func (h *harness) run(ctx context.Context) error {
	cfg := h.cfg
	load0, started := loadAvg(), time.Now()
	rep := newReport(cfg, started, load0)
	if cfg.WorkDir == "" {
		dir, err := os.MkdirTemp("", "impact-load-")
		if err != nil {
			return err
		}
		h.work, h.ownWork = dir, true
	} else {
		h.work = cfg.WorkDir
		if err := os.MkdirAll(h.work, 0o700); err != nil {
			return err
		}
	}
	var err error
	h.logf("starting redis-server (appendfsync %s) and impactd (Redis store, JWT verification on)", cfg.AppendFsync)
	if h.redis, h.redisAt, err = startRedis(ctx, cfg.RedisServer, filepath.Join(h.work, "redis"), cfg.AppendFsync); err != nil {
		return err
	}
	dataDir := filepath.Join(h.work, "impactd")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	flags := cfg.ImpactdFlags
	if cfg.AppendFsync != "always" {
		flags = append([]string{"--allow-volatile-ledger"}, flags...)
	}
	h.dataDir, h.impactdFlags = dataDir, flags
	if h.impactd, err = startImpactd(ctx, cfg.Impactd, dataDir, h.redisAt, cfg.RedisQuery, cfg.LogLevel, flags); err != nil {
		return err
	}
	rep.ImpactdFlags = impactdFlags(h.impactd.pid())
	rss := &RSSReport{}
	memIdle, memErr := procMem(h.impactd.pid())
	if err := h.setup(ctx, dataDir); err != nil {
		return err
	}
	memLoaded, err := procMem(h.impactd.pid())
	if memErr == nil && err == nil {
		rss.IdleMB, rss.LoadedMB, rss.LoadPeakMB = mb(memIdle.RSS), mb(memLoaded.RSS), mb(memLoaded.HWM)
		rep.RSS = rss
	}
	rep.Settings.Tokens, rep.Settings.InRoster, rep.Settings.Notified = len(h.tokens), h.affected, h.notified
	plans, err := h.writeReadPlans(ctx, dataDir)
	if err != nil {
		return err
	}
	if err := h.startMinimal(ctx, plans); err != nil {
		return err
	}

	impGRPCCall := h.grpcCall(h.impactd.grpc)
	impGRPC := h.random(impGRPCCall)
	minGRPC := h.random(h.grpcCall(h.minGRPC))
	minRedis := h.random(h.grpcCall(h.minRGRPC))
	impREST := h.random(h.restCall(h.impactd.http))
	minREST := h.random(h.restCall(h.minHTTP))
	load := Load{Concurrency: cfg.Concurrency, Warmup: cfg.Warmup, Duration: cfg.Duration}
	drive := func(serverPID int, name string, l Load, req Request) Result {
		m := startCPU(serverPID, h.redis.pid())
		r := Drive(ctx, name, l, nil, req)
		r.CPU = m.stop()
		return r
	}
	measureOn := func(serverPID int, name string, l Load, req Request) Result {
		h.logf("measuring %s for %s (c=%d)", name, l.Duration, l.Concurrency)
		return drive(serverPID, name, l, req)
	}
	imp, minimal := h.impactd.pid(), h.minimal.pid()
	if err := h.prewarm(ctx, impGRPCCall); err != nil {
		return err
	}
	impAllocs := newMallocCounter("http://" + h.impactd.adminHTTP + "/metrics")
	minAllocs := newMallocCounter("http://" + h.minHTTP + "/debug/mallocs")
	for _, m := range []*mallocCounter{impAllocs, minAllocs} {
		if err := m.calibrate(ctx); err != nil {
			h.logf("no allocation counts: %v", err)
		}
	}
	// Baselines and impactd side by side: the targets take turns in Rounds
	// slices, so that a change of the machine's background load falls on
	// all of them alike.
	type target struct {
		name, protocol string
		pid            int
		req            Request
		perf           string
		allocs         *mallocCounter
		slices         []Result
		mallocs        int64 // < 0: not measured
		base           *target
	}
	mg := &target{name: "minimal grpc-go server", protocol: "grpc", pid: minimal, req: minGRPC, allocs: minAllocs}
	mrg := &target{name: "minimal grpc-go + one Redis pipeline", protocol: "grpc", pid: minimal, req: minRedis, allocs: minAllocs, base: mg}
	ig := &target{name: "impactd gRPC GetMyStatus", protocol: "grpc", pid: imp, req: impGRPC, perf: "grpc", allocs: impAllocs, base: mg}
	mr := &target{name: "minimal net/http + protojson", protocol: "rest", pid: minimal, req: minREST, allocs: minAllocs}
	ir := &target{name: "impactd REST GET .../status", protocol: "rest", pid: imp, req: impREST, perf: "rest", allocs: impAllocs, base: mr}
	targets := []*target{mg, mrg, ig, mr, ir}
	slice := load
	slice.Duration = cfg.Duration / time.Duration(cfg.Rounds)
	h.logf("measuring %d targets in %d rounds of %s each (c=%d)", len(targets), cfg.Rounds, slice.Duration, cfg.Concurrency)
	for round := range cfg.Rounds {
		if round > 0 {
			slice.Warmup = min(cfg.Warmup, 500*time.Millisecond) // connections are warm already
		}
		for _, tg := range targets {
			var stopPerf func()
			if round == 0 {
				stopPerf = h.startPerf(ctx, slice, tg.perf)
			}
			// Allocations count from the end of the warm-up (the scrape
			// runs while the warm-up's last requests finish) to the end.
			a0 := make(chan uint64, 1)
			go func() {
				time.Sleep(slice.Warmup)
				n, err := tg.allocs.read(ctx)
				if err != nil {
					tg.mallocs = -1
				}
				a0 <- n
			}()
			r := drive(tg.pid, tg.name, slice, tg.req)
			before := <-a0
			after, err := tg.allocs.read(ctx)
			if err != nil || tg.mallocs < 0 {
				tg.mallocs = -1
			} else {
				tg.mallocs += int64(tg.allocs.between(before, after))
			}
			tg.slices = append(tg.slices, r)
			if stopPerf != nil {
				stopPerf()
			}
		}
	}
	merged := map[*target]Result{}
	var measured []Result // checked for rate-limit refusals at the end
	for _, tg := range targets {
		merged[tg] = merge(tg.name, tg.slices)
		measured = append(measured, merged[tg])
	}
	for _, tg := range targets {
		row := targetRow(merged[tg], tg.protocol, tg.mallocs)
		row.Ratio = 1
		if tg.base != nil && merged[tg.base].RPS() > 0 {
			row.Ratio = merged[tg].RPS() / merged[tg.base].RPS()
		}
		rep.Targets = append(rep.Targets, row)
	}
	rep.Ratios = []RatioRow{
		ratioRow("gRPC: impactd / minimal grpc-go", merged[ig], merged[mg], targetGRPCRatio),
		ratioRow("gRPC: impactd / minimal grpc-go + one Redis pipeline", merged[ig], merged[mrg], 0),
		ratioRow("REST: impactd / minimal net/http", merged[ir], merged[mr], targetRESTRatio),
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	if cfg.Claims > 0 {
		waves, err := h.claimPhase(ctx)
		if err != nil {
			return err
		}
		rep.Claims = claimsReport(cfg, waves)
	}

	if cfg.PublishRows > 0 {
		idle, idlePing := h.idleWithProbe(func() Result { return measureOn(imp, "impactd gRPC, idle (before publish)", load, impGRPC) })
		m := startRSS(imp)
		during, duringPing, took, err := h.duringPublish(ctx, load, impGRPC, 2)
		if err != nil {
			return err
		}
		measured = append(measured, idle, during)
		pr := publishRow{"closed loop c=" + fmt.Sprint(cfg.Concurrency), idle, during, idlePing, duringPing, took, m.stop()}
		rep.Publish = append(rep.Publish, publishReportRow(pr, cfg.PublishRows))
		if cfg.PacedPercent > 0 {
			paced := load
			paced.Rate = merged[ig].RPS() * cfg.PacedPercent / 100
			pidle, pidlePing := h.idleWithProbe(func() Result {
				return measureOn(imp, fmt.Sprintf("impactd gRPC, idle, paced %.0f req/s", paced.Rate), paced, impGRPC)
			})
			m := startRSS(imp)
			pduring, pduringPing, ptook, err := h.duringPublish(ctx, paced, impGRPC, 3)
			if err != nil {
				return err
			}
			measured = append(measured, pidle, pduring)
			pr := publishRow{fmt.Sprintf("paced %.0f req/s (%.0f%% of max)", paced.Rate, cfg.PacedPercent), pidle, pduring, pidlePing, pduringPing, ptook, m.stop()}
			rep.Publish = append(rep.Publish, publishReportRow(pr, cfg.PublishRows))
		}
		if rep.RSS != nil {
			for _, x := range rep.Publish {
				rep.RSS.PublishPeak = max(rep.RSS.PublishPeak, x.RSSPeakMB)
				if !x.PeakExact {
					rep.RSS.Note = "publish peaks sampled every 20 ms: VmHWM could not be reset"
				}
			}
		}
	}
	if g := h.runGhz(ctx); g != nil {
		if g.note != "" {
			rep.GhzNote = g.note
		} else {
			rep.Ghz = &GhzRow{Version: g.version, RPS: g.rps, P50ms: msf(g.p50), P99ms: msf(g.p99), Requests: g.count, Errors: g.errors}
		}
	}

	rep.PublishRetries = h.publishRetries
	rep.LoadEnd, rep.Finished = loadAvg(), time.Now().UTC().Format(time.RFC3339)
	h.report = rep
	if cfg.JSON {
		if err := rep.WriteJSON(h.out); err != nil {
			return err
		}
		return checkRejections(io.Discard, measured) // ratelimited.go
	}
	fmt.Fprintln(h.out)
	if err := rep.WriteText(h.out); err != nil {
		return err
	}
	return checkRejections(h.out, measured)
}

type publishRow struct {
	mode                 string
	idle, during         Result
	idlePing, duringPing Result // Redis PING round trips alongside
	took                 time.Duration
	rss                  rssPeak // impactd's, over the publish
}

// setup publishes the roster, claims notices for half of the sampled
// affected subjects, and mints the tokens.
func (h *harness) setup(ctx context.Context, dataDir string) error {
	cfg := h.cfg
	var err error
	if h.adminConn, err = grpc.NewClient(h.impactd.adminGRPC, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return err
	}
	adminTok, err := auth.MintDevToken(dataDir, "load-ops", []string{auth.ScopeAdmin, auth.ScopeNotify}, 2*time.Hour)
	if err != nil {
		return err
	}
	h.adminCtx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+adminTok)
	var spec bytes.Buffer
	if err := demo.WriteSpec(&spec); err != nil {
		return err
	}
	h.spec = spec.Bytes()

	var roster bytes.Buffer
	if _, err := demo.WriteRoster(&roster, demo.RosterOptions{N: cfg.Rows, Seed: 1}); err != nil {
		return err
	}
	wantAffected := min(cfg.Rows, int(float64(cfg.Tokens)*cfg.AffectedPct/100+0.5))
	affected := sampleSubjects(roster.Bytes(), wantAffected, 1)
	if cfg.Claims > 0 {
		h.claimSubjects = claimWaves(roster.Bytes(), affected, cfg.Claims)
	}
	before := redisUsedMemory(h.redisAt)
	took, err := h.publish(ctx, roster.Bytes(), 1)
	if err != nil {
		return err
	}
	after := redisUsedMemory(h.redisAt)
	h.logf("published %d rows in %s (upload, stage, verify, publish); Redis used_memory +%.1f MB (%.1f B/row)",
		cfg.Rows, took.Round(time.Millisecond), float64(after-before)/1e6, float64(after-before)/float64(cfg.Rows))
	roster = bytes.Buffer{}

	// Pin half of the affected subjects: their reads hit a pin, as those of
	// patients who got their email do.
	h.affected = len(affected)
	if err := h.claim(ctx, affected[:len(affected)/2]); err != nil {
		return err
	}
	h.notified = len(affected) / 2
	h.pinned += h.notified

	// Not-affected subjects: numbers beyond the roster's population.
	subjects := append([]string{}, affected...)
	population := max(demo.Population, 2*cfg.Rows)
	for i := 0; len(subjects) < cfg.Tokens; i++ {
		subjects = append(subjects, fmt.Sprintf("patient-%07d", population+1+i))
	}
	rnd := rand.New(rand.NewPCG(7, 7))
	rnd.Shuffle(len(subjects), func(i, j int) { subjects[i], subjects[j] = subjects[j], subjects[i] })
	h.subjects = subjects
	h.logf("minting %d tokens (%d subjects in the roster, %d of them notified)", len(subjects), h.affected, h.notified)
	if h.tokens, err = mintTokens(ctx, dataDir, subjects); err != nil {
		return err
	}
	h.tokenMD = make([]metadata.MD, len(h.tokens))
	h.authHdr = make([]string, len(h.tokens))
	for i, t := range h.tokens {
		h.authHdr[i] = "Bearer " + t
		h.tokenMD[i] = metadata.Pairs("authorization", h.authHdr[i])
	}
	return nil
}

// claimWaves samples two waves of n roster subjects each, none of them in
// taken (the token subjects, some claimed in setup).
func claimWaves(csv []byte, taken []string, n int) [][]string {
	skip := make(map[string]bool, len(taken))
	for _, s := range taken {
		skip[s] = true
	}
	var pool []string
	for _, s := range sampleSubjects(csv, 2*n+len(taken), 2) {
		if !skip[s] && len(pool) < 2*n {
			pool = append(pool, s)
		}
	}
	rnd := rand.New(rand.NewPCG(2, 2))
	rnd.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	half := len(pool) / 2
	return [][]string{pool[:half], pool[half:]}
}

// prewarm sends one read per token, so that measurements see impactd's
// token cache warm, as it is for patients who poll (each token's first
// request verifies its ES256 signature, about 0.1 ms of CPU).
func (h *harness) prewarm(ctx context.Context, call tokenCall) error {
	h.logf("one read per token to warm impactd's token cache")
	var next atomic.Int64
	errs := make([]error, h.cfg.Concurrency)
	var wg sync.WaitGroup
	for w := range h.cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(h.tokenMD) || ctx.Err() != nil {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := call(cctx, w, i)
				cancel()
				if err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// publish uploads roster and publishes it as version v.
func (h *harness) publish(ctx context.Context, roster []byte, v uint32) (time.Duration, error) {
	start := time.Now()
	snap := impactv1.NewSnapshotServiceClient(h.adminConn)
	uctx, cancel := context.WithTimeout(h.adminCtx, 10*time.Minute)
	defer cancel()
	stream, err := snap.UploadSnapshot(uctx)
	if err != nil {
		return 0, err
	}
	if err := stream.Send(&impactv1.UploadSnapshotRequest{Part: &impactv1.UploadSnapshotRequest_Header{
		Header: &impactv1.UploadHeader{IncidentId: demo.IncidentID, Spec: h.spec}}}); err != nil {
		return 0, err
	}
	for b := roster; len(b) > 0; {
		n := min(len(b), 256<<10)
		if err := stream.Send(&impactv1.UploadSnapshotRequest{Part: &impactv1.UploadSnapshotRequest_RosterChunk{RosterChunk: b[:n]}}); err != nil {
			return 0, fmt.Errorf("upload: %w", err)
		}
		b = b[n:]
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return 0, fmt.Errorf("upload: %w", err)
	}
	if got := resp.GetSnapshot().GetVersion(); got != v {
		return 0, fmt.Errorf("upload staged version %d, want %d", got, v)
	}
	for attempt := 1; ; attempt++ {
		_, err := snap.PublishSnapshot(uctx, &impactv1.PublishSnapshotRequest{
			IncidentId: demo.IncidentID, Version: v, ExpectedVisibleVersion: proto.Uint32(h.visible),
			// The harness accepts whatever corrections the new roster makes:
			// at most every subject it notified.
			AcceptCorrections: uint32(h.pinned)})
		if err == nil {
			break
		}
		// UNAVAILABLE leaves the outcome open (a Redis reply that came
		// too late, a replica that did not acknowledge in time): do what
		// the runbook says, read the visible version and publish again
		// if it did not move. The run goes on and the report says so.
		if grpcstatus.Code(err) != codes.Unavailable || attempt == publishAttempts {
			return 0, fmt.Errorf("publish: %w", err)
		}
		h.publishRetries = append(h.publishRetries, fmt.Sprintf("v%d attempt %d: %s", v, attempt, grpcstatus.Convert(err).Message()))
		h.logf("publish v%d: %v; reading the visible version before trying again", v, err)
		time.Sleep(time.Duration(attempt) * time.Second)
		r, lerr := snap.ListSnapshots(uctx, &impactv1.ListSnapshotsRequest{IncidentId: demo.IncidentID})
		if lerr == nil && r.GetVisibleVersion() == v {
			break // the first attempt flipped it
		}
	}
	h.visible = v
	return time.Since(start), nil
}

// publishAttempts bounds how often the harness publishes a version whose
// publish came back UNAVAILABLE.
const publishAttempts = 3

// claim claims notices for subjects over the wave stream.
func (h *harness) claim(ctx context.Context, subjects []string) error {
	cctx, cancel := context.WithTimeout(h.adminCtx, 5*time.Minute)
	defer cancel()
	wave, err := impactv1.NewNoticeServiceClient(h.adminConn).ClaimNotices(cctx)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		for _, s := range subjects {
			if err := wave.Send(&impactv1.ClaimNoticesRequest{IncidentId: demo.IncidentID, SubjectId: s, IdempotencyKey: "load-wave-1"}); err != nil {
				errc <- err
				return
			}
		}
		errc <- wave.CloseSend()
	}()
	for range subjects {
		r, err := wave.Recv()
		if err != nil {
			return fmt.Errorf("claim: %w", err)
		}
		if r.GetClaim().GetAction() != impactv1.ClaimAction_SEND {
			return fmt.Errorf("claim of a roster subject: action %v, want SEND", r.GetClaim().GetAction())
		}
	}
	return <-errc
}

// duringPublish measures load while a fresh roster of PublishRows rows is
// uploaded and published as version v; the measurement ends with the
// publish.
func (h *harness) duringPublish(ctx context.Context, l Load, req Request, v uint32) (Result, Result, time.Duration, error) {
	var roster bytes.Buffer
	// Revision v of the first roster, as an investigation revises it: a few
	// notified subjects get a correction, which the publish must accept.
	if _, err := demo.WriteRoster(&roster, demo.RosterOptions{N: h.cfg.PublishRows, Seed: 1, Revision: int(v)}); err != nil {
		return Result{}, Result{}, 0, err
	}
	stop := make(chan struct{})
	var (
		took   time.Duration
		pubErr error
		wg     sync.WaitGroup
	)
	l.Warmup, l.Duration = 0, 10*time.Minute // bounded; ends with the publish
	name := fmt.Sprintf("impactd gRPC during a %d-row publish", h.cfg.PublishRows)
	if l.Rate > 0 {
		name += fmt.Sprintf(", paced %.0f req/s", l.Rate)
	}
	h.logf("measuring %s", name)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(stop)
		time.Sleep(200 * time.Millisecond) // the load is running
		took, pubErr = h.publish(ctx, roster.Bytes(), v)
	}()
	probe := make(chan Result, 1)
	go func() { probe <- probeRedis(h.redisAt, stop, l.Duration) }()
	m := startCPU(h.impactd.pid(), h.redis.pid())
	r := Drive(ctx, name, l, stop, req)
	r.CPU = m.stop()
	wg.Wait()
	return r, <-probe, took, pubErr
}

// idleWithProbe measures req like measure and Redis's PING round trip
// alongside.
func (h *harness) idleWithProbe(measure func() Result) (Result, Result) {
	stop := make(chan struct{})
	probe := make(chan Result, 1)
	go func() { probe <- probeRedis(h.redisAt, stop, time.Hour) }()
	r := measure()
	close(stop)
	return r, <-probe
}

// tokenCall issues one request for worker w with token i.
type tokenCall func(ctx context.Context, w, i int) error

// random makes a Request of call with a random token per request.
func (h *harness) random(call tokenCall) Request {
	return func(ctx context.Context, w int, rnd *rand.Rand) error {
		return call(ctx, w, rnd.IntN(len(h.tokens)))
	}
}

// grpcCall is GetMyStatus over one of Conns shared connections to addr.
func (h *harness) grpcCall(addr string) tokenCall {
	conns := make([]impactv1.StatusServiceClient, h.cfg.Conns)
	for i := range conns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			panic(err) // only a malformed target fails here
		}
		h.loadConns = append(h.loadConns, cc)
		conns[i] = impactv1.NewStatusServiceClient(cc)
	}
	in := &impactv1.GetMyStatusRequest{IncidentId: demo.IncidentID}
	return func(ctx context.Context, w, i int) error {
		resp, err := conns[w%len(conns)].GetMyStatus(metadata.NewOutgoingContext(ctx, h.tokenMD[i]), in)
		if err != nil {
			return rateLimitedGRPC(err)
		}
		if resp.GetAnswer().GetVersion() == 0 {
			return errors.New("answer without a version")
		}
		return nil
	}
}

// restCall is GET /v1/incidents/{id}/status.
func (h *harness) restCall(addr string) tokenCall {
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns: 4 * h.cfg.Concurrency, MaxIdleConnsPerHost: 4 * h.cfg.Concurrency,
		DisableCompression: true, IdleConnTimeout: time.Minute,
	}}
	url := "http://" + addr + "/v1/incidents/" + demo.IncidentID + "/status"
	return func(ctx context.Context, _, i int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Header["Authorization"] = []string{h.authHdr[i]}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		switch {
		case err != nil:
			return err
		case resp.StatusCode == http.StatusTooManyRequests:
			return fmt.Errorf("%w: HTTP 429", errRateLimited)
		case resp.StatusCode != http.StatusOK:
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		case n < 10:
			return errors.New("short answer")
		}
		return nil
	}
}

// startMinimal fetches a real not-affected answer from impactd and starts
// the minimal servers (this binary, MinimalCommand) returning it, the one
// reading Redis with the read plans in plansFile.
func (h *harness) startMinimal(ctx context.Context, plansFile string) error {
	var answer *impactv1.StatusAnswer
	for i := range h.tokens {
		rctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(ctx, h.tokenMD[i]), 10*time.Second)
		resp, err := impactv1.NewStatusServiceClient(h.publicConn()).GetMyStatus(rctx, &impactv1.GetMyStatusRequest{IncidentId: demo.IncidentID})
		cancel()
		if err != nil {
			return fmt.Errorf("status read: %w", err)
		}
		if a := resp.GetAnswer(); a.GetStatus() == impactv1.Status_NOT_AFFECTED {
			answer = a
			break
		}
	}
	if answer == nil {
		return errors.New("no token subject is not affected: lower --affected-percent")
	}
	raw, err := proto.Marshal(answer)
	if err != nil {
		return err
	}
	file := filepath.Join(h.work, "answer.pb")
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		return err
	}
	addrs, err := testproc.FreeAddrs(3)
	if err != nil {
		return err
	}
	h.minGRPC, h.minHTTP, h.minRGRPC = addrs[0], addrs[1], addrs[2]
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if h.minimal, err = startProc("minimal servers", filepath.Join(h.work, "minimal.log"), nil, self,
		MinimalCommand, "--grpc-addr", h.minGRPC, "--http-addr", h.minHTTP, "--answer", file,
		"--redis-grpc-addr", h.minRGRPC, "--redis-url", "redis://"+h.redisAt+"/0"+query(h.cfg.RedisQuery), "--read-plans", plansFile); err != nil {
		return err
	}
	return waitHTTP(ctx, h.minimal, "http://"+h.minHTTP+"/healthz", 20*time.Second)
}

// publicConn is a connection to impactd's patient listener for setup
// reads.
func (h *harness) publicConn() *grpc.ClientConn {
	if h.pubConn == nil {
		h.pubConn, _ = grpc.NewClient(h.impactd.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	return h.pubConn
}

// sampleSubjects picks k subject ids of a roster CSV uniformly (reservoir
// sampling), deterministically for a seed.
func sampleSubjects(csv []byte, k int, seed uint64) []string {
	if k <= 0 {
		return nil
	}
	rnd := rand.New(rand.NewPCG(seed, 0x73616d70))
	out := make([]string, 0, k)
	n := 0
	rest := csv[bytes.IndexByte(csv, '\n')+1:]
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		id, _, _ := bytes.Cut(line, []byte(","))
		if len(id) == 0 {
			continue
		}
		n++
		if len(out) < k {
			out = append(out, string(id))
		} else if j := rnd.IntN(n); j < k {
			out[j] = string(id)
		}
	}
	return out
}

// mintTokens mints one dev token per subject, on all cores.
func mintTokens(ctx context.Context, dataDir string, subjects []string) ([]string, error) {
	toks := make([]string, len(subjects))
	workers := runtime.GOMAXPROCS(0)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(subjects) && ctx.Err() == nil; i += workers {
				t, err := auth.MintDevToken(dataDir, subjects[i], nil, 2*time.Hour)
				if err != nil {
					errs[w] = err
					return
				}
				toks[i] = t
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return toks, ctx.Err()
}

// startPerf records impactd with perf for the next phase when asked to;
// the returned func waits for the recording to end.
func (h *harness) startPerf(ctx context.Context, l Load, phase string) func() {
	if h.cfg.PerfRecord == "" || h.cfg.PerfPhase != phase {
		return func() {}
	}
	secs := fmt.Sprintf("%.0f", (l.Warmup + l.Duration).Seconds())
	cmd := exec.CommandContext(ctx, "perf", "record", "-F", "499", "-g", "-p", fmt.Sprint(h.impactd.pid()),
		"-o", h.cfg.PerfRecord, "--", "sleep", secs)
	cmd.Stdout, cmd.Stderr = h.logw, h.logw
	if err := cmd.Start(); err != nil {
		h.logf("perf record: %v", err)
		return func() {}
	}
	return func() {
		if err := cmd.Wait(); err != nil {
			h.logf("perf record: %v", err)
		}
	}
}

// loadAvg is /proc/loadavg's first three fields ("" if unreadable).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
