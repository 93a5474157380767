package main

import (
	"net"
	"strings"
	"testing"

	"github.com/impact-health/impact/internal/server"
	"github.com/impact-health/impact/internal/testutil/impacttest"
)

// TestOpsMutualTLS runs impactctl against an impactd whose ops listener
// requires mutual TLS: with --ca-file, --cert and --key the call passes the
// handshake and the token check and the service answers (NOT_FOUND for an
// incident it does not know); without a client certificate, or with one
// from another CA, the connection is refused before any service answers;
// --cert without --key is a usage error. Every failure is one line.
//
// The refused cases do not assert the wording of the reason: with TLS 1.3
// the client's half of the handshake completes before the server checks
// the client certificate, so impactctl reports either the server's alert
// ("remote error: tls: certificate required") or the failed write on the
// connection the server closed ("broken pipe", "connection reset by
// peer"), whichever grpc-go sees first.
func TestOpsMutualTLS(t *testing.T) {
	serverCA, opsCA := impacttest.NewCA(t, "impact test CA"), impacttest.NewCA(t, "ops CA")
	_, serverCert, serverKey := serverCA.IssueServer(t, []string{"impact.test"}, net.ParseIP("127.0.0.1"))
	_, opsCert, opsKey := opsCA.IssueClient(t)
	_, rogueCert, rogueKey := serverCA.IssueClient(t) // right usage, wrong CA
	dir := t.TempDir()
	d := startImpactd(t, impacttest.Options{Config: server.Config{
		TLSCertFile:       impacttest.WriteFile(t, dir, "server.pem", serverCert),
		TLSKeyFile:        impacttest.WriteFile(t, dir, "server-key.pem", serverKey),
		AdminClientCAFile: impacttest.WriteFile(t, dir, "ops-ca.pem", opsCA.PEM),
	}})
	caFile := impacttest.WriteFile(t, dir, "ca.pem", serverCA.PEM)
	certFile := impacttest.WriteFile(t, dir, "c.pem", opsCert)
	keyFile := impacttest.WriteFile(t, dir, "k.pem", opsKey)
	rogueCertFile := impacttest.WriteFile(t, dir, "rogue.pem", rogueCert)
	rogueKeyFile := impacttest.WriteFile(t, dir, "rogue-key.pem", rogueKey)

	list := []string{"snapshot", "list", "--incident", "x"}
	for _, tc := range []struct {
		name     string
		flags    []string
		wantCode int
		want     string // in the one line of output, case-insensitively
		not      string // not in it
	}{
		{"client certificate", []string{"--ca-file", caFile, "--cert", certFile, "--key", keyFile}, exitError, "not found (NOT_FOUND)", "UNAVAILABLE"},
		{"no client certificate", []string{"--ca-file", caFile}, exitError, "check --ca-file, --cert and --key (UNAVAILABLE)", "not found"},
		{"client certificate of another CA", []string{"--ca-file", caFile, "--cert", rogueCertFile, "--key", rogueKeyFile}, exitError, "check --ca-file, --cert and --key (UNAVAILABLE)", "not found"},
		{"--cert without --key", []string{"--ca-file", caFile, "--cert", certFile}, exitUsage, "--cert and --key go together", "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"--addr", d.addr}, tc.flags...), list...)
			out := d.ctl(t, tc.wantCode, args...)
			if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
				t.Fatalf("want one line, got %q", out)
			}
			if lo := strings.ToLower(out); !strings.Contains(lo, strings.ToLower(tc.want)) || strings.Contains(lo, strings.ToLower(tc.not)) {
				t.Errorf("output %q: want %q in it and not %q", out, tc.want, tc.not)
			}
		})
	}
}
