package instrumented

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/telemetry"
	"github.com/impact-health/impact/internal/testutil/embeddedtest"
)

// testTelemetry returns a Telemetry recording into memory.
func testTelemetry(t *testing.T) (*telemetry.Telemetry, *tracetest.InMemoryExporter, *sdkmetric.ManualReader) {
	t.Helper()
	spans := tracetest.NewInMemoryExporter()
	reader := sdkmetric.NewManualReader()
	tel, err := telemetry.New(telemetry.Providers{
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans)),
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return tel, spans, reader
}

// storeMetrics returns, per metric name and attribute set, the value of
// the store's error counter and the count of its duration histogram.
func storeMetrics(t *testing.T, r *sdkmetric.ManualReader) map[string]map[attribute.Distinct]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[attribute.Distinct]float64{}
	add := func(name string, a attribute.Set, v float64) {
		if out[name] == nil {
			out[name] = map[attribute.Distinct]float64{}
		}
		out[name][a.Equivalent()] += v
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					add(m.Name, p.Attributes, float64(p.Value))
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					add(m.Name, p.Attributes, float64(p.Count))
				}
			}
		}
	}
	return out
}

func set(kvs ...attribute.KeyValue) attribute.Distinct {
	s := attribute.NewSet(kvs...)
	return s.Equivalent()
}

// down is a store that cannot be reached.
type down struct{ store.Store }

func (down) Ping(context.Context) error { return store.ErrUnavailable }

func TestNew(t *testing.T) {
	tel, spans, reader := testTelemetry(t)
	raw := embeddedtest.Open(t)
	st := New(raw, tel)
	if New(raw, nil) != store.Store(raw) {
		t.Error("New with nil telemetry wraps")
	}

	ctx, parent := tel.TracerProvider().Tracer("t").Start(context.Background(), "request")
	key := store.Key{0xde, 0xad, 0xbe, 0xef, 0xfe, 0xed, 0xfa, 0xce, 1, 2, 3, 4, 5, 6, 7, 8}
	stg, err := st.Stage(ctx, store.StageRequest{Incident: "inc-1", CreatedBy: "ops-secret-actor", Source: "upload", At: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	rec := store.Record{Status: store.Affected, Cohorts: 1}
	if err := stg.Put(ctx, []store.Entry{{Key: key, Record: rec}}); err != nil {
		t.Fatal(err)
	}
	dg := store.NewDigester(nil)
	if err := dg.Add(store.Entry{Key: key, Record: rec}); err != nil {
		t.Fatal(err)
	}
	m := store.Manifest{Spec: []byte(`{}`), Cohorts: 1}
	if _, err := stg.Commit(ctx, m, dg.Sum(m.Spec), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Publish(ctx, store.PublishRequest{Incident: "inc-1", Version: stg.Version(), ExpectVisible: 0, Actor: "ops-secret-actor", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if v, err := st.Read(ctx, "inc-1", key, nil); err != nil || v.Record.Status != store.Affected {
		t.Fatalf("Read: %v %v", v, err)
	}
	if _, err := st.Head(ctx, "no-such-incident"); err == nil {
		t.Fatal("Head of an unknown incident")
	}
	parent.End()
	// Outside any trace: timed and counted, no span.
	if _, err := st.Incidents(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := New(down{}, tel).Ping(context.Background()); err == nil {
		t.Fatal("Ping of a store that is down")
	}

	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans.GetSpans().Snapshots() {
		byName[s.Name()] = s
		if s.Name() != "request" && s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("%s is not a child of the request span", s.Name())
		}
		for _, kv := range s.Attributes() {
			v := kv.Value.Emit()
			if strings.Contains(strings.ToLower(v), hex.EncodeToString(key[:4])) || strings.Contains(v, "ops-secret-actor") {
				t.Errorf("%s attribute %s=%s holds a key or the actor", s.Name(), kv.Key, v)
			}
		}
	}
	for _, name := range []string{"store.Stage", "store.Stager.Put", "store.Stager.Commit", "store.Publish", "store.Read", "store.Head"} {
		if byName[name] == nil {
			t.Errorf("no span %s", name)
		}
	}
	if n := len(byName); n != 7 {
		t.Errorf("%d spans, want the request's and 6 store calls'", n)
	}
	attrs := func(name string) map[attribute.Key]string {
		m := map[attribute.Key]string{}
		if s := byName[name]; s != nil {
			for _, kv := range s.Attributes() {
				m[kv.Key] = kv.Value.Emit()
			}
		}
		return m
	}
	if a := attrs("store.Read"); a[telemetry.AttrIncident] != "inc-1" || a[telemetry.AttrVersion] != "1" {
		t.Errorf("store.Read attributes %v", a)
	}
	if a := attrs("store.Stager.Put"); a[telemetry.AttrCount] != "1" || a[telemetry.AttrVersion] != "1" {
		t.Errorf("store.Stager.Put attributes %v", a)
	}
	if a := attrs("store.Head"); a[telemetry.AttrErrorType] != "not_found" {
		t.Errorf("store.Head attributes %v", a)
	}

	got := storeMetrics(t, reader)
	for _, c := range []struct {
		metric string
		attrs  attribute.Distinct
		want   float64
	}{
		{telemetry.MetricStoreErrors, set(telemetry.AttrOperation.String("Head"), telemetry.AttrErrorType.String("not_found")), 1},
		{telemetry.MetricStoreErrors, set(telemetry.AttrOperation.String("Ping"), telemetry.AttrErrorType.String("unavailable")), 1},
		{telemetry.MetricStoreDuration, set(telemetry.AttrOperation.String("Incidents")), 1},
		{telemetry.MetricStoreDuration, set(telemetry.AttrOperation.String("Read")), 1},
		{telemetry.MetricStoreDuration, set(telemetry.AttrOperation.String("Stager.Commit")), 1},
	} {
		if v := got[c.metric][c.attrs]; v != c.want {
			t.Errorf("%s %v = %v, want %v", c.metric, c.attrs, v, c.want)
		}
	}
	if len(got[telemetry.MetricStoreErrors]) != 2 {
		t.Errorf("store errors: %v", got[telemetry.MetricStoreErrors])
	}
}
