package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/ratelimit"
	"github.com/impact-health/impact/internal/testutil/domaintest"
	"github.com/impact-health/impact/internal/testutil/testclient"
)

// probeStatus is a StatusService whose GetMyStatus runs the test's fn: the
// unit tests of the in-process connection look at what a handler gets.
type probeStatus struct {
	impactv1.UnimplementedStatusServiceServer
	fn func(ctx context.Context, req *impactv1.GetMyStatusRequest) (*impactv1.GetMyStatusResponse, error)
}

func (p *probeStatus) GetMyStatus(ctx context.Context, req *impactv1.GetMyStatusRequest) (*impactv1.GetMyStatusResponse, error) {
	return p.fn(ctx, req)
}

// probeConn is an in-process connection to a probeStatus running fn behind
// the interceptors ics.
func probeConn(fn func(context.Context, *impactv1.GetMyStatusRequest) (*impactv1.GetMyStatusResponse, error), ics ...grpc.UnaryServerInterceptor) impactv1.StatusServiceClient {
	c := newInprocConn(callChain{unary: ics}, nil)
	c.register(&impactv1.StatusService_ServiceDesc, &probeStatus{fn: fn})
	return impactv1.NewStatusServiceClient(c)
}

var okAnswer = &impactv1.GetMyStatusResponse{Answer: &impactv1.StatusAnswer{IncidentId: "inc", Status: impactv1.Status_AFFECTED}}

// TestInprocMetadataAndPeer: the caller's outgoing metadata is the
// handler's incoming metadata, the handler has no outgoing metadata, its
// peer is the gateway's and its stream names the method.
func TestInprocMetadataAndPeer(t *testing.T) {
	var got struct {
		in, out metadata.MD
		outOK   bool
		gateway bool
		method  string
	}
	c := probeConn(func(ctx context.Context, _ *impactv1.GetMyStatusRequest) (*impactv1.GetMyStatusResponse, error) {
		got.in, _ = metadata.FromIncomingContext(ctx)
		got.out, got.outOK = metadata.FromOutgoingContext(ctx)
		got.gateway = fromGateway(ctx)
		got.method, _ = grpc.Method(ctx)
		return okAnswer, nil
	})
	ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs("authorization", "Bearer tok", mdGatewaySecret, "s3cret"))
	ctx = metadata.AppendToOutgoingContext(ctx, mdClientAddr, "198.51.100.7")
	var p peer.Peer
	if _, err := c.GetMyStatus(ctx, &impactv1.GetMyStatusRequest{IncidentId: "inc"}, grpc.Peer(&p)); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"authorization": "Bearer tok", mdGatewaySecret: "s3cret", mdClientAddr: "198.51.100.7"} {
		if vs := got.in.Get(k); len(vs) != 1 || vs[0] != v {
			t.Errorf("incoming %s = %q, want %q", k, vs, v)
		}
	}
	if got.outOK && len(got.out) != 0 {
		t.Errorf("the handler sees the caller's outgoing metadata: %v", got.out)
	}
	if !got.gateway || got.method != impactv1.StatusService_GetMyStatus_FullMethodName {
		t.Errorf("fromGateway %v, method %q", got.gateway, got.method)
	}
	if p.Addr == nil || p.Addr.Network() != "inproc" {
		t.Errorf("grpc.Peer: %v", p.Addr)
	}
	// A direct gRPC call's peer is not the gateway.
	if fromGateway(peer.NewContext(context.Background(), &peer.Peer{Addr: inprocAddrLike{}})) || fromGateway(context.Background()) {
		t.Error("fromGateway believes a peer that is not the in-process one")
	}
}

// inprocAddrLike looks like inprocAddr but is not it.
type inprocAddrLike struct{}

func (inprocAddrLike) Network() string { return "inproc" }
func (inprocAddrLike) String() string  { return "inproc" }

