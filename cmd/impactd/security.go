package main

import (
	"flag"
	"fmt"
	"net/netip"
	"strings"

	"github.com/impact-health/impact/internal/app"
	"github.com/impact-health/impact/internal/ratelimit"
)

// addSecurityFlags declares the TLS, CORS, proxy and rate-limit flags.
func addSecurityFlags(fs *flag.FlagSet, c *app.Config) {
	s := &c.Server
	fs.StringVar(&s.TLSCertFile, "tls-cert", "", "PEM certificate (chain) of the patient listeners; enables TLS and HSTS")
	fs.StringVar(&s.TLSKeyFile, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&s.AdminClientCAFile, "admin-client-ca", "", "PEM CA bundle: serve the ops listeners over mutual TLS (with --tls-cert) and require client certificates it issued")
	fs.Var((*listFlag)(&s.CORSOrigins), "cors-origin", "origin allowed to call the patient REST API from a browser, scheme://host[:port] (repeatable or comma-separated)")
	fs.StringVar(&s.TrustedProxyHeader, "trusted-proxy-header", "", "header carrying the client address, e.g. X-Forwarded-For; believed only from --trusted-proxies")
	fs.Var((*prefixesFlag)(&s.TrustedProxies), "trusted-proxies", "comma-separated CIDRs or addresses of the reverse proxies whose --trusted-proxy-header is believed")
	fs.Int64Var(&s.MaxBodyBytes, "max-body-bytes", s.MaxBodyBytes, "largest REST request body")
	fs.Var((*limitFlag)(&c.RateSubject), "rate-subject", "rate limit per patient token subject across all replicas (each enforces its share, in memory), RATE/UNIT[:BURST] or off")
	fs.Var((*limitFlag)(&c.RateIP), "rate-ip", "rate limit per client address (IPv6: per /64) across all replicas, sized for many patients behind one carrier-grade NAT address, RATE/UNIT[:BURST] or off")
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

// addrsFlag is a comma-separated list of host:port addresses; blanks
// around them and empty items are dropped.
type addrsFlag []string

func (a *addrsFlag) String() string { return strings.Join(*a, ",") }
func (a *addrsFlag) Set(v string) error {
	var out []string
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	*a = out
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
