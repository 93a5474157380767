package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/server"
	"github.com/impact-health/impact/internal/snapshot"
	"github.com/impact-health/impact/internal/status"
	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/store/embedded"
	"github.com/impact-health/impact/internal/store/instrumented"
	"github.com/impact-health/impact/internal/telemetry"
)

// catalogSize bounds the per-version cache (specs and dictionaries).
const catalogSize = 64

// realMain wires the configuration into a running server and blocks until
// ctx is done and the server has drained.
func realMain(ctx context.Context, args []string) error {
	cfg, err := parseConfig(args, os.Stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg, os.Stderr)
	slog.SetDefault(log)
	tel, stopTelemetry, err := startTelemetry(ctx, log)
	if err != nil {
		return err
	}
	defer stopTelemetry()

	if cfg.Dev {
		if err := applyDev(cfg); err != nil {
			return err
		}
		log.Warn("development mode: local signing key and pepper; never use in production", "data_dir", cfg.DataDir)
	}
	if err := os.MkdirAll(cfg.Server.UploadDir, 0o700); err != nil {
		return fmt.Errorf("upload dir: %w", err)
	}

	pepper, err := auth.LoadPepper(cfg.PepperFile)
	if err != nil {
		return err
	}
	keyer, err := auth.NewKeyer(pepper)
	if err != nil {
		return err
	}
	verifier, err := auth.NewVerifier(ctx, auth.Config{
		JWKSFile: cfg.JWKSFile, JWKSURL: cfg.JWKSURL, Issuer: cfg.Issuer, Audience: cfg.Audience,
	})
	if err != nil {
		return err
	}
	defer verifier.Close()

	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() { _ = st.Close() }()
	subjectLimit, addrLimit, rateKeys, closeLimiters, err := newLimiters(cfg, pepper)
	if err != nil {
		return err
	}
	defer closeLimiters()
	st = instrumented.New(st, tel)

	catalog := snapshot.NewCatalog(st, catalogSize)
	srv, err := server.New(cfg.Server, server.Deps{
		Store:         st,
		Status:        status.New(st, catalog, keyer),
		Snapshots:     snapshot.NewService(st, keyer, snapshot.WithCatalog(catalog), snapshot.WithReadRate(cfg.UploadReadRate)),
		Catalog:       catalog,
		Authenticator: verifier,
		Logger:        log,
		Web:           webPage(cfg),
		Telemetry:     tel,

		SubjectLimiter: subjectLimit,
		AddrLimiter:    addrLimit,
		RateKeys:       rateKeys,
	})
	if err != nil {
		return err
	}
	a := srv.Addrs()
	log.Info("serving", "grpc", a.GRPC, "http", a.HTTP, "admin_grpc", a.AdminGRPC, "admin_http", a.AdminHTTP, "store", cfg.Store)
	return srv.Run(ctx)
}

// applyDev creates (once) and uses the development keys and pepper.
func applyDev(cfg *config) error {
	files, err := auth.EnsureDevKeys(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("dev keys: %w", err)
	}
	if cfg.JWKSFile == "" && cfg.JWKSURL == "" {
		cfg.JWKSFile = files.JWKSFile
	}
	if cfg.Issuer == "" {
		cfg.Issuer = auth.DevIssuer
	}
	if cfg.Audience == "" {
		cfg.Audience = auth.DevAudience
	}
	if cfg.PepperFile == "" {
		cfg.PepperFile = files.PepperFile
	}
	return nil
}

func openStore(ctx context.Context, cfg *config, log *slog.Logger) (store.Store, error) {
	switch cfg.Store {
	case "redis":
		return openRedis(ctx, cfg, log)
	default:
		// #nosec G703 -- --data-dir is the operator's choice, not request input.
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
		return embedded.Open(filepath.Join(cfg.DataDir, "impact.db"))
	}
}

func newLogger(cfg *config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogJSON {
		return slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(w, opts)))
	}
	return slog.New(telemetry.NewLogHandler(slog.NewTextHandler(w, opts)))
}
