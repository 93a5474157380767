package server

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Message size limits of a call, the same whether it comes over a listener
// or in process from a gateway.
const (
	// serverMaxRecvMsgSize is the largest request a gRPC server accepts.
	serverMaxRecvMsgSize = 4 << 20
	// gatewayMaxRecvMsgSize is the largest answer a gateway accepts: a
	// practice's check of 10,000 ids answers up to a few MB.
	gatewayMaxRecvMsgSize = 32 << 20
)

// side is the gRPC server of one side (patient or ops) and the in-process
// connection of that side's REST gateway: a service registered on it is
// served by both, behind the same chain. The gateway can reach exactly
// what the side's gRPC listener serves.
type side struct {
	*grpc.Server
	inproc *inprocConn
}

// RegisterService registers a service on the side's gRPC server and on its
// in-process connection.
func (s *side) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.Server.RegisterService(desc, impl)
	s.inproc.register(desc, impl)
}

// inprocAddr is the address of both ends of an in-process call.
type inprocAddr struct{}

func (inprocAddr) Network() string { return "inproc" }
func (inprocAddr) String() string  { return "inproc" }

// inprocPeer is the peer of every in-process call: the side's own gateway.
// Shared, never written.
var inprocPeer = &peer.Peer{Addr: inprocAddr{}, LocalAddr: inprocAddr{}}

// fromGateway reports whether a call is an in-process call from a REST
// gateway of this server.
func fromGateway(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return false
	}
	_, ok = p.Addr.(inprocAddr)
	return ok
}

// inprocMethod is one unary method of a registered service.
type inprocMethod struct {
	impl    any
	handler func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error)
}

// inprocConn is a grpc.ClientConnInterface that calls the services of one
// side in process, with no socket, HTTP/2 or TLS, and everything else a
// call over the side's listener gets:
//
//   - the side's chain (callChain): its stats handler (telemetry) and its
//     unary interceptors (recovery, logging, error boundary, deadline, rate
//     limits, authentication, scopes, validation), the very ones its gRPC
//     server runs;
//   - the caller's outgoing metadata as the handler's incoming metadata
//     (validated as a gRPC client validates it), and no outgoing metadata
//     of the caller in the handler's context;
//   - the peer inprocPeer (fromGateway), a grpc.ServerTransportStream for
//     grpc.SetHeader, SendHeader and SetTrailer, whose metadata fills the
//     caller's grpc.Header and grpc.Trailer call options;
//   - the caller's deadline and cancellation (the handler's context is the
//     caller's); when the caller's context ends first, the caller gets
//     CANCELLED or DEADLINE_EXCEEDED as a gRPC client would, once the
//     handler returns (handlers honour their context);
//   - messages of their own: the handler gets a deep copy of the request,
//     the caller a deep copy of the answer (copyMessage), with the size
//     limits of the listener (serverMaxRecvMsgSize) and of the caller
//     (gatewayMaxRecvMsgSize, or grpc.MaxCallRecvMsgSize) and the codes and
//     texts a gRPC connection gives when one is exceeded;
//   - status errors unchanged, other errors as a gRPC server sends them
//     (context errors as their codes, the rest UNKNOWN).
//
// The client side optionally runs a client stats handler (the gateway's
// telemetry) around the call, as a grpc.ClientConn would.
//
// Streaming methods are not served: no REST route maps to one, so NewStream
// answers UNIMPLEMENTED.
type inprocConn struct {
	methods     map[string]inprocMethod // by full method name
	interceptor grpc.UnaryServerInterceptor
	serverStats stats.Handler // nil: none
	clientStats stats.Handler // nil: none
	maxRecv     int           // largest answer the caller accepts
}

var _ grpc.ClientConnInterface = (*inprocConn)(nil)

func newInprocConn(chain callChain, clientStats stats.Handler) *inprocConn {
	return &inprocConn{
		methods:     map[string]inprocMethod{},
		interceptor: chainUnary(chain.unary),
		serverStats: chain.stats,
		clientStats: clientStats,
		maxRecv:     gatewayMaxRecvMsgSize,
	}
}

// register adds the unary methods of a service. Registration happens
// before any call (New), so the map is read-only while serving.
func (c *inprocConn) register(desc *grpc.ServiceDesc, impl any) {
	for _, m := range desc.Methods {
		c.methods["/"+desc.ServiceName+"/"+m.MethodName] = inprocMethod{impl: impl, handler: m.Handler}
	}
}

// chainUnary makes one interceptor of a list, in the order and the way
// grpc.ChainUnaryInterceptor runs them on a server.
func chainUnary(list []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	switch len(list) {
	case 0:
		return nil
	case 1:
		return list[0]
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return list[0](ctx, req, info, chainedHandler(list, 0, info, handler))
	}
}

