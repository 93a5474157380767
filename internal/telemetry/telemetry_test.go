package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/testutil/embeddedtest"
	"github.com/impact-health/impact/internal/testutil/oteltest"
)

func TestLogHandler(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "op")
	defer span.End()
	var buf bytes.Buffer
	log := slog.New(NewLogHandler(slog.NewJSONHandler(&buf, nil)))

	decode := func() map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
			t.Fatalf("%v: %s", err, buf.String())
		}
		buf.Reset()
		return m
	}
	log.InfoContext(ctx, "in span")
	m := decode()
	if m["trace_id"] != span.SpanContext().TraceID().String() || m["span_id"] != span.SpanContext().SpanID().String() {
		t.Errorf("record in a span: %v", m)
	}
	log.InfoContext(context.Background(), "no span")
	if m := decode(); m["trace_id"] != nil || m["span_id"] != nil {
		t.Errorf("record outside a span: %v", m)
	}
	log.With("a", 1).WithGroup("g").InfoContext(ctx, "derived", "b", 2)
	m = decode()
	g, _ := m["g"].(map[string]any)
	if m["a"] != float64(1) || g == nil || g["b"] != float64(2) || g["trace_id"] != span.SpanContext().TraceID().String() {
		t.Errorf("derived logger: %v", m)
	}
}

// testTelemetry returns a Telemetry recording into memory.
func testTelemetry(t *testing.T) (*Telemetry, *tracetest.InMemoryExporter, *sdkmetric.ManualReader) {
	t.Helper()
	rec := oteltest.New()
	tel, err := New(Providers{TracerProvider: rec.TracerProvider, MeterProvider: rec.MeterProvider})
	if err != nil {
		t.Fatal(err)
	}
	return tel, rec.Spans, rec.Reader
}

// cache counts like snapshot.Catalog.
type cache struct{ hits, misses uint64 }

func (c cache) Stats() (uint64, uint64) { return c.hits, c.misses }

