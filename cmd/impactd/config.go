package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/impact-health/impact/internal/app"
)

// parseConfig turns the command line and the environment into the app's
// Config. Each field is a flag whose default is app.DefaultConfig's value;
// each flag can also be set by the environment variable IMPACT_<FLAG>
// (upper case, dashes as underscores). A flag given on the command line
// wins.
func parseConfig(args []string, stderr io.Writer) (*app.Config, error) {
	c := app.DefaultConfig()
	fs := flag.NewFlagSet("impactd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	s := &c.Server
	fs.StringVar(&s.GRPCAddr, "grpc-addr", s.GRPCAddr, "patient gRPC listener")
	fs.StringVar(&s.HTTPAddr, "http-addr", s.HTTPAddr, "patient REST listener")
	fs.StringVar(&s.AdminGRPCAddr, "admin-grpc-addr", s.AdminGRPCAddr, "ops gRPC listener (keep it on loopback or a private network)")
	fs.StringVar(&s.AdminHTTPAddr, "admin-http-addr", s.AdminHTTPAddr, "ops REST listener")
	fs.DurationVar(&s.RequestTimeout, "request-timeout", s.RequestTimeout, "deadline of each unary call")
	fs.DurationVar(&s.ShutdownTimeout, "shutdown-timeout", s.ShutdownTimeout, "graceful drain before a forced stop")
	fs.StringVar(&s.UploadDir, "upload-dir", s.UploadDir, "directory where uploads are spooled (default: <data-dir>/uploads)")
	fs.IntVar(&c.PublishApprovals, "publish-approvals", c.PublishApprovals, "admins every publish and rollback needs, the requester included: with 2 or more a publish is a request that other admins approve")
	fs.DurationVar(&c.ApprovalTTL, "approval-ttl", c.ApprovalTTL, "how long a publish request waits for its approvals before it lapses")
	fs.DurationVar(&c.BackgroundMaxPause, "background-max-pause", c.BackgroundMaxPause, "longest pause of background work (upload parsing, staging, read-back) each time it yields to patient calls in flight; it runs at full speed when none is (0: no pacing)")
	fs.IntVar(&c.UploadReadRate, "upload-read-rate", c.UploadReadRate, "cap on how fast uploads read rosters, bytes/s over all uploads (0: unlimited); ~30 bytes a row. Slows a large publish so that it does not slow patient reads")

	fs.StringVar(&c.Store, "store", c.Store, "store: embedded (local data dir) or redis")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, fmt.Sprintf("data directory of the embedded store and of --dev keys (default: %s with --dev, %s otherwise)", app.DefaultDevDataDir, app.DefaultDataDir))
	fs.BoolVar(&c.Dev, "dev", c.Dev, "development mode: create a local signing key, JWKS and pepper in --data-dir")
	fs.BoolVar(&c.Web, "web", c.Web, "serve the patient web page at / on the patient REST listener (default true with --dev)")
	fs.StringVar(&c.Log.Level, "log-level", c.Log.Level, "debug, info, warn or error")
	fs.BoolVar(&c.Log.JSON, "log-json", c.Log.JSON, "JSON logs (text when false)")

	r := &c.Redis
	fs.StringVar(&r.URL, "redis-url", r.URL, "standalone Redis URL, e.g. redis://127.0.0.1:6379/0")
	fs.StringVar(&r.SentinelMaster, "redis-sentinel-master", r.SentinelMaster, "Sentinel master name")
	fs.Var((*addrsFlag)(&r.SentinelAddrs), "redis-sentinel-addrs", "comma-separated Sentinel addresses")
	fs.Var((*addrsFlag)(&r.ClusterAddrs), "redis-cluster-addrs", "comma-separated Redis Cluster seed addresses")
	fs.StringVar(&r.Password, "redis-password", r.Password, "Redis password for Sentinel or Cluster (prefer the environment)")
	fs.IntVar(&r.WaitReplicas, "redis-wait-replicas", r.WaitReplicas, "replicas that must acknowledge each pin and publish (WAIT)")
	fs.BoolVar(&c.MemoryReads, "memory-reads", c.MemoryReads, "answer patient reads from memory under a replica lease, over the embedded store or a standalone or Sentinel Redis (not a Cluster)")
	fs.DurationVar(&c.ReplicaLease, "replica-lease", c.ReplicaLease, "lease of a replica answering from memory: cut off from Redis, it stops within this; writes wait at most about this long for a vanished replica")
	fs.BoolVar(&r.AllowVolatileLedger, "allow-volatile-ledger", r.AllowVolatileLedger, "start even if Redis could lose acknowledged pins (appendfsync not always)")

	a := &c.Auth
	fs.StringVar(&a.JWKSFile, "jwks-file", a.JWKSFile, "JWKS file with the token signing keys")
	fs.StringVar(&a.JWKSURL, "jwks-url", a.JWKSURL, "JWKS URL with the token signing keys")
	fs.StringVar(&a.Issuer, "issuer", a.Issuer, "required token issuer")
	fs.StringVar(&a.Audience, "audience", a.Audience, "required token audience")
	fs.StringVar(&c.PepperFile, "pepper-file", c.PepperFile, "file with the secret pepper of subject keys (>= 32 bytes)")

	addSecurityFlags(fs, &c)
	addPracticeFlags(fs, &c) // practice.go

	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := applyEnv(fs, os.LookupEnv); err != nil {
		return nil, err
	}
	resolveWeb(fs, &c, os.LookupEnv)
	return &c, c.Validate()
}

// applyEnv sets every flag not given on the command line from IMPACT_<NAME>.
func applyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := "IMPACT_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookup(env); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
		}
	})
	return errors.Join(errs...)
}