func chainedHandler(list []grpc.UnaryServerInterceptor, i int, info *grpc.UnaryServerInfo, final grpc.UnaryHandler) grpc.UnaryHandler {
	if i == len(list)-1 {
		return final
	}
	return func(ctx context.Context, req any) (any, error) {
		return list[i+1](ctx, req, info, chainedHandler(list, i+1, info, final))
	}
}

// NewStream refuses: streaming methods are gRPC only.
func (c *inprocConn) NewStream(_ context.Context, _ *grpc.StreamDesc, method string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, grpcstatus.Errorf(codes.Unimplemented, "streaming method %s is not served in process", method)
}

// Invoke runs one unary call: client side (stats, metadata checks), server
// side (stats, the chain, the handler), then the answer back into reply.
func (c *inprocConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) (err error) {
	var (
		header, trailer *metadata.MD
		peerOut         *peer.Peer
		maxRecv         = c.maxRecv
		maxSend         = math.MaxInt32
	)
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			header = o.HeaderAddr
		case grpc.TrailerCallOption:
			trailer = o.TrailerAddr
		case grpc.PeerCallOption:
			peerOut = o.PeerAddr
		case grpc.MaxRecvMsgSizeCallOption:
			maxRecv = o.MaxRecvMsgSize
		case grpc.MaxSendMsgSizeCallOption:
			maxSend = o.MaxSendMsgSize
		}
	}
	// Client side, as grpc.ClientConn.Invoke: the caller's metadata must be
	// valid gRPC metadata; then the client stats handler's span and trace
	// context.
	md, _ := metadata.FromOutgoingContext(ctx)
	if err := validateMD(md); err != nil {
		return grpcstatus.Error(codes.Internal, err.Error())
	}
	if ch := c.clientStats; ch != nil {
		ctx = ch.TagRPC(ctx, &stats.RPCTagInfo{FullMethodName: method})
		begin := &stats.Begin{Client: true, BeginTime: time.Now()}
		ch.HandleRPC(ctx, begin)
		md, _ = metadata.FromOutgoingContext(ctx) // with the trace context TagRPC added
		ch.HandleRPC(ctx, &stats.OutHeader{Client: true, FullMethod: method, Header: md, RemoteAddr: inprocAddr{}, LocalAddr: inprocAddr{}})
		defer func() {
			ch.HandleRPC(ctx, &stats.End{Client: true, BeginTime: begin.BeginTime, EndTime: time.Now(), Error: err})
		}()
	}
	if peerOut != nil {
		*peerOut = *inprocPeer
	}

	req, ok := args.(proto.Message)
	if !ok {
		return grpcstatus.Errorf(codes.Internal, "grpc: error while marshaling: message is %T, not a proto.Message", args)
	}
	size := proto.Size(req)
	if size > maxSend {
		return grpcstatus.Errorf(codes.ResourceExhausted, "grpc: trying to send message larger than max (%d vs. %d)", size, maxSend)
	}

	st := &inprocStream{method: method}
	resp, serr := c.serve(ctx, st, md, req, size)

	if header != nil {
		*header = st.headerMD()
	}
	if trailer != nil {
		*trailer = st.trailerMD()
	}
	if ctx.Err() != nil { // the caller gave up first: what its client would say
		return grpcstatus.FromContextError(ctx.Err()).Err()
	}
	if serr != nil {
		return serr
	}
	return answer(resp, reply, maxRecv)
}

// serve is the server side of a call, as a gRPC server runs it: stats
// handler, then the method's handler, which decodes the request (its size
// checked first) and runs the chain. The returned error is the status the
// server would send.
func (c *inprocConn) serve(ctx context.Context, st *inprocStream, md metadata.MD, req proto.Message, size int) (resp any, err error) {
	// A server's context: the caller's deadline, cancellation and values,
	// the metadata as incoming, none outgoing, the peer, the stream.
	ctx = metadata.NewOutgoingContext(metadata.NewIncomingContext(ctx, md), nil)
	ctx = peer.NewContext(ctx, inprocPeer)
	if sh := c.serverStats; sh != nil {
		ctx = sh.TagRPC(ctx, &stats.RPCTagInfo{FullMethodName: st.method})
		sh.HandleRPC(ctx, &stats.InHeader{FullMethod: st.method, Header: md, RemoteAddr: inprocAddr{}, LocalAddr: inprocAddr{}})
		begin := &stats.Begin{BeginTime: time.Now()}
		sh.HandleRPC(ctx, begin)
		defer func() {
			sh.HandleRPC(ctx, &stats.End{BeginTime: begin.BeginTime, EndTime: time.Now(), Error: err})
		}()
	}
	ctx = grpc.NewContextWithServerTransportStream(ctx, st)

	m, ok := c.methods[st.method]
	if !ok {
		return nil, unknownMethod(st.method)
	}
	dec := func(v any) error {
		if size > serverMaxRecvMsgSize {
			return grpcstatus.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", size, serverMaxRecvMsgSize)
		}
		if err := copyMessage(v, req); err != nil {
			return grpcstatus.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
		}
		return nil
	}
	resp, err = m.handler(m.impl, ctx, dec, c.interceptor)
	if err != nil {
		if _, ok := grpcstatus.FromError(err); !ok {
			err = grpcstatus.FromContextError(err).Err()
		}
		return nil, err
	}
	return resp, nil
}

