package server

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"google.golang.org/grpc"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/pace"
)

// TestUnaryCountsReadsInFlight: the patient listener's unary interceptor
// marks each call as a read in flight for background work to give way to,
// from admission to answer, and ends the mark however the call ends
// (answer, refusal, handler error, panic).
func TestUnaryCountsReadsInFlight(t *testing.T) {
	p := pace.New(pace.Config{})
	ic := &interceptors{authn: fixedAuthn{}, log: slog.New(slog.DiscardHandler), reads: p}
	info := &grpc.UnaryServerInfo{FullMethod: "/impact.v1.StatusService/GetMyStatus"}
	req := &impactv1.GetMyStatusRequest{IncidentId: "mmh-2025-12"}
	var during int64
	handlers := map[string]grpc.UnaryHandler{
		"answer": func(context.Context, any) (any, error) {
			during = p.InFlight()
			return &impactv1.GetMyStatusResponse{}, nil
		},
		"error": func(context.Context, any) (any, error) {
			during = p.InFlight()
			return nil, errors.New("boom")
		},
		"panic": func(context.Context, any) (any, error) {
			during = p.InFlight()
			panic("boom")
		},
	}
	for name, h := range handlers {
		during = -1
		_, err := ic.unary(context.Background(), req, info, h)
		if name != "answer" && err == nil {
			t.Errorf("%s: no error", name)
		}
		if during != 1 || p.InFlight() != 0 {
			t.Errorf("%s: %d reads in flight during the call, %d after; want 1 and 0", name, during, p.InFlight())
		}
	}
	// Refused at admission (an unknown method): counted and ended too.
	if _, err := ic.unary(context.Background(), req, &grpc.UnaryServerInfo{FullMethod: "/x.Y/Z"}, handlers["answer"]); err == nil || p.InFlight() != 0 {
		t.Errorf("refused call: err %v, %d in flight after", err, p.InFlight())
	}
	// Without a Pacer (the ops listener) nothing is counted.
	admin := &interceptors{authn: fixedAuthn{}, log: slog.New(slog.DiscardHandler), verbose: true}
	if _, err := admin.unary(context.Background(), req, info, handlers["answer"]); err != nil || during != 0 {
		t.Errorf("ops listener: err %v, %d reads in flight during the call, want 0", err, during)
	}
}
