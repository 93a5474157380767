package server

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultMaxBodyBytes caps a REST request body (the API's bodies are a few
// hundred bytes; uploads go over gRPC only).
const DefaultMaxBodyBytes = 64 << 10

// wrapHTTP adds the listener-level protections of a REST listener around
// h: the body size limit, HSTS when the listener serves TLS, and CORS on the
// patient listener.
func (s *Server) wrapHTTP(h http.Handler, admin bool) http.Handler {
	next := h
	h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := s.cfg.MaxBodyBytes
		if !admin && strings.HasSuffix(r.URL.Path, "/practice/patients:check") {
			limit = max(limit, MaxPracticeBodyBytes) // a batch of ids
		}
		if r.ContentLength > limit {
			writeStatus(w, http.StatusRequestEntityTooLarge,
				status.New(codes.InvalidArgument, fmt.Sprintf("request body larger than %d bytes", limit)))
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		next.ServeHTTP(w, r)
	})
	if !admin {
		h = s.cors.wrap(h)
	}
	if s.tls.httpTLS(admin) != nil {
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Strict-Transport-Security", hstsValue)
			inner.ServeHTTP(w, r)
		})
	}
	return h
}

// retryAfterSeconds is the Retry-After value (whole seconds, at least 1) of
// a status carrying a google.rpc.RetryInfo; "1" without one.
func retryAfterSeconds(st *status.Status) string {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			delay := ri.GetRetryDelay().AsDuration()
			secs := int64((delay + time.Second - 1) / time.Second)
			return strconv.FormatInt(max(secs, 1), 10)
		}
	}
	return "1"
}

// httpErrorLog routes net/http's own messages (TLS handshake failures,
// accept errors, recovered panics) to the structured log: handshake
// failures, which any scanner causes, at debug level; the rest as warnings.
func httpErrorLog(l *slog.Logger) *log.Logger {
	return log.New(httpLogWriter{l}, "", 0)
}

type httpLogWriter struct{ l *slog.Logger }

func (w httpLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if strings.Contains(msg, "TLS handshake error") {
		level = slog.LevelDebug
	}
	w.l.Log(context.Background(), level, "http server", "err", msg)
	return len(p), nil
}
