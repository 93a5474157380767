package server

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
)

// REST answers that have no gRPC call behind them.
const (
	// msgBadREST answers a path, query or body value the gateway cannot
	// decode into the request message. It is fixed: the value (which may be
	// anything a client sent) and the decoder's text never reach the answer.
	msgBadREST          = "invalid request: a path, query or body value is not of the type the API documents (see /openapi.json)"
	msgNotFoundREST     = "not found"
	msgMethodNotAllowed = "method not allowed"
)

// restJSON encodes REST answers: proto field names, scalars and lists
// always present (0, false, "", []), and a message field that is not set
// (a timestamp never reached, such as notified_at) left out rather than
// written as null, which the OpenAPI documents do not allow.
var restJSON = protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}

// encodeStatus writes a gRPC status as the documented error body
// (google.rpc.Status): {"code", "message", "details"}, the details (ErrorInfo,
// BadRequest, RetryInfo, ...) as {"@type": ..., fields}.
func encodeStatus(st *status.Status) []byte {
	b, err := restJSON.Marshal(st.Proto())
	if err != nil { // a detail whose type is not linked in: keep code and message
		b, _ = restJSON.Marshal(&rpcstatus.Status{Code: st.Proto().GetCode(), Message: st.Message(), Details: []*anypb.Any{}})
	}
	return b
}

// writeStatus writes st with the HTTP status httpCode.
func writeStatus(w http.ResponseWriter, httpCode int, st *status.Status) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpCode)
	_, _ = w.Write(encodeStatus(st)) // #nosec G705 -- a JSON body (application/json; every answer carries nosniff), never HTML
}

// calledKey marks a REST request's context with whether the gateway reached
// the gRPC call: an error before it is the gateway's own (a value that does
// not decode), which gets msgBadREST, and only after authentication.
type calledKey struct{}

// withCallMark gives each REST request the mark markGatewayCalls sets.
func withCallMark(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), calledKey{}, new(atomic.Bool))))
	})
}

func noteCall(ctx context.Context) {
	if c, ok := ctx.Value(calledKey{}).(*atomic.Bool); ok {
		c.Store(true)
	}
}

// markGatewayCalls wraps the gateway's connection so that each call marks
// its request as having reached the gRPC call (the gateway's client
// interceptor).
func markGatewayCalls(cc grpc.ClientConnInterface) grpc.ClientConnInterface {
	return callMarkingConn{cc}
}

type callMarkingConn struct{ grpc.ClientConnInterface }

func (c callMarkingConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	noteCall(ctx)
	return c.ClientConnInterface.Invoke(ctx, method, args, reply, opts...)
}

func (c callMarkingConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	noteCall(ctx)
	return c.ClientConnInterface.NewStream(ctx, desc, method, opts...)
}

func gatewayCalled(ctx context.Context) bool {
	c, ok := ctx.Value(calledKey{}).(*atomic.Bool)
	return !ok || c.Load()
}

// restErrorHandler writes the error of a REST call in the documented shape
// with the HTTP status of its gRPC code. The gRPC status is already the
// sanitised one of the error boundary; every authentication failure is the
// same 401. An error raised by the gateway before the call (a path, query
// or body value that does not decode) is answered only after the caller is
// authenticated, as the call would have been, and with a fixed message.
func (s *Server) restErrorHandler(admin bool) runtime.ErrorHandlerFunc {
	return func(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
		if !gatewayCalled(ctx) {
			if aerr := s.authenticateREST(ctx, r, admin); aerr != nil {
				err = aerr
			} else {
				err = status.Error(codes.InvalidArgument, msgBadREST)
			}
		}
		st := status.Convert(err)
		code := st.Code()
		switch code {
		case codes.Unauthenticated:
			st = status.New(codes.Unauthenticated, msgUnauthenticated)
			w.Header().Set("WWW-Authenticate", `Bearer realm="impact"`)
		case codes.Internal, codes.Unknown:
			st = status.New(codes.Internal, msgInternal)
		case codes.Unavailable:
			w.Header().Set("Retry-After", "1")
		case codes.ResourceExhausted:
			w.Header().Set("Retry-After", retryAfterSeconds(st))
		}
		writeStatus(w, runtime.HTTPStatusFromCode(st.Code()), st)
	}
}

// authenticateREST runs, for a request the gateway refused before calling,
// the admission the call would have had: the address rate limit (patient
// listener), then the token and its scope for the method the path routes to.
func (s *Server) authenticateREST(ctx context.Context, r *http.Request, admin bool) error {
	method, ok := runtime.RPCMethod(ctx)
	if !ok {
		return nil // not routed to a method: nothing to authenticate against
	}
	if g := s.guard; !admin && g != nil && g.addr != nil {
		if err := g.allow(ctx, g.addr, "address", g.keys.Key("ip", addrKey(g.addrs.fromHTTP(r)))); err != nil {
			return toStatus(err, admin)
		}
	}
	md := metadata.MD{}
	for _, v := range r.Header.Values("Authorization") {
		md.Append("authorization", v)
	}
	if _, err := authorize(metadata.NewIncomingContext(ctx, md), s.deps.Authenticator, method); err != nil {
		return toStatus(err, admin)
	}
	return nil
}

// restRoutingErrorHandler answers a path no route of the listener matches
// (404) and a method its route does not take (405, with Allow listing the
// methods the listener's document gives the path).
func restRoutingErrorHandler(doc *apiDoc) runtime.RoutingErrorHandlerFunc {
	return func(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
		switch httpStatus {
		case http.StatusMethodNotAllowed:
			if allow := doc.allow(r.URL.Path); len(allow) > 0 {
				w.Header().Set("Allow", strings.Join(allow, ", "))
			}
			writeStatus(w, http.StatusMethodNotAllowed, status.New(codes.Unimplemented, msgMethodNotAllowed))
		case http.StatusNotFound:
			writeStatus(w, http.StatusNotFound, status.New(codes.NotFound, msgNotFoundREST))
		default:
			writeStatus(w, http.StatusBadRequest, status.New(codes.InvalidArgument, msgBadREST))
		}
	}
}