// TestInprocHeaderTrailer: grpc.SetHeader, SendHeader and SetTrailer reach
// the caller's grpc.Header and grpc.Trailer, on success and on error, with
// a server stream's rule that the header is sent once.
func TestInprocHeaderTrailer(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail=%v", fail), func(t *testing.T) {
			var lateErr error
			c := probeConn(func(ctx context.Context, _ *impactv1.GetMyStatusRequest) (*impactv1.GetMyStatusResponse, error) {
				if err := grpc.SetHeader(ctx, metadata.Pairs("h1", "a")); err != nil {
					return nil, err
				}
				if err := grpc.SendHeader(ctx, metadata.Pairs("h2", "b")); err != nil {
					return nil, err
				}
				lateErr = grpc.SetHeader(ctx, metadata.Pairs("h3", "c"))
				if err := grpc.SetTrailer(ctx, metadata.Pairs("t1", "x", "t1", "y")); err != nil {
					return nil, err
				}
				if fail {
					return nil, grpcstatus.Error(codes.NotFound, "nope")
				}
				return okAnswer, nil
			})
			var header, trailer metadata.MD
			_, err := c.GetMyStatus(context.Background(), &impactv1.GetMyStatusRequest{IncidentId: "inc"}, grpc.Header(&header), grpc.Trailer(&trailer))
			if fail != (grpcstatus.Code(err) == codes.NotFound) || !fail && err != nil {
				t.Fatalf("call: %v", err)
			}
			if !slices.Equal(header.Get("h1"), []string{"a"}) || !slices.Equal(header.Get("h2"), []string{"b"}) || header.Get("h3") != nil {
				t.Errorf("header %v", header)
			}
			if !slices.Equal(trailer.Get("t1"), []string{"x", "y"}) {
				t.Errorf("trailer %v", trailer)
			}
			if grpcstatus.Code(lateErr) != codes.Internal {
				t.Errorf("SetHeader after SendHeader: %v", lateErr)
			}
		})
	}
	// Metadata a gRPC server stream refuses is refused.
	c := probeConn(func(ctx context.Context, _ *impactv1.GetMyStatusRequest) (*impactv1.GetMyStatusResponse, error) {
		return nil, grpc.SetHeader(ctx, metadata.MD{"Bad Key": {"v"}})
	})
	if _, err := c.GetMyStatus(context.Background(), &impactv1.GetMyStatusRequest{}); grpcstatus.Code(err) != codes.Internal {
		t.Errorf("invalid header key: %v", err)
	}
}

// TestInprocDeadlineAndCancel: the handler has the caller's deadline, is
// cancelled with the caller, and the caller that gave up is told so as by
// a gRPC client, whatever the handler then answers.
func TestInprocDeadlineAndCancel(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		want := time.Now().Add(time.Hour)
		var got time.Time
		var ok bool
		c := probeConn(func(ctx context.Context, _ *impactv1.GetMyStatusRequest) (*impactv1.GetMyStatusResponse, error) {
			got, ok = ctx.Deadline()
			return okAnswer, nil
		})
		ctx, cancel := context.WithDeadline(context.Background(), want)
		defer cancel()
		if _, err := c.GetMyStatus(ctx, &impactv1.GetMyStatusRequest{}); err != nil {
			t.Fatal(err)
		}
		if !ok || !got.Equal(want) {
			t.Errorf("handler deadline %v %v, want %v", got, ok, want)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		started := make(chan struct{})
		var seen error
		c := probeConn(func(ctx context.Context, _ *impactv1.GetMyStatusRequest) (*impactv1.GetMyStatusResponse, error) {
			close(started)
			<-ctx.Done()
			seen = ctx.Err()
			return okAnswer, nil // too late: the caller is gone
		})
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-started; cancel() }()
		_, err := c.GetMyStatus(ctx, &impactv1.GetMyStatusRequest{})
		if grpcstatus.Code(err) != codes.Canceled || !errors.Is(seen, context.Canceled) {
			t.Fatalf("caller got %v, handler saw %v", err, seen)
		}
	})
	t.Run("expired", func(t *testing.T) {
		c := probeConn(func(ctx context.Context, _ *impactv1.GetMyStatusRequest) (*impactv1.GetMyStatusResponse, error) {
			<-ctx.Done()
			return nil, ctx.Err() // a raw context error, as a server converts it
		})
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		if _, err := c.GetMyStatus(ctx, &impactv1.GetMyStatusRequest{}); grpcstatus.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("expired deadline: %v", err)
		}
	})
}

