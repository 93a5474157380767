package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/gen/openapiv2"
)

// dialTarget turns a bound address into one the gateway can dial: an
// unspecified host (":9090", "[::]:9090") becomes loopback.
func dialTarget(l net.Listener) string {
	addr := l.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(addr.Port))
}

// httpServer builds the REST listener: grpc-gateway dialing the gRPC
// listener of the same side, plus /healthz and /readyz.
func (s *Server) httpServer(ctx context.Context, admin bool) (*http.Server, error) {
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}),
		runtime.WithErrorHandler(errorHandler),
		runtime.WithIncomingHeaderMatcher(headerMatcher),
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithHealthzEndpoint(nil), // replaced below by our own, which knows readiness
		runtime.WithMetadata(s.guard.addrs.gatewayMetadata),
	)
	target := dialTarget(s.publicLis)
	if admin {
		target = dialTarget(s.adminLis)
	}
	conn, err := grpc.NewClient(target, s.gatewayTelemetry(), grpc.WithTransportCredentials(s.tls.gatewayCreds(admin)))
	if err != nil {
		return nil, fmt.Errorf("gateway dial %s: %w", target, err)
	}
	if admin {
		err = impactv1.RegisterSnapshotServiceHandler(ctx, gw, conn)
		if err == nil {
			err = impactv1.RegisterNoticeServiceHandler(ctx, gw, conn)
		}
		if err == nil {
			err = impactv1.RegisterSubjectServiceHandler(ctx, gw, conn)
		}
	} else {
		err = impactv1.RegisterStatusServiceHandler(ctx, gw, conn)
	}
	if err != nil {
		_ = conn.Close()
		return nil, err
	}

	mux := http.NewServeMux()
	mux.Handle("/v1/", gw)
	if !admin && s.deps.Web != nil {
		mux.Handle("/", s.deps.Web)
	}
	doc := openapiv2.Patient
	if admin {
		doc = openapiv2.All
	}
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	})
	s.mountMetrics(mux, admin)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !s.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	srv := &http.Server{
		Handler:           s.httpTelemetry(securityHeaders(s.wrapHTTP(mux, admin)), admin),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          httpErrorLog(s.log),
	}
	srv.RegisterOnShutdown(func() { _ = conn.Close() })
	return srv, nil
}

// headerMatcher forwards no HTTP header as gRPC metadata: grpc-gateway
// already forwards Authorization as "authorization", the only one the API
// reads, and nothing else from the client should reach the services.
func headerMatcher(string) (string, bool) { return "", false }

// securityHeaders marks every answer as private and not sniffable: status
// answers are health data.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

type errorBody struct {
	Code    int    `json:"code"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

// errorHandler writes a fixed-shape error: the HTTP status of the gRPC code
// and the (already sanitised) status message, never details or internals.
// Every authentication failure is the same 401.
func errorHandler(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, _ *http.Request, err error) {
	st := status.Convert(err)
	code := st.Code()
	msg := st.Message()
	switch code {
	case codes.Unauthenticated:
		msg = msgUnauthenticated
		w.Header().Set("WWW-Authenticate", `Bearer realm="impact"`)
	case codes.Internal, codes.Unknown:
		code, msg = codes.Internal, msgInternal
	case codes.Unavailable:
		w.Header().Set("Retry-After", "1")
	case codes.ResourceExhausted:
		w.Header().Set("Retry-After", retryAfterSeconds(st))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(runtime.HTTPStatusFromCode(code))
	_ = json.NewEncoder(w).Encode(errorBody{Code: int(code), Status: code.String(), Message: msg})
}
