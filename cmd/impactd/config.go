package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/impact-health/impact/internal/ratelimit"
	"github.com/impact-health/impact/internal/server"
)

// config is every setting of impactd. Each field is a flag; each flag can
// also be set by the environment variable IMPACT_<FLAG> (upper case, dashes
// as underscores). A flag given on the command line wins.
type config struct {
	Server server.Config

	Store    string // embedded | redis
	DataDir  string
	Dev      bool
	Web      bool // serve the patient web page (default: Dev)
	LogLevel string
	LogJSON  bool

	RedisURL            string
	RedisSentinelMaster string
	RedisSentinelAddrs  string
	RedisClusterAddrs   string
	RedisPassword       string
	RedisWaitReplicas   int
	AllowVolatileLedger bool

	JWKSFile   string
	JWKSURL    string
	Issuer     string
	Audience   string
	PepperFile string

	UploadReadRate int // bytes per second, 0: unlimited

	RateSubject ratelimit.Limit // per token subject, patient listener
	RateIP      ratelimit.Limit // per client address, patient listener
}

func parseConfig(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("impactd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	s := &c.Server
	fs.StringVar(&s.GRPCAddr, "grpc-addr", ":9090", "patient gRPC listener")
	fs.StringVar(&s.HTTPAddr, "http-addr", ":8080", "patient REST listener")
	fs.StringVar(&s.AdminGRPCAddr, "admin-grpc-addr", "127.0.0.1:9091", "ops gRPC listener (keep it on loopback or a private network)")
	fs.StringVar(&s.AdminHTTPAddr, "admin-http-addr", "127.0.0.1:8081", "ops REST listener")
	fs.DurationVar(&s.RequestTimeout, "request-timeout", 5*time.Second, "deadline of each unary call")
	fs.DurationVar(&s.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "graceful drain before a forced stop")
	fs.StringVar(&s.UploadDir, "upload-dir", "", "directory where uploads are spooled (default: <data-dir>/uploads)")
	fs.IntVar(&c.UploadReadRate, "upload-read-rate", 0, "cap on how fast uploads read rosters, bytes/s over all uploads (0: unlimited); ~30 bytes a row. Slows a large publish so that it does not slow patient reads")

	fs.StringVar(&c.Store, "store", "embedded", "store: embedded (local data dir) or redis")
	fs.StringVar(&c.DataDir, "data-dir", "", "data directory of the embedded store and of --dev keys (default: .impact-dev with --dev, impact-data otherwise)")
	fs.BoolVar(&c.Dev, "dev", false, "development mode: create a local signing key, JWKS and pepper in --data-dir")
	fs.BoolVar(&c.Web, "web", false, "serve the patient web page at / on the patient REST listener (default true with --dev)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&c.LogJSON, "log-json", true, "JSON logs (text when false)")

	fs.StringVar(&c.RedisURL, "redis-url", "", "standalone Redis URL, e.g. redis://127.0.0.1:6379/0")
	fs.StringVar(&c.RedisSentinelMaster, "redis-sentinel-master", "", "Sentinel master name")
	fs.StringVar(&c.RedisSentinelAddrs, "redis-sentinel-addrs", "", "comma-separated Sentinel addresses")
	fs.StringVar(&c.RedisClusterAddrs, "redis-cluster-addrs", "", "comma-separated Redis Cluster seed addresses")
	fs.StringVar(&c.RedisPassword, "redis-password", "", "Redis password for Sentinel or Cluster (prefer the environment)")
	fs.IntVar(&c.RedisWaitReplicas, "redis-wait-replicas", 0, "replicas that must acknowledge each pin and publish (WAIT)")
	fs.BoolVar(&c.AllowVolatileLedger, "allow-volatile-ledger", false, "start even if Redis could lose acknowledged pins (appendfsync not always)")

	fs.StringVar(&c.JWKSFile, "jwks-file", "", "JWKS file with the token signing keys")
	fs.StringVar(&c.JWKSURL, "jwks-url", "", "JWKS URL with the token signing keys")
	fs.StringVar(&c.Issuer, "issuer", "", "required token issuer")
	fs.StringVar(&c.Audience, "audience", "", "required token audience")
	fs.StringVar(&c.PepperFile, "pepper-file", "", "file with the secret pepper of subject keys (>= 32 bytes)")

	addSecurityFlags(fs, c)

	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := applyEnv(fs, os.LookupEnv); err != nil {
		return nil, err
	}
	resolveWeb(fs, c, os.LookupEnv)
	if c.DataDir == "" {
		c.DataDir = "impact-data"
		if c.Dev {
			c.DataDir = ".impact-dev" // where impactctl dev token looks by default
		}
	}
	if c.Server.UploadDir == "" {
		c.Server.UploadDir = c.DataDir + "/uploads"
	}
	return c, c.validate()
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

func (c *config) validate() error {
	switch c.Store {
	case "embedded", "redis":
	default:
		return fmt.Errorf("--store must be embedded or redis, not %q", c.Store)
	}
	if c.Store == "redis" {
		n := 0
		for _, v := range []string{c.RedisURL, c.RedisSentinelAddrs, c.RedisClusterAddrs} {
			if v != "" {
				n++
			}
		}
		if n != 1 {
			return errors.New("--store redis needs exactly one of --redis-url, --redis-sentinel-addrs, --redis-cluster-addrs")
		}
		if c.RedisSentinelAddrs != "" && c.RedisSentinelMaster == "" {
			return errors.New("--redis-sentinel-addrs needs --redis-sentinel-master")
		}
	}
	if !c.Dev {
		var missing []string
		if c.JWKSFile == "" && c.JWKSURL == "" {
			missing = append(missing, "--jwks-file or --jwks-url")
		}
		for _, f := range [][2]string{{"--issuer", c.Issuer}, {"--audience", c.Audience}, {"--pepper-file", c.PepperFile}} {
			if f[1] == "" {
				missing = append(missing, f[0])
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("missing %s (or use --dev on a workstation)", strings.Join(missing, ", "))
		}
	}
	if err := c.validateSecurity(); err != nil {
		return err
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("--log-level must be debug, info, warn or error")
	}
	return nil
}
