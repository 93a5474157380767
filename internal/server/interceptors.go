package server

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/pace"
)

// Authenticator verifies the Authorization header of a call.
type Authenticator interface {
	Authenticate(ctx context.Context, authorizationHeader string) (auth.Principal, error)
}

type principalKey struct{}

// principalFrom returns the authenticated caller; the auth interceptor
// guarantees one on every method that needs it.
func principalFrom(ctx context.Context) (auth.Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(auth.Principal)
	return p, ok
}

// policy says what a method needs: nothing (health, reflection), a patient
// token, or a token with a scope.
type policy struct {
	open    bool   // no token needed
	scope   string // required scope, if any
	patient bool   // patients only: practice tokens are refused
}

// policyFor returns the access rule of a full method name. Unknown methods of
// the Impact API are refused: a listener only serves what it registered, and
// anything new must be given a rule here.
func policyFor(fullMethod string) (policy, bool) {
	switch {
	case strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/"),
		strings.HasPrefix(fullMethod, "/grpc.reflection."):
		return policy{open: true}, true
	case strings.HasPrefix(fullMethod, "/impact.v1.StatusService/"):
		return policy{patient: true}, true
	case strings.HasPrefix(fullMethod, "/impact.v1.PracticeService/"):
		return policy{scope: auth.ScopePractice}, true
	case strings.HasPrefix(fullMethod, "/impact.v1.PracticeStatsService/"):
		return policy{scope: auth.ScopeAdmin}, true
	case strings.HasPrefix(fullMethod, "/impact.v1.SnapshotService/"):
		return policy{scope: auth.ScopeAdmin}, true
	case strings.HasPrefix(fullMethod, "/impact.v1.NoticeService/"):
		return policy{scope: auth.ScopeNotify}, true
	case strings.HasPrefix(fullMethod, "/impact.v1.SubjectService/"):
		return policy{scope: auth.ScopeAdmin}, true
	}
	return policy{}, false
}

// authorize authenticates the call and checks the method's scope.
func authorize(ctx context.Context, authn Authenticator, fullMethod string) (context.Context, error) {
	pol, ok := policyFor(fullMethod)
	if !ok {
		return nil, errPermissionDenied
	}
	if pol.open {
		return ctx, nil
	}
	var header string
	// One key, not a copy of the whole metadata (FromIncomingContext).
	if v := metadata.ValueFromIncomingContext(ctx, "authorization"); len(v) == 1 {
		header = v[0]
	}
	p, err := authn.Authenticate(ctx, header)
	if err != nil {
		return nil, err
	}
	if pol.scope != "" && !p.HasScope(pol.scope) || pol.patient && p.IsPractice() {
		return nil, errPermissionDenied
	}
	return context.WithValue(ctx, principalKey{}, p), nil
}

// interceptors holds the cross-cutting concerns of one listener, in order:
// recovery (outermost), logging, error mapping, deadline, admission
// (address rate limit, authentication, subject rate limit, validation:
// guard.go).
type interceptors struct {
	authn   Authenticator
	log     *slog.Logger
	verbose bool          // ops listener: keep error texts for operators
	timeout time.Duration // default deadline for unary calls
	guard   *guard        // rate limits (patient listener); nil: none
	// reads counts the patient listener's unary calls in flight, which
	// background work gives way to (package pace); nil: not counted.
	reads *pace.Pacer
}

func (ic *interceptors) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	ic.reads.Enter()
	defer ic.reads.Exit()
	start := time.Now()
	var cause error
	defer func() { ic.logCall(ctx, info.FullMethod, start, err, cause) }()
	defer ic.recover(info.FullMethod, &err) // runs before logCall
	if ic.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ic.timeout)
		defer cancel()
	}
	ctx, err = ic.admit(ctx, info.FullMethod, req)
	if err != nil {
		return nil, toStatus(err, ic.verbose)
	}
	resp, cause = handler(ctx, req)
	return resp, toStatus(cause, ic.verbose)
}

func (ic *interceptors) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	start := time.Now()
	var cause error
	defer func() { ic.logCall(ss.Context(), info.FullMethod, start, err, cause) }()
	defer ic.recover(info.FullMethod, &err) // runs before logCall
	ctx, err := ic.admit(ss.Context(), info.FullMethod, nil)
	if err != nil {
		return toStatus(err, ic.verbose)
	}
	cause = handler(srv, &wrappedStream{ServerStream: validatingStream{ss}, ctx: ctx})
	return toStatus(cause, ic.verbose)
}

// errPanic stands for a handler's panic: no rule matches it, so it is INTERNAL.
var errPanic = errors.New("panic in handler")

// recover turns a panic into a generic INTERNAL: the panic text and stack go
// to the log, never to the caller.
func (ic *interceptors) recover(method string, err *error) {
	if r := recover(); r != nil {
		ic.log.Error("panic in handler", "method", method, "panic", r, "stack", string(debug.Stack()))
		*err = toStatus(errPanic, ic.verbose)
	}
}

// logCall logs one call: method, code and duration, and for server-side
// failures the cause (domain and store errors never carry patient data).
// Never request content: no subject id, token or notice text.
func (ic *interceptors) logCall(ctx context.Context, method string, start time.Time, err, cause error) {
	if strings.HasPrefix(method, "/grpc.health.v1.Health/") {
		return
	}
	code := grpcstatus.Code(err)
	// Patient calls that the service answered are logged at debug: during a
	// traffic spike one info line per read costs about 5% of the CPU of a
	// read (measured with make load), and the rpc.server metrics count
	// them by method and code anyway. Ops calls stay at info.
	level := slog.LevelInfo
	switch {
	case code == codes.Internal || code == codes.Unavailable || code == codes.DataLoss:
		level = slog.LevelWarn
	case !ic.verbose:
		level = slog.LevelDebug
	}
	if !ic.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{slog.String("method", method), slog.String("code", code.String()),
		slog.Float64("ms", float64(time.Since(start).Microseconds())/1000)}
	if level == slog.LevelWarn && cause != nil {
		attrs = append(attrs, slog.String("cause", cause.Error()))
	}
	ic.log.LogAttrs(ctx, level, "rpc", attrs...)
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }
