package app_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/app"
	redisstore "github.com/impact-health/impact/internal/store/redis"
)

// An app built from impactd's defaults (plus --dev, loopback :0 listeners
// and the web page) completes its Config, serves health and the page on its
// patient REST listener, and closes its store once Run returns.
func TestNewRun(t *testing.T) {
	cfg := app.DefaultConfig()
	cfg.Dev, cfg.Web, cfg.DataDir = true, true, t.TempDir()
	for _, a := range []*string{&cfg.Server.GRPCAddr, &cfg.Server.HTTPAddr, &cfg.Server.AdminGRPCAddr, &cfg.Server.AdminHTTPAddr} {
		*a = "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := app.New(ctx, cfg, app.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if a.Config.Server.UploadDir != cfg.DataDir+"/uploads" || a.Config.CatalogSize != app.DefaultCatalogSize || a.Config.PepperFile == "" {
		t.Fatalf("config not completed: %+v", a.Config)
	}
	if a.Replica == nil {
		t.Fatal("the embedded store is not wrapped in a replica answering from memory (MemoryReads is on by default)")
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	for deadline := time.Now().Add(20 * time.Second); !a.Replica.Serving(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the replica over the embedded store never answers from memory")
		}
	}
	base := "http://" + a.Addrs().HTTP
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d", code)
	}
	if code, body := get("/"); code != http.StatusOK || !strings.Contains(strings.ToLower(body), "<html") {
		t.Fatalf("web page: %d %.80q", code, body)
	}
	if a.Keyer == nil || a.Store == nil || a.Catalog == nil || a.Status == nil || a.Snapshots == nil || a.Audit == nil || a.Erasure == nil || a.Notices == nil {
		t.Fatal("app incomplete")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if err := a.Store.Ping(context.Background()); err == nil {
		t.Fatal("store still open after Run returned")
	}
}

// With MemoryReads off, every read goes to the store.
func TestMemoryReadsOff(t *testing.T) {
	cfg := app.DefaultConfig()
	cfg.Dev, cfg.DataDir, cfg.MemoryReads = true, t.TempDir(), false
	for _, a := range []*string{&cfg.Server.GRPCAddr, &cfg.Server.HTTPAddr, &cfg.Server.AdminGRPCAddr, &cfg.Server.AdminHTTPAddr} {
		*a = "127.0.0.1:0"
	}
	a, err := app.New(context.Background(), cfg, app.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Replica != nil {
		t.Fatal("a replica answers from memory with MemoryReads off")
	}
}

func TestValidate(t *testing.T) {
	dev := func(f func(*app.Config)) app.Config {
		c := app.DefaultConfig()
		c.Dev = true
		f(&c)
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  app.Config
		want string // "" for valid
	}{
		{"dev defaults", dev(func(*app.Config) {}), ""},
		{"production without keys", app.DefaultConfig(), "missing --jwks-file or --jwks-url, --issuer, --audience, --pepper-file"},
		{"unknown store", dev(func(c *app.Config) { c.Store = "memory" }), "--store must be embedded or redis"},
		{"redis without topology", dev(func(c *app.Config) { c.Store = app.StoreRedis }), "exactly one of"},
		{"redis with two topologies", dev(func(c *app.Config) {
			c.Store, c.Redis = app.StoreRedis, redisstore.Config{URL: "redis://x", ClusterAddrs: []string{"a:1"}}
		}), "exactly one of"},
		{"sentinel without master", dev(func(c *app.Config) {
			c.Store, c.Redis = app.StoreRedis, redisstore.Config{SentinelAddrs: []string{"a:1"}}
		}), "--redis-sentinel-master"},
		{"redis url", dev(func(c *app.Config) { c.Store, c.Redis.URL = app.StoreRedis, "redis://127.0.0.1:6379/0" }), ""},
		{"log level", dev(func(c *app.Config) { c.Log.Level = "loud" }), "--log-level"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// The app has one Pacer by default, with the configured pause; none when
// --background-max-pause is 0; a negative pause is refused.
func TestPacer(t *testing.T) {
	start := func(pause time.Duration) (*app.App, error) {
		cfg := app.DefaultConfig()
		cfg.Dev, cfg.DataDir, cfg.BackgroundMaxPause = true, t.TempDir(), pause
		for _, a := range []*string{&cfg.Server.GRPCAddr, &cfg.Server.HTTPAddr, &cfg.Server.AdminGRPCAddr, &cfg.Server.AdminHTTPAddr} {
			*a = "127.0.0.1:0"
		}
		a, err := app.New(context.Background(), cfg, app.Options{Logger: slog.New(slog.DiscardHandler)})
		if err == nil {
			t.Cleanup(a.Close)
		}
		return a, err
	}
	a, err := start(app.DefaultConfig().BackgroundMaxPause)
	if err != nil {
		t.Fatal(err)
	}
	if a.Pacer == nil {
		t.Fatal("default config: no pacer")
	}
	if a, err = start(0); err != nil {
		t.Fatal(err)
	}
	if a.Pacer != nil {
		t.Fatal("--background-max-pause 0: a pacer, want none")
	}
	if _, err := start(-time.Millisecond); err == nil || !strings.Contains(err.Error(), "--background-max-pause") {
		t.Fatalf("negative pause: %v, want a refusal naming the flag", err)
	}
}
