package server_test

import (
	"context"
	"net"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/server"
	"github.com/impact-health/impact/internal/telemetry"
	"github.com/impact-health/impact/internal/testutil/impacttest"
	"github.com/impact-health/impact/internal/testutil/testclient"
)

// Subjects of the read-path benchmark's roster (demo.WriteRoster numbers
// its well-known subjects 1 and 2; 9,999,999 is never in a roster).
const (
	benchAffected    = "patient-0000001"
	benchNotified    = "patient-0000002" // under review, claimed before the reads
	benchNotAffected = "patient-9999999"
)

// BenchmarkGetMyStatus is the whole patient read path in process: a real
// impactd (internal/app's wiring through impacttest: embedded store, JWT
// verification with the dev keys, the interceptors, the status domain, the
// proto conversion) and a real gRPC client over loopback TCP, one cached
// token per subject, 16 calls in flight. "minimal" is the floor it is
// compared with: a bare grpc-go server returning the same answer, over the
// same client. "telemetry=on" adds what impactd always runs (otelgrpc, the
// instrumented store, the SDK meter provider behind /metrics, the tracer
// provider with no exporter, which records no spans); "telemetry=exported"
// records every span and hands it to an exporter, as an OTLP endpoint with
// the default sampler does; "telemetry=off" is the same server without any.
//
// Besides ns/op (wall time over both cores), it reports cpu-ns/op: the
// process's user+system CPU per read, client included, which moves less
// than wall time when other work shares the machine.
//
// It also reports gc-cpu-%: the garbage collector's share of that CPU (the
// runtime's estimate). IMPACT_BENCH_HEAP_MB=40 first allocates that many
// MB of pointer-free live heap, as an in-memory 2M-entry version would
// hold, to see the collector at production heap sizes (run it with GOGC=100,
// 200, 400: README, Performance).
//
//	go test -run '^$' -bench BenchmarkGetMyStatus -benchmem ./internal/server
func BenchmarkGetMyStatus(b *testing.B) {
	const incident = demo.IncidentID
	if mb, _ := strconv.Atoi(os.Getenv("IMPACT_BENCH_HEAP_MB")); mb > 0 {
		live := make([]byte, mb<<20)
		for i := range live { // touched, so that it is resident
			live[i] = byte(i)
		}
		defer runtime.KeepAlive(live)
	}
	var answer *impactv1.GetMyStatusResponse // the affected answer, for "minimal"
	for _, tel := range []telemetryMode{telemetryOff, telemetryOn, telemetryExported} {
		b.Run("telemetry="+string(tel), func(b *testing.B) {
			conn, tokens := benchServer(b, tel)
			client := impactv1.NewStatusServiceClient(conn)
			for _, sub := range []string{benchNotAffected, benchAffected, benchNotified} {
				b.Run(caseName(sub), func(b *testing.B) {
					ctx := testclient.WithToken(context.Background(), tokens[sub])
					req := &impactv1.GetMyStatusRequest{IncidentId: incident}
					resp, err := client.GetMyStatus(ctx, req)
					if err != nil {
						b.Fatal(err)
					}
					if sub == benchAffected {
						answer = resp
					}
					runParallelReads(b, func() error {
						_, err := client.GetMyStatus(ctx, req)
						return err
					})
				})
			}
		})
	}
	for _, otel := range []bool{false, true} {
		name := "minimal"
		if otel {
			name = "minimal+otelgrpc"
		}
		b.Run(name, func(b *testing.B) {
			if answer == nil { // only the minimal cases run
				conn, tokens := benchServer(b, telemetryOff)
				resp, err := impactv1.NewStatusServiceClient(conn).GetMyStatus(
					testclient.WithToken(context.Background(), tokens[benchAffected]), &impactv1.GetMyStatusRequest{IncidentId: incident})
				if err != nil {
					b.Fatal(err)
				}
				answer = resp
			}
			conn := minimalServer(b, answer, otel)
			client := impactv1.NewStatusServiceClient(conn)
			ctx := testclient.WithToken(context.Background(), "x")
			req := &impactv1.GetMyStatusRequest{IncidentId: incident}
			runParallelReads(b, func() error {
				_, err := client.GetMyStatus(ctx, req)
				return err
			})
		})
	}
}

func caseName(sub string) string {
	switch sub {
	case benchAffected:
		return "affected"
	case benchNotified:
		return "notified"
	}
	return "not_affected"
}