// answer copies the handler's answer into the caller's reply, with the
// caller's size limit.
func answer(resp, reply any, maxRecv int) error {
	out, ok := resp.(proto.Message)
	if !ok {
		return grpcstatus.Errorf(codes.Internal, "grpc: error while marshaling: message is %T, not a proto.Message", resp)
	}
	if size := proto.Size(out); size > maxRecv {
		return grpcstatus.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", size, maxRecv)
	}
	if err := copyMessage(reply, out); err != nil {
		return grpcstatus.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
	}
	return nil
}

// copyMessage makes dst a deep copy of src, so that the two sides of a call
// share no message: the handler cannot change the gateway's request, nor
// anything the handler keeps change the gateway's answer. A deep copy
// (proto.Merge into the reset message) costs a fraction of marshalling and
// unmarshalling (BenchmarkInprocCopy).
func copyMessage(dst any, src proto.Message) error {
	d, ok := dst.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a proto.Message", dst)
	}
	if d.ProtoReflect().Descriptor() != src.ProtoReflect().Descriptor() {
		return fmt.Errorf("%s is not a %s", d.ProtoReflect().Descriptor().FullName(), src.ProtoReflect().Descriptor().FullName())
	}
	proto.Reset(d)
	proto.Merge(d, src)
	return nil
}

// unknownMethod is a gRPC server's answer to a method it does not serve.
func unknownMethod(fullMethod string) error {
	service, method, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	return grpcstatus.Errorf(codes.Unimplemented, "unknown method %v for service %v", method, service)
}

// validateMD checks metadata as a gRPC client does before sending it:
// keys in [0-9a-z-_.], values printable ASCII except for -bin keys.
func validateMD(md metadata.MD) error {
	for k, vs := range md {
		if k == "" {
			return fmt.Errorf("there is an empty key in the header")
		}
		if k[0] == ':' {
			continue
		}
		for i := 0; i < len(k); i++ {
			r := k[i]
			if !(r >= 'a' && r <= 'z') && !(r >= '0' && r <= '9') && r != '.' && r != '-' && r != '_' {
				return fmt.Errorf("header key %q contains illegal characters not in [0-9a-z-_.]", k)
			}
		}
		if strings.HasSuffix(k, "-bin") {
			continue
		}
		for _, v := range vs {
			for i := 0; i < len(v); i++ {
				if v[i] < 0x20 || v[i] > 0x7E {
					return fmt.Errorf("header key %q contains value with non-printable ASCII characters", k)
				}
			}
		}
	}
	return nil
}

// inprocStream is the grpc.ServerTransportStream of an in-process call:
// it collects what the handler sets with grpc.SetHeader, SendHeader and
// SetTrailer, with a gRPC server stream's rules (valid metadata, no header
// after it was sent).
type inprocStream struct {
	method string

	mu         sync.Mutex
	header     metadata.MD
	trailer    metadata.MD
	headerSent bool
}

var _ grpc.ServerTransportStream = (*inprocStream)(nil)

func (s *inprocStream) Method() string { return s.method }

func (s *inprocStream) SetHeader(md metadata.MD) error {
	if md.Len() == 0 {
		return nil
	}
	return s.addHeader(md, false)
}

func (s *inprocStream) SendHeader(md metadata.MD) error { return s.addHeader(md, true) }

// addHeader joins md to the header, refused once the header was sent;
// send marks it sent.
func (s *inprocStream) addHeader(md metadata.MD, send bool) error {
	if err := validateMD(md); err != nil {
		return grpcstatus.Error(codes.Internal, err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.headerSent {
		return grpcstatus.Error(codes.Internal, "transport: SendHeader called multiple times")
	}
	s.header = metadata.Join(s.header, md)
	if send {
		s.headerSent = true
	}
	return nil
}

func (s *inprocStream) SetTrailer(md metadata.MD) error {
	if md.Len() == 0 {
		return nil
	}
	if err := validateMD(md); err != nil {
		return grpcstatus.Error(codes.Internal, err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trailer = metadata.Join(s.trailer, md)
	return nil
}

// headerMD and trailerMD are what the caller's grpc.Header and grpc.Trailer
// get: copies, so that a handler still holding the stream changes nothing.
func (s *inprocStream) headerMD() metadata.MD {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.headerSent = true
	return copyMD(s.header)
}

func (s *inprocStream) trailerMD() metadata.MD {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copyMD(s.trailer)
}

func copyMD(md metadata.MD) metadata.MD {
	if len(md) == 0 {
		return nil
	}
	return md.Copy()
}
