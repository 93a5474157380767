package server

import (
	"context"
	"net"
	"net/http"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
)

// Telemetry wiring. With Deps.Telemetry nil every helper here returns
// nothing and the servers run uninstrumented.

// traced reports whether a gRPC method is traced and measured: health
// checks and reflection are not.
func traced(fullMethod string) bool {
	return !strings.HasPrefix(fullMethod, "/grpc.health.v1.") && !strings.HasPrefix(fullMethod, "/grpc.reflection.")
}

// tracedPath reports whether an HTTP request is traced: probes and metric
// scrapes are not.
func tracedPath(r *http.Request) bool {
	switch r.URL.Path {
	case "/healthz", "/readyz", "/metrics":
		return false
	}
	return true
}

// fromLoopback reports whether a call comes from this host (the gateway).
func fromLoopback(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return false
	}
	if tcp, ok := p.Addr.(*net.TCPAddr); ok { // every gRPC call: no string round trip
		return tcp.IP.IsLoopback()
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// grpcTelemetry returns the server option instrumenting one gRPC server:
// the otelgrpc stats handler (spans and rpc.server.call.duration by method
// and rpc.response.status_code). On the patient listener, trace context
// sent by clients is not trusted (a new root span, linked to the caller's),
// except from loopback, where the gateway calls from.
func (s *Server) grpcTelemetry(admin bool) grpc.ServerOption {
	t := s.deps.Telemetry
	if t == nil {
		return grpc.EmptyServerOption{}
	}
	opts := []otelgrpc.Option{
		otelgrpc.WithTracerProvider(t.TracerProvider()),
		otelgrpc.WithMeterProvider(t.MeterProvider()),
		otelgrpc.WithPropagators(t.Propagator()),
		otelgrpc.WithFilter(func(i *stats.RPCTagInfo) bool { return traced(i.FullMethodName) }),
	}
	if !admin {
		opts = append(opts, otelgrpc.WithPublicEndpointFn(func(ctx context.Context, _ *stats.RPCTagInfo) bool {
			return !fromLoopback(ctx)
		}))
	}
	return grpc.StatsHandler(otelgrpc.NewServerHandler(opts...))
}

// gatewayTelemetry returns the dial option instrumenting the gateway's
// client connection, so that a REST request's trace continues into the
// gRPC server.
func (s *Server) gatewayTelemetry() grpc.DialOption {
	t := s.deps.Telemetry
	if t == nil {
		return grpc.EmptyDialOption{}
	}
	return grpc.WithStatsHandler(otelgrpc.NewClientHandler(
		otelgrpc.WithTracerProvider(t.TracerProvider()),
		otelgrpc.WithMeterProvider(t.MeterProvider()),
		otelgrpc.WithPropagators(t.Propagator()),
	))
}

// httpTelemetry wraps a REST listener's handler with otelhttp (spans and
// http.server.request.duration), leaving /healthz, /readyz and /metrics
// out. The patient listener does not trust callers' trace context.
func (s *Server) httpTelemetry(h http.Handler, admin bool) http.Handler {
	t := s.deps.Telemetry
	if t == nil {
		return h
	}
	name := "impact.http.patient"
	opts := []otelhttp.Option{
		otelhttp.WithTracerProvider(t.TracerProvider()),
		otelhttp.WithMeterProvider(t.MeterProvider()),
		otelhttp.WithPropagators(t.Propagator()),
		otelhttp.WithFilter(tracedPath),
	}
	if admin {
		name = "impact.http.ops"
	} else {
		opts = append(opts, otelhttp.WithPublicEndpointFn(func(*http.Request) bool { return true }))
	}
	return otelhttp.NewHandler(h, name, opts...)
}

// mountMetrics serves /metrics (Prometheus) on the ops REST listener.
func (s *Server) mountMetrics(mux *http.ServeMux, admin bool) {
	if !admin || s.deps.Telemetry == nil {
		return
	}
	mux.Handle("GET /metrics", s.deps.Telemetry.MetricsHandler())
}

// observe registers the metrics read at collection time: each incident's
// visible version and the catalog's hits and misses. It returns a function
// that unregisters them.
func (s *Server) observe() (func(), error) {
	m := s.deps.Telemetry.Metrics()
	var stops []func() error
	stop := func() {
		for _, f := range stops {
			_ = f()
		}
	}
	f, err := m.ObserveIncidents(s.deps.Store)
	if err != nil {
		return nil, err
	}
	stops = append(stops, f)
	if s.deps.Catalog != nil {
		if f, err = m.ObserveCatalog(s.deps.Catalog); err != nil {
			stop()
			return nil, err
		}
		stops = append(stops, f)
	}
	return stop, nil
}

// beginDrain turns readiness (grpc.health.v1 and /readyz) to NOT_SERVING
// for good, before any listener closes: load balancers stop sending new
// work while calls in flight finish.
func (s *Server) beginDrain() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setServingLocked(false)
	s.draining = true
}
