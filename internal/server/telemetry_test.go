package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/server"
	"github.com/impact-health/impact/internal/telemetry"
	"github.com/impact-health/impact/internal/testutil/impacttest"
	"github.com/impact-health/impact/internal/testutil/testclient"
)

// point is one metric data point, flattened.
type point struct {
	metric string
	attrs  attribute.Set
	value  float64 // sum or gauge value; observation count for histograms
}

func collect(t *testing.T, r *sdkmetric.ManualReader) (*metricdata.ResourceMetrics, []point) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var out []point
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out = append(out, point{m.Name, p.Attributes, float64(p.Value)})
				}
			case metricdata.Sum[float64]:
				for _, p := range d.DataPoints {
					out = append(out, point{m.Name, p.Attributes, p.Value})
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out = append(out, point{m.Name, p.Attributes, float64(p.Value)})
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out = append(out, point{m.Name, p.Attributes, float64(p.Count)})
				}
			case metricdata.Histogram[int64]:
				for _, p := range d.DataPoints {
					out = append(out, point{m.Name, p.Attributes, float64(p.Count)})
				}
			default:
				t.Fatalf("metric %s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	return &rm, out
}

// find sums the points of a metric whose attributes include want.
func find(points []point, metric string, want ...attribute.KeyValue) (float64, bool) {
	var sum float64
	found := false
next:
	for _, p := range points {
		if p.metric != metric {
			continue
		}
		for _, kv := range want {
			if v, ok := p.attrs.Value(kv.Key); !ok || v.Emit() != kv.Value.Emit() {
				continue next
			}
		}
		sum += p.value
		found = true
	}
	return sum, found
}

func spanAttr(s sdktrace.ReadOnlySpan, k attribute.Key) string {
	for _, kv := range s.Attributes() {
		if kv.Key == k {
			return kv.Value.Emit()
		}
	}
	return ""
}

