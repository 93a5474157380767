// Package telemetry sets up Impact's OpenTelemetry traces and metrics and
// the slog handler that stamps log records with trace and span ids.
//
// Everything is configured by the standard OTEL_* environment variables:
//
//   - traces are exported over OTLP only when OTEL_EXPORTER_OTLP_ENDPOINT or
//     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; otherwise spans still get
//     trace and span ids (logs carry them) but are not recorded (nothing
//     would read them), whatever OTEL_TRACES_SAMPLER says;
//   - metrics are always exposed in the Prometheus text format by
//     MetricsHandler, and also pushed over OTLP when
//     OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is
//     set;
//   - OTEL_EXPORTER_OTLP_PROTOCOL (and the _TRACES_/_METRICS_ variants)
//     picks "grpc" or "http/protobuf" (the default, as the specification
//     says); OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER "none" and
//     OTEL_SDK_DISABLED=true turn OTLP export off; the exporters read the
//     other OTEL_EXPORTER_OTLP_* variables (headers, TLS, timeout), the
//     tracer provider OTEL_TRACES_SAMPLER(_ARG) and OTEL_BSP_*, the resource
//     OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
//
// Privacy (no raw identifiers in telemetry): no span, metric or log written by this
// package or by the instrumentation wired with it carries a subject id,
// token, idempotency key, email address or notice text. Store spans carry
// the incident id and version only, never subject keys, and no error text.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of Impact's own spans and metrics.
const ScopeName = "github.com/impact-health/impact"

// Config names the service in the telemetry resource. OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES override it.
type Config struct {
	ServiceName string
	Version     string
}

// Telemetry holds the tracer and meter providers, Impact's instruments and
// the Prometheus handler. A nil *Telemetry is valid and records nothing.
type Telemetry struct {
	tp       trace.TracerProvider
	mp       metric.MeterProvider
	handler  http.Handler
	metrics  *Metrics
	shutdown []func(context.Context) error
}

// Providers are the parts New assembles a Telemetry from (tests pass an
// in-memory span exporter's provider and a manual metric reader's).
type Providers struct {
	TracerProvider trace.TracerProvider // nil: no spans
	MeterProvider  metric.MeterProvider // nil: no metrics
	// MetricsHandler serves /metrics; nil: 404.
	MetricsHandler http.Handler
}

// New builds a Telemetry over existing providers and creates Impact's
// instruments. Setup is the production constructor.
func New(p Providers) (*Telemetry, error) {
	t := &Telemetry{
		tp:      p.TracerProvider,
		mp:      p.MeterProvider,
		handler: p.MetricsHandler,
	}
	if t.tp == nil {
		t.tp = tracenoop.NewTracerProvider()
	}
	if t.mp == nil {
		t.mp = metricnoop.NewMeterProvider()
	}
	if t.handler == nil {
		t.handler = http.NotFoundHandler()
	}
	m, err := newMetrics(t.mp.Meter(ScopeName))
	if err != nil {
		return nil, err
	}
	t.metrics = m
	return t, nil
}

// Setup builds the production telemetry from the OTEL_* environment (see
// the package documentation). Call Shutdown to flush the exporters.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	res, err := newResource(ctx, cfg)
	if err != nil {
		return nil, err
	}
	otlpOn := !envBool("OTEL_SDK_DISABLED")
	var shutdown []func(context.Context) error
	fail := func(err error) (*Telemetry, error) {
		for _, f := range shutdown {
			_ = f(ctx)
		}
		return nil, err
	}

	// Traces.
	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if otlpOn && otlpWanted("TRACES") {
		exp, err := newTraceExporter(ctx, protocol("TRACES"))
		if err != nil {
			return fail(fmt.Errorf("telemetry: OTLP trace exporter: %w", err))
		}
		topts = append(topts, sdktrace.WithBatcher(exp))
	} else {
		// Nothing exports spans: record none. Spans still get trace and
		// span ids (logs carry them), but no attributes, events or
		// timings are built for nobody: about a quarter of the CPU
		// telemetry adds to a status read (BenchmarkGetMyStatus in
		// internal/server).
		topts = append(topts, sdktrace.WithSampler(sdktrace.NeverSample()))
	}
	tp := sdktrace.NewTracerProvider(topts...)
	shutdown = append(shutdown, tp.Shutdown)

	// Metrics: Prometheus pull, plus OTLP push when configured.
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return fail(err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return fail(err)
	}
	pexp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return fail(fmt.Errorf("telemetry: prometheus exporter: %w", err))
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(pexp)}
	if otlpOn && otlpWanted("METRICS") {
		exp, err := newMetricExporter(ctx, protocol("METRICS"))
		if err != nil {
			return fail(fmt.Errorf("telemetry: OTLP metric exporter: %w", err))
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
	}
	mp := sdkmetric.NewMeterProvider(mopts...)
	shutdown = append(shutdown, mp.Shutdown)

	t, err := New(Providers{
		TracerProvider: tp,
		MeterProvider:  mp,
		MetricsHandler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	})
	if err != nil {
		return fail(err)
	}
	t.shutdown = shutdown
	return t, nil
}

