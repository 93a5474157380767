// Package oteltest records OpenTelemetry spans and metrics in memory, for
// the tests of the telemetry package and of the instrumentation built on it.
// It does not import package telemetry, so that telemetry's own tests can
// use it.
package oteltest

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// Recorder is a tracer provider that hands every ended span to Spans at
// once, and a meter provider that Reader collects on demand.
type Recorder struct {
	TracerProvider *sdktrace.TracerProvider
	MeterProvider  *sdkmetric.MeterProvider
	Spans          *tracetest.InMemoryExporter
	Reader         *sdkmetric.ManualReader
}

// New returns a Recorder.
func New() *Recorder {
	r := &Recorder{Spans: tracetest.NewInMemoryExporter(), Reader: sdkmetric.NewManualReader()}
	r.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSyncer(r.Spans))
	r.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.Reader))
	return r
}

// Sums collects r and returns, per metric name and attribute set, the
// value of counters and gauges and the count of histograms.
func Sums(t testing.TB, r *sdkmetric.ManualReader) map[string]map[attribute.Distinct]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := sums{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				addValues(out, m.Name, d.DataPoints)
			case metricdata.Gauge[int64]:
				addValues(out, m.Name, d.DataPoints)
			case metricdata.Histogram[float64]:
				addCounts(out, m.Name, d.DataPoints)
			case metricdata.Histogram[int64]:
				addCounts(out, m.Name, d.DataPoints)
			}
		}
	}
	return out
}

// sums is what Sums returns: per metric name and attribute set, a total.
type sums = map[string]map[attribute.Distinct]float64

func add(out sums, name string, a attribute.Set, v float64) {
	if out[name] == nil {
		out[name] = map[attribute.Distinct]float64{}
	}
	out[name][a.Equivalent()] += v
}

// addValues adds the values of counter or gauge points.
func addValues[N int64 | float64](out sums, name string, ps []metricdata.DataPoint[N]) {
	for _, p := range ps {
		add(out, name, p.Attributes, float64(p.Value))
	}
}

// addCounts adds the counts of histogram points.
func addCounts[N int64 | float64](out sums, name string, ps []metricdata.HistogramDataPoint[N]) {
	for _, p := range ps {
		add(out, name, p.Attributes, float64(p.Count))
	}
}

// Set is the key Sums files the attribute set kvs under.
func Set(kvs ...attribute.KeyValue) attribute.Distinct {
	s := attribute.NewSet(kvs...)
	return s.Equivalent()
}
