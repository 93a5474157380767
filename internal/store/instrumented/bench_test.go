package instrumented

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

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
	tel, err := telemetry.New(telemetry.Providers{
		TracerProvider: sdktrace.NewTracerProvider(),
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())),
	})
	if err != nil {
		b.Fatal(err)
	}
	reqCtx, span := tel.TracerProvider().Tracer("b").Start(ctx, "request")
	defer span.End()
	for _, bc := range []struct {
		name string
		st   store.Store
	}{{"bare", raw}, {"instrumented", New(raw, tel)}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var key store.Key
			for i := 0; b.Loop(); i++ {
				key[0], key[1] = byte(i), byte(i>>8)
				if _, err := bc.st.Read(reqCtx, "inc-1", key, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