func newResource(ctx context.Context, cfg Config) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{}
	if cfg.ServiceName != "" {
		attrs = append(attrs, attribute.String("service.name", cfg.ServiceName))
	}
	if cfg.Version != "" {
		attrs = append(attrs, attribute.String("service.version", cfg.Version))
	}
	// Later options win: the environment overrides Config. No process
	// command line: flags may hold secrets.
	res, err := resource.New(ctx,
		resource.WithAttributes(attrs...),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessRuntimeName(),
		resource.WithProcessRuntimeVersion(),
		resource.WithFromEnv(),
	)
	if err != nil && res == nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	// A partial resource (a detector failed) is still usable.
	return res, nil
}

// otlpWanted reports whether OTLP export of a signal ("TRACES", "METRICS")
// is configured: an endpoint is set and the exporter is not "none".
func otlpWanted(signal string) bool {
	if v := strings.TrimSpace(os.Getenv("OTEL_" + signal + "_EXPORTER")); v != "" && v != "otlp" {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") != ""
}

// protocol returns the OTLP protocol of a signal: the signal's own variable,
// then the general one, then "http/protobuf".
func protocol(signal string) string {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := strings.TrimSpace(os.Getenv(k)); v != "" {
			return v
		}
	}
	return "http/protobuf"
}

func newTraceExporter(ctx context.Context, proto string) (sdktrace.SpanExporter, error) {
	switch proto {
	case "grpc":
		return otlptracegrpc.New(ctx)
	case "http/protobuf":
		return otlptracehttp.New(ctx)
	}
	return nil, fmt.Errorf("unsupported OTLP protocol %q (grpc or http/protobuf)", proto)
}

func newMetricExporter(ctx context.Context, proto string) (sdkmetric.Exporter, error) {
	switch proto {
	case "grpc":
		return otlpmetricgrpc.New(ctx)
	case "http/protobuf":
		return otlpmetrichttp.New(ctx)
	}
	return nil, fmt.Errorf("unsupported OTLP protocol %q (grpc or http/protobuf)", proto)
}

func envBool(k string) bool {
	return strings.EqualFold(strings.TrimSpace(os.Getenv(k)), "true")
}

// TracerProvider returns the tracer provider (a no-op one for a nil
// Telemetry).
func (t *Telemetry) TracerProvider() trace.TracerProvider {
	if t == nil {
		return tracenoop.NewTracerProvider()
	}
	return t.tp
}

// MeterProvider returns the meter provider (a no-op one for a nil
// Telemetry).
func (t *Telemetry) MeterProvider() metric.MeterProvider {
	if t == nil {
		return metricnoop.NewMeterProvider()
	}
	return t.mp
}

// Propagator returns the context propagator: W3C trace context only
// (baggage from callers is not propagated).
func (t *Telemetry) Propagator() propagation.TextMapPropagator {
	return propagation.TraceContext{}
}

// Metrics returns Impact's instruments (nil for a nil Telemetry; the
// methods of a nil *Metrics record nothing).
func (t *Telemetry) Metrics() *Metrics {
	if t == nil {
		return nil
	}
	return t.metrics
}

// MetricsHandler serves the metrics in the Prometheus text format.
func (t *Telemetry) MetricsHandler() http.Handler {
	if t == nil {
		return http.NotFoundHandler()
	}
	return t.handler
}

// Shutdown flushes and stops the exporters started by Setup.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	t.shutdown = nil
	return errors.Join(errs...)
}
