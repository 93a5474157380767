package impacttest_test

import (
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/impact-health/impact/internal/server"
	"github.com/impact-health/impact/internal/testutil/impacttest"
)

// TestStart: the server answers on its patient REST listener once ready,
// accepts the dev tokens Token mints and refuses others.
func TestStart(t *testing.T) {
	e := impacttest.Start(t, impacttest.Options{Config: server.Config{MaxBodyBytes: 1 << 10}})
	e.WaitReady(t)
	if e.Dir == "" || e.Store == nil || e.Keyer == nil || e.Catalog == nil || e.Status == nil || e.Snapshots == nil {
		t.Fatalf("env incomplete: %+v", e)
	}
	get := func(tok string) int {
		req, err := http.NewRequest("GET", "http://"+e.Addrs.HTTP+"/v1/status", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(e.Token(t, "alice")); code != http.StatusOK {
		t.Fatalf("dev token: %d, want 200", code)
	}
	if code := get(e.Token(t, "alice") + "x"); code != http.StatusUnauthorized {
		t.Fatalf("tampered token: %d, want 401", code)
	}
}

// TestCA: leaves chain to their CA with the extended key usage asked for,
// and not to another CA.
func TestCA(t *testing.T) {
	ca, other := impacttest.NewCA(t, "test CA"), impacttest.NewCA(t, "other CA")
	srv, _, _ := ca.IssueServer(t, []string{"impact.test"}, net.ParseIP("127.0.0.1"))
	cli, _, _ := ca.IssueClient(t)
	for _, tc := range []struct {
		name  string
		leaf  []byte
		roots *x509.CertPool
		usage x509.ExtKeyUsage
		dns   string
		ok    bool
	}{
		{"server", srv.Certificate[0], ca.Pool, x509.ExtKeyUsageServerAuth, "impact.test", true},
		{"server by IP", srv.Certificate[0], ca.Pool, x509.ExtKeyUsageServerAuth, "127.0.0.1", true},
		{"server, wrong name", srv.Certificate[0], ca.Pool, x509.ExtKeyUsageServerAuth, "other.test", false},
		{"server used as client", srv.Certificate[0], ca.Pool, x509.ExtKeyUsageClientAuth, "", false},
		{"client", cli.Certificate[0], ca.Pool, x509.ExtKeyUsageClientAuth, "", true},
		{"client used as server", cli.Certificate[0], ca.Pool, x509.ExtKeyUsageServerAuth, "", false},
		{"client, other CA", cli.Certificate[0], other.Pool, x509.ExtKeyUsageClientAuth, "", false},
	} {
		leaf, err := x509.ParseCertificate(tc.leaf)
		if err != nil {
			t.Fatal(err)
		}
		_, err = leaf.Verify(x509.VerifyOptions{Roots: tc.roots, DNSName: tc.dns, KeyUsages: []x509.ExtKeyUsage{tc.usage}})
		if (err == nil) != tc.ok {
			t.Errorf("%s: verify: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	p := impacttest.WriteFile(t, t.TempDir(), "ca.pem", ca.PEM)
	if b, err := os.ReadFile(p); err != nil || string(b) != string(ca.PEM) || filepath.Base(p) != "ca.pem" {
		t.Fatalf("WriteFile: %s %v", p, err)
	}
}
