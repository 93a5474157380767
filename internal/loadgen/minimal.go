package loadgen

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
)

// MinimalCommand is the argument that makes the load tool serve the
// minimal baselines instead of measuring (it re-executes itself so that the
// baselines run in their own process, as impactd does).
const MinimalCommand = "minimal-servers"

// minimalStatus is a StatusService that returns one fixed answer: no
// authentication, no store, no interceptors. It is the floor a real
// GetMyStatus is compared with.
type minimalStatus struct {
	impactv1.UnimplementedStatusServiceServer
	resp *impactv1.GetMyStatusResponse
}

func (m *minimalStatus) GetMyStatus(context.Context, *impactv1.GetMyStatusRequest) (*impactv1.GetMyStatusResponse, error) {
	return m.resp, nil
}

// jsonAnswer encodes like impactd's REST gateway does.
var jsonAnswer = protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}

// minimalHandler is a net/http handler that encodes the fixed answer with
// protojson on every request.
func minimalHandler(answer *impactv1.StatusAnswer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/incidents/{incident}/status", func(w http.ResponseWriter, _ *http.Request) {
		b, err := jsonAnswer.Marshal(answer)
		if err != nil {
			http.Error(w, "encode", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /debug/mallocs", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintf(w, "%s %d\n", mallocsMetric, processMallocs())
	})
	return mux
}

// ServeMinimal serves the minimal gRPC server and the minimal HTTP handler
// until ctx is done, and with --redis-grpc-addr the minimal gRPC server
// that reads Redis once per request. args: --grpc-addr, --http-addr,
// --answer (a file with a binary StatusAnswer), --redis-grpc-addr,
// --redis-url, --read-plans (the file writeReadPlans wrote). GET
// /debug/mallocs on the HTTP listener reports the process's allocations.
func ServeMinimal(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(MinimalCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	grpcAddr := fs.String("grpc-addr", "127.0.0.1:0", "gRPC listener")
	httpAddr := fs.String("http-addr", "127.0.0.1:0", "HTTP listener")
	answerFile := fs.String("answer", "", "file with the binary StatusAnswer to return")
	redisGRPCAddr := fs.String("redis-grpc-addr", "", "gRPC listener of the server that reads Redis per request (empty: none)")
	redisURL := fs.String("redis-url", "", "Redis that server reads")
	plansFile := fs.String("read-plans", "", "file with the read plans of the token subjects")
	if err := fs.Parse(args); err != nil {
		return err
	}
	raw, err := os.ReadFile(*answerFile)
	if err != nil {
		return err
	}
	answer := &impactv1.StatusAnswer{}
	if err := proto.Unmarshal(raw, answer); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	gl, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		return err
	}
	hl, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		_ = gl.Close()
		return err
	}
	resp := &impactv1.GetMyStatusResponse{Answer: answer}
	gs := grpc.NewServer()
	impactv1.RegisterStatusServiceServer(gs, &minimalStatus{resp: resp})
	reflection.Register(gs) // for ghz
	hs := &http.Server{Handler: minimalHandler(answer)}
	errc := make(chan error, 3)
	go func() { errc <- gs.Serve(gl) }()
	go func() { errc <- hs.Serve(hl) }()
	var rs *grpc.Server
	if *redisGRPCAddr != "" {
		rm, err := newRedisMinimal(*redisURL, *plansFile, resp)
		if err != nil {
			_ = gl.Close()
			_ = hl.Close()
			return err
		}
		defer rm.c.Close()
		rl, err := net.Listen("tcp", *redisGRPCAddr)
		if err != nil {
			_ = gl.Close()
			_ = hl.Close()
			return err
		}
		rs = grpc.NewServer()
		impactv1.RegisterStatusServiceServer(rs, rm)
		go func() { errc <- rs.Serve(rl) }()
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	gs.Stop()
	if rs != nil {
		rs.Stop()
	}
	_ = hs.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
