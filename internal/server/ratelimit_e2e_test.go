package server_test

import (
	"bytes"
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/app"
	"github.com/impact-health/impact/internal/ratelimit"
	"github.com/impact-health/impact/internal/testutil/impacttest"
	"github.com/impact-health/impact/internal/testutil/redisserver"
	"github.com/impact-health/impact/internal/testutil/testclient"
)

// TestConfiguredRateLimits: the limits app builds from its Config (in
// process, the default per-address limit beside them), over both
// transports. With two replicas the per-subject burst of 20 is 10 on this
// one: 10 calls pass, mixing gRPC and REST, then RESOURCE_EXHAUSTED with
// RetryInfo and 429 with Retry-After. Back to one replica, the subject
// stays refused (what it spent is kept). Another subject is unaffected.
// The rate is one an hour so that nothing refills while the test runs; a
// second server at the defaults shows a patient's visit passing.
func TestConfiguredRateLimits(t *testing.T) {
	var replicas atomic.Int64
	replicas.Store(2)
	e := startEnvWith(t, impacttest.Options{
		RateSubject: app.DefaultRateSubject, RateIP: app.DefaultRateIP,
		Replicas: func() int { return int(replicas.Load()) },
	}, clientCreds{})
	// The default's burst of 20, at a rate that cannot refill during the
	// test.
	if app.DefaultRateSubject.Burst != 20 {
		t.Fatalf("default per-subject burst %d: update this test", app.DefaultRateSubject.Burst)
	}
	e2 := startEnvWith(t, impacttest.Options{
		RateSubject: ratelimit.Limit{Rate: 1, Period: time.Hour, Burst: 20}, RateIP: app.DefaultRateIP,
		Replicas: func() int { return int(replicas.Load()) },
	}, clientCreds{})
	e.WaitReady(t)
	e2.WaitReady(t)

	// At the defaults (5/s:20 over 2 replicas: bursts of 10), a patient's
	// visit (a list and a few reads, over both transports) passes.
	alice := e.Token(t, "alice")
	client := impactv1.NewStatusServiceClient(e.public)
	for i := 0; i < 3; i++ {
		if _, err := client.ListMyStatuses(testclient.WithToken(context.Background(), alice), &impactv1.ListMyStatusesRequest{}); err != nil {
			t.Fatalf("default limits, call %d: %v", i, err)
		}
		if code, _, body := e.rest("GET", e.Addrs.HTTP, "/v1/status", alice, ""); code != 200 {
			t.Fatalf("default limits, REST call %d: %d %s", i, code, body)
		}
	}

	bob := e2.Token(t, "bob")
	ctx := testclient.WithToken(context.Background(), bob)
	client = impactv1.NewStatusServiceClient(e2.public)
	for i := 0; i < 10; i++ {
		if i%2 == 0 {
			if _, err := client.ListMyStatuses(ctx, &impactv1.ListMyStatusesRequest{}); err != nil {
				t.Fatalf("call %d of the burst (gRPC): %v", i+1, err)
			}
		} else if code, _, body := e2.rest("GET", e2.Addrs.HTTP, "/v1/status", bob, ""); code != 200 {
			t.Fatalf("call %d of the burst (REST): %d %s", i+1, code, body)
		}
	}
	// This replica's share is 1 event per 2 h.
	_, err := client.ListMyStatuses(ctx, &impactv1.ListMyStatusesRequest{})
	if grpcstatus.Code(err) != codes.ResourceExhausted || retryDelay(err) < 119*time.Minute || retryDelay(err) > 2*time.Hour {
		t.Fatalf("11th call (gRPC): %v (retry %v), want RESOURCE_EXHAUSTED for about 2h", err, retryDelay(err))
	}
	code, hdr, body := e2.rest("GET", e2.Addrs.HTTP, "/v1/status", bob, "")
	if ra, _ := strconv.Atoi(hdr.Get("Retry-After")); code != 429 || ra < 7140 || ra > 7200 || !bytes.Contains(body, []byte(`"code":8`)) {
		t.Fatalf("12th call (REST): %d Retry-After %q %s", code, hdr.Get("Retry-After"), body)
	}
	// One replica: bob spent this replica's whole share, which may have
	// been half of the global burst with the other half spent on the other
	// replica; so he stays refused, now for one event at 1/h.
	replicas.Store(1)
	_, err = client.ListMyStatuses(ctx, &impactv1.ListMyStatusesRequest{})
	if grpcstatus.Code(err) != codes.ResourceExhausted || retryDelay(err) < 59*time.Minute || retryDelay(err) > time.Hour {
		t.Fatalf("at one replica: %v (retry %v), want RESOURCE_EXHAUSTED for about 1h", err, retryDelay(err))
	}
	if _, err := client.ListMyStatuses(testclient.WithToken(context.Background(), e2.Token(t, "carol")), &impactv1.ListMyStatusesRequest{}); err != nil {
		t.Fatalf("another subject: %v", err)
	}
}

// TestPatientLimitsStayOutOfRedis: on the Redis store the patient limits
// decide in process: a subject driven past its burst leaves no limiter key
// in Redis.
func TestPatientLimitsStayOutOfRedis(t *testing.T) {
	srv := redisserver.Start(t, redisserver.AppendOnly(true), redisserver.AppendFsync("always"))
	e := startEnvWith(t, impacttest.Options{
		RedisURL:    "redis://" + srv.Addr() + "/0",
		RateSubject: ratelimit.Limit{Rate: 1, Period: time.Hour, Burst: 3}, RateIP: app.DefaultRateIP,
	}, clientCreds{})
	e.WaitReady(t)
	ctx := testclient.WithToken(context.Background(), e.Token(t, "dora"))
	client := impactv1.NewStatusServiceClient(e.public)
	for i := 0; i < 3; i++ {
		if _, err := client.ListMyStatuses(ctx, &impactv1.ListMyStatusesRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.ListMyStatuses(ctx, &impactv1.ListMyStatusesRequest{}); grpcstatus.Code(err) != codes.ResourceExhausted {
		t.Fatalf("past the burst: %v", err)
	}
	// A Redis limiter would have left "rate:" + prefix + key for dora and
	// for the client address.
	keys, err := srv.Client(t).Keys(context.Background(), "rate:*").Result()
	if err != nil || len(keys) != 0 {
		t.Fatalf("rate-limit keys in Redis: %q %v", keys, err)
	}
}
