package server

import (
	"context"
	"net/http"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
)

// restMarshaler is the REST listeners' JSON: grpc-gateway's protojson
// marshaler (restJSON), except that a status answer, the body of every
// patient read, is written by appendAnswerJSON, the same bytes without
// protojson's reflection (29 allocations and ~8 KB less per read; see the
// README's Performance section for what it did and did not change).
var restMarshaler = &answerMarshaler{JSONPb: runtime.JSONPb{
	MarshalOptions:   restJSON,
	UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
}}

type answerMarshaler struct{ runtime.JSONPb }

// Marshal writes a status answer with appendAnswerJSON, anything else (and
// an answer protojson would refuse, for protojson's own error) as JSONPb.
func (m *answerMarshaler) Marshal(v any) ([]byte, error) {
	if a, ok := v.(*impactv1.StatusAnswer); ok && a != nil {
		if b, err := appendAnswerJSON(make([]byte, 0, len(a.GetPadding())+1024), a); err == nil {
			return b, nil
		}
	}
	return m.JSONPb.Marshal(v)
}

// httpServer builds the REST listener: grpc-gateway calling the services of
// the same side in process, through the chain of that side's gRPC listener
// (side.inproc), plus /healthz and /readyz.
func (s *Server) httpServer(ctx context.Context, admin bool) (*http.Server, error) {
	title, services := "Impact patient API", patientServices
	if admin {
		title, services = "Impact ops API", opsServices
	}
	doc, err := buildAPIDoc(title, services)
	if err != nil {
		return nil, err
	}
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, restMarshaler),
		runtime.WithErrorHandler(s.restErrorHandler(admin)),
		runtime.WithRoutingErrorHandler(restRoutingErrorHandler(doc)),
		// A form POST to a GET route is a wrong method (405), not the GET.
		runtime.WithDisablePathLengthFallback(),
		runtime.WithIncomingHeaderMatcher(headerMatcher),
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithHealthzEndpoint(nil), // replaced below by our own, which knows readiness
		runtime.WithMetadata(s.guard.addrs.gatewayMetadata),
	)
	sd := s.public
	if admin {
		sd = s.admin
	}
	conn := markGatewayCalls(sd.inproc)
	if admin {
		err = impactv1.RegisterSnapshotServiceHandlerClient(ctx, gw, impactv1.NewSnapshotServiceClient(conn))
		if err == nil {
			err = impactv1.RegisterNoticeServiceHandlerClient(ctx, gw, impactv1.NewNoticeServiceClient(conn))
		}
		if err == nil {
			err = impactv1.RegisterSubjectServiceHandlerClient(ctx, gw, impactv1.NewSubjectServiceClient(conn))
		}
		if err == nil && s.deps.Practice != nil {
			err = impactv1.RegisterPracticeStatsServiceHandlerClient(ctx, gw, impactv1.NewPracticeStatsServiceClient(conn))
		}
	} else {
		err = impactv1.RegisterStatusServiceHandlerClient(ctx, gw, impactv1.NewStatusServiceClient(conn))
		if err == nil && s.deps.Practice != nil {
			err = impactv1.RegisterPracticeServiceHandlerClient(ctx, gw, impactv1.NewPracticeServiceClient(conn))
		}
	}
	if err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	mux.Handle("/v1/", withCallMark(gw))
	if !admin && s.deps.Web != nil {
		mux.Handle("/", s.deps.Web)
	}
	// Each listener documents what it serves, and only that.
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc.json)
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
