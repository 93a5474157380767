package app

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/impact-health/impact/internal/telemetry"
)

// telemetryShutdownTimeout bounds the flush of the exporters on exit.
const telemetryShutdownTimeout = 5 * time.Second

// startTelemetry sets up traces and metrics from the OTEL_* environment.
// Errors of the exporters (a collector down) are logged, not fatal. The
// returned stop flushes the exporters.
func startTelemetry(ctx context.Context, log *slog.Logger) (*telemetry.Telemetry, func(), error) {
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("telemetry export failed", "err", err.Error())
	}))
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "impactd", Version: buildVersion()})
	if err != nil {
		return nil, nil, err
	}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), telemetryShutdownTimeout)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("telemetry shutdown", "err", err.Error())
		}
	}
	return tel, stop, nil
}

// buildVersion is the module version impactd was built from, or its VCS
// revision, or "dev".
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return s.Value[:12]
		}
	}
	return "dev"
}
