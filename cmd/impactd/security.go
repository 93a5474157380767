package main

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/ratelimit"
)

// Default rate limits of the patient listener: a patient's app polls a
// status a few times; a household or office behind one address is many
// patients.
var (
	defaultRateSubject = ratelimit.Limit{Rate: 5, Period: time.Second, Burst: 20}
	defaultRateIP      = ratelimit.Limit{Rate: 50, Period: time.Second, Burst: 100}
)

// addSecurityFlags declares the TLS, CORS, proxy and rate-limit flags.
func addSecurityFlags(fs *flag.FlagSet, c *config) {
	s := &c.Server
	fs.StringVar(&s.TLSCertFile, "tls-cert", "", "PEM certificate (chain) of the patient listeners; enables TLS and HSTS")
	fs.StringVar(&s.TLSKeyFile, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&s.AdminClientCAFile, "admin-client-ca", "", "PEM CA bundle: serve the ops listeners over mutual TLS (with --tls-cert) and require client certificates it issued")
	fs.Var((*listFlag)(&s.CORSOrigins), "cors-origin", "origin allowed to call the patient REST API from a browser, scheme://host[:port] (repeatable or comma-separated)")
	fs.StringVar(&s.TrustedProxyHeader, "trusted-proxy-header", "", "header carrying the client address, e.g. X-Forwarded-For; believed only from --trusted-proxies")
	fs.Var((*prefixesFlag)(&s.TrustedProxies), "trusted-proxies", "comma-separated CIDRs or addresses of the reverse proxies whose --trusted-proxy-header is believed")
	fs.Int64Var(&s.MaxBodyBytes, "max-body-bytes", 64<<10, "largest REST request body")
	c.RateSubject, c.RateIP = defaultRateSubject, defaultRateIP
	fs.Var((*limitFlag)(&c.RateSubject), "rate-subject", "rate limit per patient token subject, RATE/UNIT[:BURST] or off")
	fs.Var((*limitFlag)(&c.RateIP), "rate-ip", "rate limit per client address (IPv6: per /64), RATE/UNIT[:BURST] or off")
}

// validateSecurity checks the combinations flag parsing cannot.
func (c *config) validateSecurity() error {
	s := &c.Server
	if (s.TLSCertFile == "") != (s.TLSKeyFile == "") {
		return fmt.Errorf("--tls-cert and --tls-key go together")
	}
	if s.AdminClientCAFile != "" && s.TLSCertFile == "" {
		return fmt.Errorf("--admin-client-ca needs --tls-cert and --tls-key (the ops listeners serve the same certificate)")
	}
	if (s.TrustedProxyHeader == "") != (len(s.TrustedProxies) == 0) {
		return fmt.Errorf("--trusted-proxy-header and --trusted-proxies go together")
	}
	if s.MaxBodyBytes <= 0 {
		return fmt.Errorf("--max-body-bytes must be positive")
	}
	return nil
}

// listFlag is a repeatable string flag; each value may be comma-separated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// prefixesFlag is a comma-separated list of CIDRs or addresses.
type prefixesFlag []netip.Prefix

func (p *prefixesFlag) String() string {
	parts := make([]string, len(*p))
	for i, x := range *p {
		parts[i] = x.String()
	}
	return strings.Join(parts, ",")
}

func (p *prefixesFlag) Set(v string) error {
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if pr, err := netip.ParsePrefix(f); err == nil {
			*p = append(*p, pr.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return fmt.Errorf("%q is not a CIDR or an IP address", f)
		}
		*p = append(*p, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return nil
}

// limitFlag is a ratelimit.Limit flag.
type limitFlag ratelimit.Limit

func (l *limitFlag) String() string { return ratelimit.Limit(*l).String() }
func (l *limitFlag) Set(v string) error {
	x, err := ratelimit.ParseLimit(v)
	if err != nil {
		return err
	}
	*l = limitFlag(x)
	return nil
}

// newLimiters builds the patient listener's rate limiters: in Redis (shared
// by every replica) with --store redis, in process otherwise. The Redis
// limiters use a client of their own (same topology and password as the
// store's) so that their short deadline never shares a pool with the
// ledger. Limiter keys are keyed hashes (under a secret derived from the
// pepper, so replicas agree) of the subject or client address, never the
// raw values. closeFn releases the client.
func newLimiters(c *config, pepper []byte) (subject, addr ratelimit.Limiter, keys *ratelimit.Hasher, closeFn func(), err error) {
	closeFn = func() {}
	if c.RateSubject.IsZero() && c.RateIP.IsZero() {
		return nil, nil, nil, closeFn, nil
	}
	secret := sha256.Sum256(append([]byte("impact rate-limit keys\x00"), pepper...))
	if keys, err = ratelimit.NewHasher(secret[:]); err != nil {
		return nil, nil, nil, closeFn, err
	}
	var client redis.UniversalClient
	if c.Store == "redis" {
		if client, err = redisClient(c); err != nil {
			return nil, nil, nil, closeFn, err
		}
		closeFn = func() { _ = client.Close() }
	}
	build := func(l ratelimit.Limit) (ratelimit.Limiter, error) {
		switch {
		case l.IsZero():
			return nil, nil
		case client != nil:
			return ratelimit.NewRedis(client, "impact:", l)
		default:
			return ratelimit.NewLocal(l)
		}
	}
	if subject, err = build(c.RateSubject); err == nil {
		addr, err = build(c.RateIP)
	}
	if err != nil {
		closeFn()
		return nil, nil, nil, func() {}, fmt.Errorf("rate limit: %w", err)
	}
	return subject, addr, keys, closeFn, nil
}
