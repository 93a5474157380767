package server

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/impact-health/impact/internal/ratelimit"
)

// guard admits calls on a listener: per-address rate limit (before the
// token is verified, so that token guessing is limited too), authentication
// and scope, per-subject rate limit, and validation of the request.
//
// The patient limits are in process and always decide. A limiter that
// cannot decide (the practice limit's Redis unreachable) lets the call
// through: it fails open, with a warning (at most one per limiterLogEvery)
// and a counter, because the read that follows fails closed on its own when
// the store is down, and refusing every caller because the limiter's store
// hiccuped would turn a Redis blip into an outage of the whole service.
type guard struct {
	subject, addr ratelimit.Limiter // nil: no limit
	keys          *ratelimit.Hasher
	addrs         *clientAddrs
	log           *slog.Logger

	limiterErrors atomic.Uint64
	lastLog       atomic.Int64 // unix ns of the last limiter warning
}

const limiterLogEvery = 10 * time.Second

// LimiterErrors returns how many rate-limit decisions failed (and were
// allowed) since start.
func (s *Server) LimiterErrors() uint64 {
	if s.guard == nil {
		return 0
	}
	return s.guard.limiterErrors.Load()
}

// allow applies one limiter to a key.
func (g *guard) allow(ctx context.Context, l ratelimit.Limiter, which, key string) error {
	ok, retry, err := l.Allow(ctx, key)
	if err != nil {
		g.limiterErrors.Add(1)
		now := time.Now().UnixNano()
		if last := g.lastLog.Load(); now-last >= int64(limiterLogEvery) && g.lastLog.CompareAndSwap(last, now) {
			g.log.Warn("rate limiter unavailable, allowing calls", "limit", which, "err", err.Error(),
				"failures", g.limiterErrors.Load())
		}
		return nil
	}
	if !ok {
		return &ratelimit.ExceededError{RetryAfter: retry}
	}
	return nil
}

// admit runs the checks that precede a handler. req is nil for streams
// (their messages are validated as they arrive).
func (ic *interceptors) admit(ctx context.Context, fullMethod string, req any) (context.Context, error) {
	g := ic.guard
	pol, known := policyFor(fullMethod)
	if g != nil && g.addr != nil && known && !pol.open {
		if err := g.allow(ctx, g.addr, "address", g.keys.Key("ip", addrKey(g.addrs.fromGRPC(ctx)))); err != nil {
			return nil, err
		}
	}
	ctx, err := authorize(ctx, ic.authn, fullMethod)
	if err != nil {
		return nil, err
	}
	if g != nil && g.subject != nil {
		if p, ok := principalFrom(ctx); ok {
			if err := g.allow(ctx, g.subject, "subject", g.keys.Key("sub", p.Subject)); err != nil {
				return nil, err
			}
		}
	}
	if req != nil {
		if err := validateRequest(req); err != nil {
			return nil, err
		}
	}
	return ctx, nil
}

// validatingStream validates each message a stream handler receives.
type validatingStream struct {
	grpc.ServerStream
}

func (v validatingStream) RecvMsg(m any) error {
	if err := v.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return validateRequest(m)
}

// setupSecurity loads the TLS material and builds the CORS policy and the
// patient listener's guard from the configuration.
func (s *Server) setupSecurity() error {
	ts, err := loadTLS(s.cfg)
	if err != nil {
		return err
	}
	s.tls = ts
	origins, err := ParseCORSOrigins(s.cfg.CORSOrigins)
	if err != nil {
		return err
	}
	s.cors = newCORS(origins)
	if (s.cfg.TrustedProxyHeader == "") != (len(s.cfg.TrustedProxies) == 0) {
		return errors.New("a trusted proxy header needs trusted proxy addresses, and the reverse")
	}
	addrs, err := newClientAddrs(s.cfg.TrustedProxyHeader, s.cfg.TrustedProxies)
	if err != nil {
		return err
	}
	if (s.deps.SubjectLimiter != nil || s.deps.AddrLimiter != nil) && s.deps.RateKeys == nil {
		return errors.New("rate limiters need RateKeys")
	}
	s.guard = &guard{subject: s.deps.SubjectLimiter, addr: s.deps.AddrLimiter, keys: s.deps.RateKeys, addrs: addrs, log: s.log}
	return nil
}