// TestInprocIsolation: neither side sees the other's messages change.
func TestInprocIsolation(t *testing.T) {
	var kept *impactv1.GetMyStatusResponse
	c := probeConn(func(_ context.Context, req *impactv1.GetMyStatusRequest) (*impactv1.GetMyStatusResponse, error) {
		req.IncidentId = "changed by the handler"
		kept = proto.Clone(okAnswer).(*impactv1.GetMyStatusResponse)
		return kept, nil
	})
	req := &impactv1.GetMyStatusRequest{IncidentId: "inc", AtLeastVersion: 3}
	resp, err := c.GetMyStatus(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if req.GetIncidentId() != "inc" {
		t.Errorf("the handler changed the caller's request: %v", req)
	}
	kept.Answer.IncidentId = "changed after the answer"
	if !proto.Equal(resp, okAnswer) || resp == kept {
		t.Errorf("the caller's answer shares the handler's: %v", resp)
	}
}

// TestInprocErrors: status errors reach the caller unchanged (details
// too), other errors as a gRPC server sends them, and what the connection
// does not serve is UNIMPLEMENTED.
func TestInprocErrors(t *testing.T) {
	detailed, err := grpcstatus.New(codes.ResourceExhausted, "slow down").WithDetails(&errdetails.ErrorInfo{Reason: "RATE_LIMITED", Domain: "impact"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		err  error
		want *grpcstatus.Status
	}{
		{"status with details", detailed.Err(), detailed},
		{"plain error", errors.New("boom"), grpcstatus.New(codes.Unknown, "boom")},
		{"context error", fmt.Errorf("read: %w", context.DeadlineExceeded), grpcstatus.New(codes.DeadlineExceeded, "read: context deadline exceeded")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := probeConn(func(context.Context, *impactv1.GetMyStatusRequest) (*impactv1.GetMyStatusResponse, error) {
				return nil, tc.err
			})
			_, err := c.GetMyStatus(context.Background(), &impactv1.GetMyStatusRequest{})
			if got := grpcstatus.Convert(err); !proto.Equal(got.Proto(), tc.want.Proto()) {
				t.Errorf("got %v, want %v", got.Proto(), tc.want.Proto())
			}
		})
	}
	c := newInprocConn(callChain{}, nil)
	c.register(&impactv1.StatusService_ServiceDesc, &probeStatus{})
	if err := c.Invoke(context.Background(), "/impact.v1.StatusService/Nope", &impactv1.GetMyStatusRequest{}, &impactv1.GetMyStatusResponse{}); grpcstatus.Code(err) != codes.Unimplemented {
		t.Errorf("unknown method: %v", err)
	}
	// Registered but not implemented: the generated Unimplemented server.
	if _, err := impactv1.NewStatusServiceClient(c).ListMyStatuses(context.Background(), &impactv1.ListMyStatusesRequest{}); grpcstatus.Code(err) != codes.Unimplemented {
		t.Errorf("unimplemented method: %v", err)
	}
	if _, err := c.NewStream(context.Background(), &grpc.StreamDesc{}, "/impact.v1.NoticeService/ClaimNotices"); grpcstatus.Code(err) != codes.Unimplemented {
		t.Errorf("stream: %v", err)
	}
}

// TestInprocLimits: the listener's request size limit, the caller's answer
// size limit and the client's metadata rules, each refused before the
// handler runs, with a gRPC connection's codes.
func TestInprocLimits(t *testing.T) {
	calls := 0
	c := probeConn(func(context.Context, *impactv1.GetMyStatusRequest) (*impactv1.GetMyStatusResponse, error) {
		calls++
		return okAnswer, nil
	})
	big := &impactv1.GetMyStatusRequest{IncidentId: strings.Repeat("x", serverMaxRecvMsgSize)}
	if _, err := c.GetMyStatus(context.Background(), big); grpcstatus.Code(err) != codes.ResourceExhausted || calls != 0 {
		t.Errorf("request over the listener's limit: %v (handler calls %d)", err, calls)
	}
	if _, err := c.GetMyStatus(context.Background(), &impactv1.GetMyStatusRequest{}, grpc.MaxCallRecvMsgSize(4)); grpcstatus.Code(err) != codes.ResourceExhausted {
		t.Errorf("answer over the caller's limit: %v", err)
	}
	calls = 0
	bad := metadata.NewOutgoingContext(context.Background(), metadata.Pairs("authorization", "Bearer \x01"))
	if _, err := c.GetMyStatus(bad, &impactv1.GetMyStatusRequest{}); grpcstatus.Code(err) != codes.Internal || calls != 0 {
		t.Errorf("unprintable metadata: %v (handler calls %d)", err, calls)
	}
}

// TestInprocChainOrder: the interceptors run in the order
// grpc.ChainUnaryInterceptor runs them, around the handler, with the
// method's info.
func TestInprocChainOrder(t *testing.T) {
	var order []string
	ic := func(name string) grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			order = append(order, name+" "+info.FullMethod)
			resp, err := h(ctx, req)
			order = append(order, name+" done")
			return resp, err
		}
	}
	c := probeConn(func(context.Context, *impactv1.GetMyStatusRequest) (*impactv1.GetMyStatusResponse, error) {
		order = append(order, "handler")
		return okAnswer, nil
	}, ic("a"), ic("b"), ic("c"))
	if _, err := c.GetMyStatus(context.Background(), &impactv1.GetMyStatusRequest{}); err != nil {
		t.Fatal(err)
	}
	m := impactv1.StatusService_GetMyStatus_FullMethodName
	want := []string{"a " + m, "b " + m, "c " + m, "handler", "c done", "b done", "a done"}
	if !slices.Equal(order, want) {
		t.Errorf("order %q, want %q", order, want)
	}
}