// TestTelemetry runs a claim and status reads (gRPC and REST) through an
// instrumented server and checks the spans and metrics they leave, and that
// no subject id, token, idempotency key or notice text is in any of them
// or in the logs.
func TestTelemetry(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	tel, err := telemetry.New(telemetry.Providers{
		TracerProvider: tp, MeterProvider: mp,
		MetricsHandler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("metrics here\n")) }),
	})
	if err != nil {
		t.Fatal(err)
	}
	e := startEnvWith(t, impacttest.Options{Telemetry: tel, Config: server.Config{RequestTimeout: 2 * time.Second}}, clientCreds{})
	e.WaitReady(t)

	const (
		subject = "tel-subject-7f3a9c41"
		idem    = "idem-key-secret-5d2e"
	)
	roster := fmt.Sprintf("subject_id,status,cohorts,practice_id\n%s,affected,%s,GP-01\nother-subject-1,under_review,,\n", subject, demo.CohortNorthland)
	info, err := e.upload(testclient.DemoSpec(t), roster)
	if err != nil {
		t.Fatal(err)
	}
	e.publish(info.GetVersion(), 0)

	notices := impactv1.NewNoticeServiceClient(e.admin)
	claim, err := notices.ClaimNotice(testclient.WithToken(context.Background(), e.adminTk),
		&impactv1.ClaimNoticeRequest{IncidentId: demo.IncidentID, SubjectId: subject, IdempotencyKey: idem})
	if err != nil {
		t.Fatal(err)
	}
	if claim.GetClaim().GetAction() != impactv1.ClaimAction_SEND {
		t.Fatalf("claim: %v", claim)
	}
	notice := claim.GetClaim().GetNotice()

	patientTk := e.Token(t, subject)
	status := impactv1.NewStatusServiceClient(e.public)
	ans, err := status.GetMyStatus(testclient.WithToken(context.Background(), patientTk), &impactv1.GetMyStatusRequest{IncidentId: demo.IncidentID})
	if err != nil || ans.GetAnswer().GetStatus() != impactv1.Status_AFFECTED {
		t.Fatalf("GetMyStatus: %v %v", ans, err)
	}
	if code, _, body := e.rest("GET", e.Addrs.HTTP, "/v1/incidents/"+demo.IncidentID+"/status", patientTk, ""); code != 200 {
		t.Fatalf("REST status: %d %s", code, body)
	}
	// An unknown incident: a store error (not found) to count.
	if _, err := status.GetMyStatus(testclient.WithToken(context.Background(), patientTk), &impactv1.GetMyStatusRequest{IncidentId: "no-such-incident"}); err == nil {
		t.Fatal("unknown incident answered")
	}
	// Health checks, which must leave no trace.
	if _, err := healthpb.NewHealthClient(e.public).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, _, _ := e.rest("GET", e.Addrs.HTTP, p, "", ""); code != 200 {
			t.Fatalf("%s: %d", p, code)
		}
	}
	// /metrics on the ops listener only.
	if code, _, body := e.rest("GET", e.Addrs.AdminHTTP, "/metrics", "", ""); code != 200 || string(body) != "metrics here\n" {
		t.Fatalf("ops /metrics: %d %q", code, body)
	}
	if code, _, _ := e.rest("GET", e.Addrs.HTTP, "/metrics", "", ""); code == 200 {
		t.Fatal("patient listener serves /metrics")
	}

	got := spans.GetSpans().Snapshots()
	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range got {
		byName[s.Name()] = append(byName[s.Name()], s)
	}
	t.Run("spans", func(t *testing.T) {
		for _, name := range []string{
			"impact.v1.NoticeService/ClaimNotice", "impact.v1.StatusService/GetMyStatus",
			"impact.v1.SnapshotService/PublishSnapshot", "store.Read", "store.ClaimPin", "store.Publish", "GET /v1/",
		} {
			if len(byName[name]) == 0 {
				t.Errorf("no span %q; have %v", name, keys(byName))
			}
		}
		for _, s := range got {
			if strings.Contains(s.Name(), "grpc.health") || spanAttr(s, "rpc.service") == "grpc.health.v1.Health" ||
				strings.Contains(spanAttr(s, "url.path"), "healthz") || strings.Contains(spanAttr(s, "url.path"), "readyz") ||
				strings.Contains(spanAttr(s, "url.path"), "metrics") || s.Name() == "store.Ping" {
				t.Errorf("health check traced: %s %v", s.Name(), s.Attributes())
			}
		}
		// The REST call is one trace: HTTP server span -> gateway client
		// span -> gRPC server span -> store spans.
		var http sdktrace.ReadOnlySpan
		for _, s := range byName["GET /v1/"] {
			if spanAttr(s, "url.path") == "/v1/incidents/"+demo.IncidentID+"/status" {
				http = s
			}
		}
		if http == nil {
			t.Fatal("no HTTP span for the REST status read")
		}
		var client, server sdktrace.ReadOnlySpan
		for _, s := range got {
			if s.Parent().SpanID() == http.SpanContext().SpanID() && s.SpanKind() == trace.SpanKindClient {
				client = s
			}
		}
		if client == nil {
			t.Fatal("no gateway client span under the HTTP span")
		}
		for _, s := range got {
			if s.Parent().SpanID() == client.SpanContext().SpanID() && s.SpanKind() == trace.SpanKindServer {
				server = s
			}
		}
		if server == nil || server.Name() != "impact.v1.StatusService/GetMyStatus" {
			t.Fatalf("gRPC server span under the gateway's client span: %v", server)
		}
		var read sdktrace.ReadOnlySpan
		for _, s := range got {
			if s.Name() == "store.Read" && s.Parent().SpanID() == server.SpanContext().SpanID() {
				read = s
			}
		}
		if read == nil {
			t.Fatal("no store.Read span under the gRPC server span")
		}
		if spanAttr(read, telemetry.AttrIncident) != demo.IncidentID || spanAttr(read, telemetry.AttrVersion) != "1" {
			t.Errorf("store.Read attributes: %v", read.Attributes())
		}
		if spanAttr(server, "rpc.response.status_code") != "OK" {
			t.Errorf("gRPC server span attributes: %v", server.Attributes())
		}
	})

	rm, points := collect(t, reader)
	t.Run("metrics", func(t *testing.T) {
		checks := []struct {
			metric string
			attrs  []attribute.KeyValue
			min    float64
		}{
			{telemetry.MetricAnswers, []attribute.KeyValue{telemetry.AttrStatus.String("affected"), telemetry.AttrUpdatePending.Bool(false), telemetry.AttrIncident.String(demo.IncidentID)}, 2},
			{telemetry.MetricClaims, []attribute.KeyValue{telemetry.AttrAction.String("send")}, 1},
			{telemetry.MetricPublishDuration, []attribute.KeyValue{telemetry.AttrOutcome.String("ok")}, 1},
			{telemetry.MetricPublishEntries, []attribute.KeyValue{telemetry.AttrIncident.String(demo.IncidentID)}, 1},
			{telemetry.MetricVisibleVersion, []attribute.KeyValue{telemetry.AttrIncident.String(demo.IncidentID)}, 1},
			{telemetry.MetricCatalogLookups, []attribute.KeyValue{telemetry.AttrResult.String("hit")}, 1},
			{telemetry.MetricCatalogLookups, []attribute.KeyValue{telemetry.AttrResult.String("miss")}, 1},
			{telemetry.MetricStoreDuration, []attribute.KeyValue{telemetry.AttrOperation.String("Read")}, 3},
			{telemetry.MetricStoreErrors, []attribute.KeyValue{telemetry.AttrOperation.String("Read"), telemetry.AttrErrorType.String("not_found")}, 1},
			{"rpc.server.call.duration", []attribute.KeyValue{attribute.String("rpc.method", "impact.v1.StatusService/GetMyStatus"), attribute.String("rpc.response.status_code", "OK")}, 2},
			{"rpc.server.call.duration", []attribute.KeyValue{attribute.String("rpc.method", "impact.v1.StatusService/GetMyStatus"), attribute.String("rpc.response.status_code", "NOT_FOUND")}, 1},
			{"rpc.client.call.duration", []attribute.KeyValue{attribute.String("rpc.method", "impact.v1.StatusService/GetMyStatus")}, 1},
			{"http.server.request.duration", nil, 1},
		}
		for _, c := range checks {
			v, ok := find(points, c.metric, c.attrs...)
			if !ok || v < c.min {
				t.Errorf("%s%v = %v (found %v), want >= %v", c.metric, c.attrs, v, ok, c.min)
			}
		}
		if _, ok := find(points, "rpc.server.call.duration", attribute.String("rpc.service", "grpc.health.v1.Health")); ok {
			t.Error("health checks measured")
		}
		for _, p := range points {
			if m, _ := p.attrs.Value("rpc.method"); strings.Contains(m.Emit(), "grpc.health") {
				t.Errorf("health check measured: %s %v", p.metric, p.attrs.ToSlice())
			}
		}
	})

	t.Run("privacy", func(t *testing.T) {
		secrets := map[string]string{"subject id": subject, "token": patientTk, "admin token": e.adminTk, "idempotency key": idem,
			"notice subject": notice.GetSubject()}
		if sig := patientTk[strings.LastIndexByte(patientTk, '.')+1:]; len(sig) > 16 {
			secrets["token signature"] = sig
		}
		for i, line := range strings.Split(notice.GetBody(), "\n") {
			if line = strings.TrimSpace(line); len(line) >= 16 {
				secrets[fmt.Sprintf("notice body line %d", i)] = line
			}
		}
		check := func(where, s string) {
			for what, secret := range secrets {
				if secret != "" && strings.Contains(s, secret) {
					t.Errorf("%s holds the %s", where, what)
				}
			}
		}
		kvs := func(where string, attrs []attribute.KeyValue) {
			for _, kv := range attrs {
				check(where+" attribute "+string(kv.Key), string(kv.Key)+"="+kv.Value.Emit())
			}
		}
		for _, s := range got {
			where := "span " + s.Name()
			check(where, s.Name())
			check(where+" status", s.Status().Description)
			kvs(where, s.Attributes())
			kvs(where+" resource", s.Resource().Attributes())
			for _, ev := range s.Events() {
				check(where+" event", ev.Name)
				kvs(where+" event "+ev.Name, ev.Attributes)
			}
			for _, l := range s.Links() {
				kvs(where+" link", l.Attributes)
			}
		}
		kvs("metric resource", rm.Resource.Attributes())
		for _, p := range points {
			check("metric name", p.metric)
			kvs("metric "+p.metric, p.attrs.ToSlice())
		}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				check("metric description", m.Description)
			}
		}
		check("server logs", e.logs.String())
	})
	if !strings.Contains(e.logs.String(), `"trace_id"`) {
		t.Error("no log record carries a trace id")
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
