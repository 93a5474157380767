package main

import (
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/impact-health/impact/internal/app"
	"github.com/impact-health/impact/internal/ratelimit"
)

func TestSecurityFlags(t *testing.T) {
	c, err := parseConfig([]string{"--dev",
		"--tls-cert", "c.pem", "--tls-key", "k.pem", "--admin-client-ca", "ca.pem",
		"--cors-origin", "https://a.example", "--cors-origin", "https://b.example,https://c.example",
		"--trusted-proxy-header", "X-Forwarded-For", "--trusted-proxies", "10.0.0.0/8, 192.0.2.1,::1",
		"--rate-subject", "10/s:30", "--rate-ip", "off", "--max-body-bytes", "1024",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Server
	if s.TLSCertFile != "c.pem" || s.TLSKeyFile != "k.pem" || s.AdminClientCAFile != "ca.pem" || s.MaxBodyBytes != 1024 {
		t.Fatalf("TLS flags: %+v", s)
	}
	if !slices.Equal(s.CORSOrigins, []string{"https://a.example", "https://b.example,https://c.example"}) {
		t.Fatalf("origins %q", s.CORSOrigins)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("::1/128")}
	if s.TrustedProxyHeader != "X-Forwarded-For" || !slices.Equal(s.TrustedProxies, want) {
		t.Fatalf("proxies %v", s.TrustedProxies)
	}
	if c.RateSubject != (ratelimit.Limit{Rate: 10, Period: time.Second, Burst: 30}) || !c.RateIP.IsZero() {
		t.Fatalf("rates %v %v", c.RateSubject, c.RateIP)
	}

	d, err := parseConfig([]string{"--dev"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if d.RateSubject != app.DefaultRateSubject || d.RateIP != app.DefaultRateIP || d.Server.TLSCertFile != "" {
		t.Fatalf("defaults: %v %v", d.RateSubject, d.RateIP)
	}

	t.Setenv("IMPACT_CORS_ORIGIN", "https://env.example")
	t.Setenv("IMPACT_RATE_IP", "7/m")
	e, err := parseConfig([]string{"--dev"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e.Server.CORSOrigins, []string{"https://env.example"}) || e.RateIP != (ratelimit.Limit{Rate: 7, Period: time.Minute, Burst: 7}) {
		t.Fatalf("from the environment: %q %v", e.Server.CORSOrigins, e.RateIP)
	}
}

func TestSecurityFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--tls-cert", "c.pem"},
		{"--tls-key", "k.pem"},
		{"--admin-client-ca", "ca.pem"},
		{"--trusted-proxy-header", "X-Forwarded-For"},
		{"--trusted-proxies", "10.0.0.0/8"},
		{"--trusted-proxies", "not-a-cidr"},
		{"--rate-subject", "fast"},
		{"--rate-ip", "5/s:0"},
		{"--max-body-bytes", "0"},
	} {
		if _, err := parseConfig(append([]string{"--dev"}, args...), io.Discard); err == nil {
			t.Errorf("%s: accepted", strings.Join(args, " "))
		}
	}
}