// recordingStats is a stats.Handler that records the events of calls.
type recordingStats struct {
	mu     sync.Mutex
	events []string
	tagMD  metadata.MD
	tagGW  bool
}

func (r *recordingStats) add(s string) { r.mu.Lock(); r.events = append(r.events, s); r.mu.Unlock() }

func (r *recordingStats) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	r.add("tag " + info.FullMethodName)
	r.tagMD, _ = metadata.FromIncomingContext(ctx)
	r.tagGW = fromGateway(ctx)
	return ctx
}

func (r *recordingStats) HandleRPC(_ context.Context, s stats.RPCStats) {
	switch s := s.(type) {
	case *stats.Begin:
		r.add("begin")
	case *stats.InHeader:
		r.add("in header")
	case *stats.OutHeader:
		r.add("out header")
	case *stats.End:
		r.add("end " + grpcstatus.Code(s.Error).String())
	}
}

func (*recordingStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (*recordingStats) HandleConn(context.Context, stats.ConnStats)                       {}

// TestInprocStats: the server's stats handler (the listener's telemetry)
// and the caller's see a call as over a connection, with its final code.
func TestInprocStats(t *testing.T) {
	server, client := &recordingStats{}, &recordingStats{}
	c := newInprocConn(callChain{stats: server}, client)
	c.register(&impactv1.StatusService_ServiceDesc, &probeStatus{fn: func(context.Context, *impactv1.GetMyStatusRequest) (*impactv1.GetMyStatusResponse, error) {
		return nil, grpcstatus.Error(codes.NotFound, "no")
	}})
	ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs("authorization", "Bearer tok"))
	if _, err := impactv1.NewStatusServiceClient(c).GetMyStatus(ctx, &impactv1.GetMyStatusRequest{}); grpcstatus.Code(err) != codes.NotFound {
		t.Fatal(err)
	}
	m := impactv1.StatusService_GetMyStatus_FullMethodName
	if want := []string{"tag " + m, "in header", "begin", "end NotFound"}; !slices.Equal(server.events, want) {
		t.Errorf("server events %q, want %q", server.events, want)
	}
	if want := []string{"tag " + m, "begin", "out header", "end NotFound"}; !slices.Equal(client.events, want) {
		t.Errorf("client events %q, want %q", client.events, want)
	}
	if !slices.Equal(server.tagMD.Get("authorization"), []string{"Bearer tok"}) || !server.tagGW {
		t.Errorf("server stats handler: metadata %v, from gateway %v", server.tagMD, server.tagGW)
	}
}

