package instrumented

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/telemetry"
	"github.com/impact-health/impact/internal/testutil/embeddedtest"
)

// BenchmarkRead measures what the store decorator adds to the hot path (a
// not-affected Read inside a request span, production providers without
// an exporter) against the bare embedded store.
func BenchmarkRead(b *testing.B) {
	raw := embeddedtest.Open(b)
	ctx := context.Background()
	stg, err := raw.Stage(ctx, store.StageRequest{Incident: "inc-1", At: time.Now()})
	if err != nil {
		b.Fatal(err)
	}
	m := store.Manifest{Spec: []byte(`{}`)}
	if _, err := stg.Commit(ctx, m, store.NewDigester(nil).Sum(m.Spec), 0); err != nil {
		b.Fatal(err)
	}
	if _, err := raw.Publish(ctx, store.PublishRequest{Incident: "inc-1", Version: stg.Version(), ExpectVisible: 0, Actor: "ops", At: time.Now()}); err != nil {
		b.Fatal(err)
	}
	// "instrumented" records its spans (an exporter is configured);
	// "unsampled" makes them with ids but records none (telemetry.Setup
	// with no trace exporter).
	for _, bc := range []struct {
		name    string
		sampler sdktrace.Sampler // nil: not instrumented
	}{{"bare", nil}, {"instrumented", sdktrace.AlwaysSample()}, {"unsampled", sdktrace.NeverSample()}} {
		b.Run(bc.name, func(b *testing.B) {
			st, reqCtx := store.Store(raw), ctx
			if bc.sampler != nil {
				tel, err := telemetry.New(telemetry.Providers{
					TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSampler(bc.sampler)),
					MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())),
				})
				if err != nil {
					b.Fatal(err)
				}
				var span trace.Span
				reqCtx, span = tel.TracerProvider().Tracer("b").Start(ctx, "request")
				defer span.End()
				st = New(raw, tel)
			}
			b.ReportAllocs()
			var key store.Key
			for i := 0; b.Loop(); i++ {
				key[0], key[1] = byte(i), byte(i>>8)
				if _, err := st.Read(reqCtx, "inc-1", key, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