func TestMetrics(t *testing.T) {
	tel, _, reader := testTelemetry(t)
	m := tel.Metrics()
	ctx := context.Background()
	m.Answer(ctx, "inc-1", store.Affected, false)
	m.Answer(ctx, "inc-1", store.Affected, false)
	m.Answer(ctx, "inc-1", store.UnderReview, true)
	m.Answer(ctx, "inc-3", store.Affected, false)
	m.Claim(ctx, "inc-1", "send")
	m.StoreCall(ctx, "Read", time.Millisecond, nil)
	m.StoreCall(ctx, "Read", time.Millisecond, nil)
	m.StoreCall(ctx, "ClaimPin", time.Millisecond, store.ErrConflict)
	m.Publish(ctx, "inc-1", time.Second, 1234, nil)
	m.Publish(ctx, "inc-1", time.Second, 0, store.ErrConflict)
	raw := embeddedtest.Open(t)
	stg, err := raw.Stage(ctx, store.StageRequest{Incident: "inc-2", At: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	_ = stg.Abort(ctx)
	stopIncidents, err := m.ObserveIncidents(raw)
	if err != nil {
		t.Fatal(err)
	}
	stopCache, err := m.ObserveCatalog(cache{hits: 9, misses: 1})
	if err != nil {
		t.Fatal(err)
	}

	got := oteltest.Sums(t, reader)
	for _, c := range []struct {
		metric string
		attrs  attribute.Distinct
		want   float64
	}{
		{MetricAnswers, oteltest.Set(AttrIncident.String("inc-1"), AttrStatus.String("affected"), AttrUpdatePending.Bool(false)), 2},
		{MetricAnswers, oteltest.Set(AttrIncident.String("inc-1"), AttrStatus.String("under_review"), AttrUpdatePending.Bool(true)), 1},
		{MetricAnswers, oteltest.Set(AttrIncident.String("inc-3"), AttrStatus.String("affected"), AttrUpdatePending.Bool(false)), 1},
		{MetricStoreDuration, oteltest.Set(AttrOperation.String("Read")), 2},
		{MetricStoreDuration, oteltest.Set(AttrOperation.String("ClaimPin")), 1},
		{MetricStoreErrors, oteltest.Set(AttrOperation.String("ClaimPin"), AttrErrorType.String("conflict")), 1},
		{MetricClaims, oteltest.Set(AttrIncident.String("inc-1"), AttrAction.String("send")), 1},
		{MetricPublishDuration, oteltest.Set(AttrIncident.String("inc-1"), AttrOutcome.String("ok")), 1},
		{MetricPublishDuration, oteltest.Set(AttrIncident.String("inc-1"), AttrOutcome.String("conflict")), 1},
		{MetricPublishEntries, oteltest.Set(AttrIncident.String("inc-1")), 1},
		{MetricVisibleVersion, oteltest.Set(AttrIncident.String("inc-2")), 0},
		{MetricCatalogLookups, oteltest.Set(AttrResult.String("hit")), 9},
		{MetricCatalogLookups, oteltest.Set(AttrResult.String("miss")), 1},
	} {
		if v, ok := got[c.metric][c.attrs]; !ok || v != c.want {
			t.Errorf("%s %v = %v (present %v), want %v", c.metric, c.attrs, v, ok, c.want)
		}
	}
	if err := stopIncidents(); err != nil {
		t.Fatal(err)
	}
	if err := stopCache(); err != nil {
		t.Fatal(err)
	}
	if got := oteltest.Sums(t, reader); len(got[MetricCatalogLookups]) != 0 || len(got[MetricVisibleVersion]) != 0 {
		t.Errorf("observed after stop: %v", got)
	}

	var nilT *Telemetry // telemetry off: everything is a no-op
	nilT.Metrics().Answer(ctx, "inc-1", store.Affected, false)
	if stop, err := nilT.Metrics().ObserveIncidents(raw); err != nil || stop() != nil {
		t.Fatal("nil metrics")
	}
	if err := nilT.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// clearOTEL unsets the variables Setup reads, for the test.
func clearOTEL(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
		"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(k, "")
	}
}

func TestSetupPrometheus(t *testing.T) {
	clearOTEL(t)
	tel, err := Setup(context.Background(), Config{ServiceName: "impactd", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	tel.Metrics().Answer(context.Background(), "inc-1", store.Affected, true)
	_, span := tel.TracerProvider().Tracer("t").Start(context.Background(), "op")
	if !span.SpanContext().IsValid() {
		t.Error("spans have no ids without an exporter")
	}
	if span.IsRecording() {
		t.Error("spans are recorded with nothing to export them")
	}
	span.End()

	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`impact_status_answers_total{`, `status="affected"`, `update_pending="true"`,
		"go_goroutines", `target_info{`, `service_name="impactd"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// collector is an OTLP/HTTP endpoint that records what it receives.
type collector struct {
	mu     sync.Mutex
	paths  map[string]int
	traces []*coltracepb.ExportTraceServiceRequest
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paths[r.URL.Path]++
	if r.URL.Path == "/v1/traces" {
		req := &coltracepb.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(b, req); err == nil {
			c.traces = append(c.traces, req)
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

func TestSetupOTLP(t *testing.T) {
	for _, tc := range []struct {
		name              string
		env               map[string]string
		traces, metricsOK bool
	}{
		{"endpoint set", map[string]string{}, true, true},
		{"traces exporter none", map[string]string{"OTEL_TRACES_EXPORTER": "none"}, false, true},
		{"sdk disabled", map[string]string{"OTEL_SDK_DISABLED": "true"}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearOTEL(t)
			c := &collector{paths: map[string]int{}}
			srv := httptest.NewServer(c)
			defer srv.Close()
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
			t.Setenv("OTEL_SERVICE_NAME", "impact-test")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			tel, err := Setup(context.Background(), Config{ServiceName: "impactd"})
			if err != nil {
				t.Fatal(err)
			}
			_, span := tel.TracerProvider().Tracer("t").Start(context.Background(), "exported-op")
			if span.IsRecording() != tc.traces {
				t.Errorf("span recording: %v, want %v", span.IsRecording(), tc.traces)
			}
			span.End()
			tel.Metrics().Claim(context.Background(), "inc-1", "send")
			if err := tel.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			if got := c.paths["/v1/traces"] > 0; got != tc.traces {
				t.Errorf("traces exported: %v, want %v (%v)", got, tc.traces, c.paths)
			}
			if got := c.paths["/v1/metrics"] > 0; got != tc.metricsOK {
				t.Errorf("metrics exported: %v, want %v (%v)", got, tc.metricsOK, c.paths)
			}
			if !tc.traces {
				return
			}
			var names []string
			service := ""
			for _, req := range c.traces {
				for _, rs := range req.ResourceSpans {
					for _, kv := range rs.GetResource().GetAttributes() {
						if kv.Key == "service.name" {
							service = kv.GetValue().GetStringValue()
						}
					}
					for _, ss := range rs.ScopeSpans {
						for _, s := range ss.Spans {
							names = append(names, s.Name)
						}
					}
				}
			}
			if len(names) != 1 || names[0] != "exported-op" || service != "impact-test" {
				t.Errorf("exported spans %v of service %q", names, service)
			}
		})
	}
}

func TestSetupRejectsUnknownProtocol(t *testing.T) {
	clearOTEL(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")
	if _, err := Setup(context.Background(), Config{ServiceName: "impactd"}); err == nil || !strings.Contains(err.Error(), "thrift") {
		t.Fatalf("Setup with protocol thrift: %v", err)
	}
}

// TestOptionCache: each key keeps its own options, concurrent first uses
// agree on one, and past maxCachedOptions keys are built per call, not
// kept.
func TestOptionCache(t *testing.T) {
	var c optionCache[int, string]
	build := func(k int) func() string { return func() string { return strconv.Itoa(k) } }
	var wg sync.WaitGroup
	firsts := make([][]string, 8)
	for g := range firsts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			firsts[g] = c.get(-1, build(-1))
		}()
	}
	wg.Wait()
	for _, f := range firsts {
		if &f[0] != &firsts[0][0] || f[0] != "-1" {
			t.Fatalf("concurrent first uses got different options: %v", firsts)
		}
	}
	for k := range maxCachedOptions + 10 {
		if got := c.get(k, build(k)); len(got) != 1 || got[0] != strconv.Itoa(k) {
			t.Fatalf("key %d: %v", k, got)
		}
	}
	if n := len(*c.m.Load()); n != maxCachedOptions {
		t.Fatalf("cache holds %d keys, want the bound %d", n, maxCachedOptions)
	}
	if got := c.get(maxCachedOptions+5, build(maxCachedOptions+5)); got[0] != strconv.Itoa(maxCachedOptions+5) {
		t.Fatalf("uncached key: %v", got)
	}
	if got := c.get(7, func() string { t.Fatal("cached key rebuilt"); return "" }); got[0] != "7" {
		t.Fatalf("cached key: %v", got)
	}
}

// BenchmarkAnswer is the per-read count of a status answer, with the SDK
// meter provider as Setup builds it.
func BenchmarkAnswer(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tel, err := New(Providers{MeterProvider: mp})
	if err != nil {
		b.Fatal(err)
	}
	m, ctx := tel.Metrics(), context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Answer(ctx, "mmh-2025-12", store.Affected, false)
			m.StoreCall(ctx, "Read", time.Microsecond, nil)
		}
	})
}