// scriptedAuthn authenticates "Bearer sub:NAME" as patient NAME and acts
// on a few other tokens: "Bearer panic" panics, "Bearer block" waits for
// its context to end. It records what each call saw.
type scriptedAuthn struct {
	mu       sync.Mutex
	headers  []string
	deadline time.Time
	blocked  chan struct{} // closed when a "block" call waits
	ended    chan error    // a "block" call's context error
}

func (a *scriptedAuthn) Authenticate(ctx context.Context, header string) (auth.Principal, error) {
	a.mu.Lock()
	a.headers = append(a.headers, header)
	a.deadline, _ = ctx.Deadline()
	a.mu.Unlock()
	switch {
	case header == "Bearer panic":
		panic("scripted panic: secret-panic-text")
	case header == "Bearer block":
		close(a.blocked)
		select {
		case <-ctx.Done():
			a.ended <- ctx.Err()
		case <-time.After(30 * time.Second):
			a.ended <- errors.New("never cancelled")
		}
		return auth.Principal{}, ctx.Err()
	case strings.HasPrefix(header, "Bearer sub:"):
		return auth.Principal{Subject: strings.TrimPrefix(header, "Bearer sub:")}, nil
	}
	return auth.Principal{}, auth.ErrUnauthenticated
}

// TestGatewayRunsTheListenerChain: a REST call goes through the patient
// gRPC listener's interceptors, the same instances as a gRPC call:
// authentication, the shared subject rate limit, validation after
// authentication, recovery with the fixed message, the deadline and the
// cancellation of the HTTP request.
func TestGatewayRunsTheListenerChain(t *testing.T) {
	f := domaintest.New(t)
	f.Publish(t, "p-1,affected,northland,")
	authn := &scriptedAuthn{blocked: make(chan struct{}), ended: make(chan error, 1)}
	lim, err := ratelimit.NewLocal(ratelimit.Limit{Rate: 1, Period: time.Hour, Burst: 3})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ratelimit.NewHasher([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	logs := &testclient.LogBuffer{}
	srv, err := New(Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", AdminGRPCAddr: "127.0.0.1:0", AdminHTTPAddr: "127.0.0.1:0",
		UploadDir: t.TempDir(), RequestTimeout: 5 * time.Second,
	}, Deps{
		Store: f.Store, Status: f.Status, Catalog: f.Catalog, Snapshots: f.Snapshots, Audit: f.Audit, Notices: f.Notices,
		Authenticator: authn, SubjectLimiter: lim, RateKeys: keys, Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	cancel, done := run(srv)
	defer func() { cancel(); <-done }()
	a := srv.Addrs()
	conn, err := grpc.NewClient(a.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	grpcStatus := func(tok, incident string) error {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", tok)
		_, err := impactv1.NewStatusServiceClient(conn).GetMyStatus(ctx, &impactv1.GetMyStatusRequest{IncidentId: incident})
		return err
	}
	rest := func(tok, incident string, hdr ...string) (int, http.Header, string) {
		hdr = append(hdr, "Authorization", tok)
		code, h, body := testclient.REST(t, http.DefaultClient, "GET", "http://"+a.HTTP+"/v1/incidents/"+incident+"/status", "", "", hdr...)
		return code, h, string(body)
	}

	t.Run("authentication", func(t *testing.T) {
		code, h, body := rest("Bearer nobody", domaintest.Incident)
		if code != 401 || h.Get("WWW-Authenticate") == "" || !strings.Contains(body, `"unauthenticated"`) {
			t.Fatalf("REST without a valid token: %d %v %s", code, h, body)
		}
		if err := grpcStatus("Bearer nobody", domaintest.Incident); grpcstatus.Code(err) != codes.Unauthenticated {
			t.Fatalf("gRPC without a valid token: %v", err)
		}
	})
	t.Run("authorization forwarded", func(t *testing.T) {
		authn.mu.Lock()
		authn.headers = nil
		authn.mu.Unlock()
		if code, _, body := rest("Bearer sub:p-1", domaintest.Incident); code != 200 || !strings.Contains(body, `"AFFECTED"`) {
			t.Fatalf("REST status: %d %s", code, body)
		}
		authn.mu.Lock()
		defer authn.mu.Unlock()
		if !slices.Equal(authn.headers, []string{"Bearer sub:p-1"}) {
			t.Fatalf("the authenticator saw %q", authn.headers)
		}
	})
	t.Run("validation after authentication", func(t *testing.T) {
		bad := "bad%20id%20"
		code, _, body := rest("Bearer sub:val", bad)
		if code != 400 || !strings.Contains(body, "incident_id") {
			t.Fatalf("REST invalid incident id: %d %s", code, body)
		}
		if code, _, _ := rest("Bearer nobody", bad); code != 401 {
			t.Fatalf("REST invalid incident id without a token: %d, want 401 first", code)
		}
		if err := grpcStatus("Bearer sub:val", "bad id "); grpcstatus.Code(err) != codes.InvalidArgument {
			t.Fatalf("gRPC invalid incident id: %v", err)
		}
	})
	t.Run("one subject limit for both transports", func(t *testing.T) {
		// Burst 3 for subject rl: two REST calls and one gRPC call pass,
		// then both transports are refused.
		for i := 0; i < 2; i++ {
			if code, _, body := rest("Bearer sub:rl", domaintest.Incident); code != 200 {
				t.Fatalf("REST call %d: %d %s", i, code, body)
			}
		}
		if err := grpcStatus("Bearer sub:rl", domaintest.Incident); err != nil {
			t.Fatalf("gRPC call: %v", err)
		}
		code, h, body := rest("Bearer sub:rl", domaintest.Incident)
		if code != 429 || h.Get("Retry-After") == "" {
			t.Fatalf("REST over the limit: %d %v %s", code, h, body)
		}
		if err := grpcStatus("Bearer sub:rl", domaintest.Incident); grpcstatus.Code(err) != codes.ResourceExhausted {
			t.Fatalf("gRPC over the limit: %v", err)
		}
	})
	t.Run("panic recovered", func(t *testing.T) {
		code, _, body := rest("Bearer panic", domaintest.Incident)
		if code != 500 || !strings.Contains(body, `"internal error"`) || strings.Contains(body, "secret-panic-text") {
			t.Fatalf("REST panic: %d %s", code, body)
		}
		if !strings.Contains(logs.String(), "panic in handler") {
			t.Fatalf("the panic was not logged by the recovery interceptor: %s", logs.String())
		}
	})
	t.Run("deadline", func(t *testing.T) {
		before := time.Now()
		code, _, _ := rest("Bearer sub:dl", domaintest.Incident, "Grpc-Timeout", "3S")
		after := time.Now()
		authn.mu.Lock()
		dl := authn.deadline
		authn.mu.Unlock()
		if code != 200 || dl.Before(before.Add(3*time.Second)) || dl.After(after.Add(3*time.Second)) {
			t.Fatalf("REST with a 3 s timeout: %d, the chain's deadline %v (call between %v and %v)", code, dl, before, after)
		}
	})
	t.Run("client gone", func(t *testing.T) {
		ctx, stop := context.WithCancel(context.Background())
		req, err := http.NewRequestWithContext(ctx, "GET", "http://"+a.HTTP+"/v1/incidents/"+domaintest.Incident+"/status", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer block")
		errc := make(chan error, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				_ = resp.Body.Close()
			}
			errc <- err
		}()
		select {
		case <-authn.blocked:
		case err := <-errc:
			t.Fatalf("the request ended (%v) before the chain saw it", err)
		}
		stop()
		if err := <-authn.ended; !errors.Is(err, context.Canceled) {
			t.Fatalf("the call's context after the HTTP client left: %v", err)
		}
		if err := <-errc; err == nil {
			t.Fatal("the cancelled request got an answer")
		}
	})
}