// runParallelReads runs read from 16 goroutines (8 per core on this
// machine) and reports the CPU the process spent per read.
func runParallelReads(b *testing.B, read func() error) {
	b.Helper()
	b.ReportAllocs()
	b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
	runtime.GC()
	gc0, cpu0 := readGC(), cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := read(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	gc1, cpu1 := readGC(), cpuTime()
	b.ReportMetric(float64((cpu1-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(1000*float64(gc1.cycles-gc0.cycles)/float64(b.N), "gc/1k-op")
	if busy := (gc1.busy - gc0.busy); busy > 0 {
		b.ReportMetric(100*(gc1.gc-gc0.gc)/busy, "gc-cpu-%")
	}
}

// gcStats are the runtime's counters of garbage collection: cycles, and
// its estimates of the CPU seconds spent collecting and busy in all, both
// without the marking done on otherwise idle processors.
type gcStats struct {
	cycles   uint64
	gc, busy float64
}

func readGC() gcStats {
	s := []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/cpu/classes/gc/total:cpu-seconds"},
		{Name: "/cpu/classes/gc/mark/idle:cpu-seconds"},
		{Name: "/cpu/classes/total:cpu-seconds"},
		{Name: "/cpu/classes/idle:cpu-seconds"},
	}
	metrics.Read(s)
	f := func(i int) float64 {
		if s[i].Value.Kind() == metrics.KindFloat64 {
			return s[i].Value.Float64()
		}
		return 0
	}
	var cycles uint64
	if s[0].Value.Kind() == metrics.KindUint64 {
		cycles = s[0].Value.Uint64()
	}
	idleMark := f(2)
	return gcStats{cycles: cycles, gc: f(1) - idleMark, busy: f(3) - f(4) - idleMark}
}

// benchServer starts an impactd with the demo incident (10,000 rows)
// published and benchNotified claimed, and returns a connection to its
// patient gRPC listener and a token per subject.
// telemetryMode is the telemetry a benchmarked impactd runs with.
type telemetryMode string

const (
	telemetryOff      telemetryMode = "off"      // none
	telemetryOn       telemetryMode = "on"       // impactd's with no OTLP endpoint: metrics, unrecorded spans
	telemetryExported telemetryMode = "exported" // every span recorded and handed to an exporter (the default sampler)
)

func benchServer(b *testing.B, tel telemetryMode) (*grpc.ClientConn, map[string]string) {
	b.Helper()
	opts := impacttest.Options{Config: server.Config{RequestTimeout: 5 * time.Second}}
	switch tel {
	case telemetryOn:
		opts.Telemetry = benchTelemetry(b)
	case telemetryExported:
		// As with an OTLP endpoint and the SDK's default sampler
		// (parent-based, always on), the exporter dropping what it gets.
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardSpans{}))
		b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		t, err := telemetry.New(telemetry.Providers{
			TracerProvider: tp,
			MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())),
		})
		if err != nil {
			b.Fatal(err)
		}
		opts.Telemetry = t
	}
	e := impacttest.Start(b, opts)
	e.WaitReady(b)
	admin := testclient.Dial(b, e.Addrs.AdminGRPC, nil)
	actx := testclient.WithToken(context.Background(), e.Token(b, "ops-bench", auth.ScopeAdmin, auth.ScopeNotify))
	snaps := impactv1.NewSnapshotServiceClient(admin)
	info, err := testclient.Upload(actx, snaps, demo.IncidentID, testclient.DemoSpec(b), testclient.DemoRoster(b, demo.RosterOptions{}), 64<<10)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := testclient.Publish(actx, snaps, demo.IncidentID, info.GetVersion(), 0); err != nil {
		b.Fatal(err)
	}
	if _, err := impactv1.NewNoticeServiceClient(admin).ClaimNotice(actx, &impactv1.ClaimNoticeRequest{
		IncidentId: demo.IncidentID, SubjectId: benchNotified, IdempotencyKey: "bench-wave:" + benchNotified,
	}); err != nil {
		b.Fatal(err)
	}
	tokens := map[string]string{}
	for _, sub := range []string{benchAffected, benchNotified, benchNotAffected} {
		tokens[sub] = e.Token(b, sub)
	}
	return testclient.Dial(b, e.Addrs.GRPC, nil), tokens
}

// benchTelemetry is impactd's own telemetry (telemetry.Setup), with
// nothing exported: no OTLP endpoint, Prometheus metrics kept in memory.
func benchTelemetry(b *testing.B) *telemetry.Telemetry {
	b.Helper()
	b.Setenv("OTEL_SDK_DISABLED", "true")
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "impactd-bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel
}

// discardSpans is a span exporter that drops what it is given.
type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }

// minimalStatus answers every GetMyStatus with one fixed answer: no
// interceptors, no authentication, no store (as make load's baseline).
type minimalStatus struct {
	impactv1.UnimplementedStatusServiceServer
	resp *impactv1.GetMyStatusResponse
}

func (m *minimalStatus) GetMyStatus(context.Context, *impactv1.GetMyStatusRequest) (*impactv1.GetMyStatusResponse, error) {
	return m.resp, nil
}

// minimalServer serves answer from a bare grpc-go server; with otel, the
// server has impactd's otelgrpc stats handler (impactd's providers, as
// benchServer makes them, and options), so that "minimal+otelgrpc" minus
// "minimal" is what the stats handler costs a call.
func minimalServer(b *testing.B, answer *impactv1.GetMyStatusResponse, otel bool) *grpc.ClientConn {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var opts []grpc.ServerOption
	if otel {
		tel := benchTelemetry(b)
		opts = append(opts, grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(tel.TracerProvider()),
			otelgrpc.WithMeterProvider(tel.MeterProvider()),
			otelgrpc.WithPropagators(tel.Propagator()),
			otelgrpc.WithFilter(func(i *stats.RPCTagInfo) bool { return !strings.HasPrefix(i.FullMethodName, "/grpc.health.v1.") }),
			otelgrpc.WithPublicEndpointFn(func(context.Context, *stats.RPCTagInfo) bool { return false }), // the client is on loopback
		)))
	}
	g := grpc.NewServer(opts...)
	impactv1.RegisterStatusServiceServer(g, &minimalStatus{resp: proto.CloneOf(answer)})
	go func() { _ = g.Serve(lis) }()
	b.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	return conn
}
