package server

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/ratelimit"
	"github.com/impact-health/impact/internal/testutil/redisserver"
)

// fixedAuthn accepts every call as one patient: the benchmark measures the
// guard, not token verification.
type fixedAuthn struct{}

func (fixedAuthn) Authenticate(context.Context, string) (auth.Principal, error) {
	return auth.Principal{Subject: "patient-0001"}, nil
}

// BenchmarkAdmit is the cost the guard adds to a patient call: address
// limit, authentication (a stub here), subject limit and validation.
// Compare "none" (validation only) with the in-process and Redis limiters.
func BenchmarkAdmit(b *testing.B) {
	huge := ratelimit.Limit{Rate: 1 << 20, Period: time.Second, Burst: 1 << 30}
	keys, _ := ratelimit.NewHasher([]byte(strings.Repeat("k", 32)))
	addrs, _ := newClientAddrs("", nil)
	ctx := peer.NewContext(metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer x")),
		&peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("198.51.100.7"), Port: 40000}})
	req := &impactv1.GetMyStatusRequest{IncidentId: "mmh-2025-12", AtLeastVersion: 2}
	const method = "/impact.v1.StatusService/GetMyStatus"
	run := func(b *testing.B, g *guard) {
		ic := &interceptors{authn: fixedAuthn{}, log: slog.Default(), guard: g}
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := ic.admit(ctx, method, req); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("none", func(b *testing.B) { run(b, nil) })
	b.Run("local", func(b *testing.B) {
		s, err := ratelimit.NewLocal(huge)
		if err != nil {
			b.Fatal(err)
		}
		a, _ := ratelimit.NewLocal(huge)
		run(b, &guard{subject: s, addr: a, keys: keys, addrs: addrs, log: slog.Default()})
	})
	b.Run("redis", func(b *testing.B) {
		srv := redisserver.Start(b)
		c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
		defer c.Close()
		s, err := ratelimit.NewRedis(c, "impact:", huge)
		if err != nil {
			b.Fatal(err)
		}
		a, _ := ratelimit.NewRedis(c, "impact:", huge)
		run(b, &guard{subject: s, addr: a, keys: keys, addrs: addrs, log: slog.Default()})
	})
}
