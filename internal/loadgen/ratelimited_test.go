package loadgen

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
)

// TestRejectionsCounted: Drive counts RESOURCE_EXHAUSTED among the errors,
// and the harness fails when more than maxRejectedShare of a target's
// requests were rate-limited, naming it.
func TestRejectionsCounted(t *testing.T) {
	var calls atomic.Int64
	r := Drive(context.Background(), "impactd gRPC", Load{Concurrency: 2, Duration: 100 * time.Millisecond}, nil,
		func(context.Context, int, *rand.Rand) error {
			switch calls.Add(1) % 4 {
			case 0:
				return rateLimitedGRPC(grpcstatus.Error(codes.ResourceExhausted, "rate limit exceeded"))
			case 1:
				return rateLimitedGRPC(grpcstatus.Error(codes.Unavailable, "store down"))
			}
			time.Sleep(time.Millisecond)
			return nil
		})
	if r.Rejected == 0 || r.Rejected >= r.Errors || r.Errors > r.Requests {
		t.Fatalf("rejected %d, errors %d, requests %d", r.Rejected, r.Errors, r.Requests)
	}
	if m := merge("impactd gRPC", []Result{r, r}); m.Rejected != 2*r.Rejected {
		t.Fatalf("merge: %d rejected, want %d", m.Rejected, 2*r.Rejected)
	}
	var out bytes.Buffer
	err := checkRejections(&out, []Result{{Name: "minimal", Requests: 1000}, r})
	if err == nil || !strings.Contains(err.Error(), "impactd gRPC") || !strings.Contains(out.String(), "rate-limited") {
		t.Fatalf("a run with %d of %d rate-limited passed: %v; %s", r.Rejected, r.Requests, err, out.String())
	}
	if err := checkRejections(&out, []Result{{Name: "ok", Requests: 10_000, Rejected: 10}}); err != nil {
		t.Fatalf("0.1%% rate-limited failed the run: %v", err)
	}
	if err := checkRejections(&out, []Result{{Name: "over", Requests: 10_000, Rejected: 11}}); err == nil {
		t.Fatal("over 0.1% rate-limited passed")
	}
	if !errors.Is(rateLimitedGRPC(grpcstatus.Error(codes.ResourceExhausted, "x")), errRateLimited) {
		t.Fatal("RESOURCE_EXHAUSTED not classified")
	}
}
