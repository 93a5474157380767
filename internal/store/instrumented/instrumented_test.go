package instrumented

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/telemetry"
	"github.com/impact-health/impact/internal/testutil/embeddedtest"
	"github.com/impact-health/impact/internal/testutil/oteltest"
)

// testTelemetry returns a Telemetry recording into memory.
func testTelemetry(t *testing.T) (*telemetry.Telemetry, *tracetest.InMemoryExporter, *sdkmetric.ManualReader) {
	t.Helper()
	rec := oteltest.New()
	tel, err := telemetry.New(telemetry.Providers{TracerProvider: rec.TracerProvider, MeterProvider: rec.MeterProvider})
	if err != nil {
		t.Fatal(err)
	}
	return tel, rec.Spans, rec.Reader
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

	got := oteltest.Sums(t, reader)
	for _, c := range []struct {
		metric string
		attrs  attribute.Distinct
		want   float64
	}{
		{telemetry.MetricStoreErrors, oteltest.Set(telemetry.AttrOperation.String("Head"), telemetry.AttrErrorType.String("not_found")), 1},
		{telemetry.MetricStoreErrors, oteltest.Set(telemetry.AttrOperation.String("Ping"), telemetry.AttrErrorType.String("unavailable")), 1},
		{telemetry.MetricStoreDuration, oteltest.Set(telemetry.AttrOperation.String("Incidents")), 1},
		{telemetry.MetricStoreDuration, oteltest.Set(telemetry.AttrOperation.String("Read")), 1},
		{telemetry.MetricStoreDuration, oteltest.Set(telemetry.AttrOperation.String("Stager.Commit")), 1},
	} {
		if v := got[c.metric][c.attrs]; v != c.want {
			t.Errorf("%s %v = %v, want %v", c.metric, c.attrs, v, c.want)
		}
	}
	if len(got[telemetry.MetricStoreErrors]) != 2 {
		t.Errorf("store errors: %v", got[telemetry.MetricStoreErrors])
	}
}
