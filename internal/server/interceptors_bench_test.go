package server

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/auth"
)

// BenchmarkUnaryInterceptors is the patient listener's interceptor chain
// around a handler that does nothing: recovery, logging (level info, so
// the debug line of an answered call is not built), the per-call deadline,
// authentication with the real verifier (dev keys, cached token), the
// policy and validation; no rate limits (BenchmarkAdmit measures those).
//
//	go test -run '^$' -bench BenchmarkUnaryInterceptors -benchmem ./internal/server
func BenchmarkUnaryInterceptors(b *testing.B) {
	dir := b.TempDir()
	files, err := auth.EnsureDevKeys(dir)
	if err != nil {
		b.Fatal(err)
	}
	v, err := auth.NewVerifier(context.Background(), auth.Config{JWKSFile: files.JWKSFile, Issuer: auth.DevIssuer, Audience: auth.DevAudience})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(v.Close)
	tok, err := auth.MintDevToken(dir, "patient-0000001", nil, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(discard{}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ic := &interceptors{authn: v, log: log, timeout: 5 * time.Second, guard: &guard{log: log}}
	ctx := peer.NewContext(metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok)),
		&peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("198.51.100.7"), Port: 40000}})
	req := &impactv1.GetMyStatusRequest{IncidentId: "mmh-2025-12", AtLeastVersion: 2}
	info := &grpc.UnaryServerInfo{FullMethod: "/impact.v1.StatusService/GetMyStatus"}
	resp := &impactv1.GetMyStatusResponse{}
	handler := func(ctx context.Context, _ any) (any, error) {
		if _, ok := principalFrom(ctx); !ok {
			return nil, errPermissionDenied
		}
		return resp, nil
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := ic.unary(ctx, req, info, handler); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
