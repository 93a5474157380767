package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/auth"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/ratelimit"
	"github.com/impact-health/impact/internal/server"
	"github.com/impact-health/impact/internal/server/errinfo"
	"github.com/impact-health/impact/internal/store"
	"github.com/impact-health/impact/internal/testutil/impacttest"
	"github.com/impact-health/impact/internal/testutil/testclient"
)

// call does an HTTP request with a client and optional headers.
func call(t *testing.T, c *http.Client, method, url, tok, body string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	return testclient.REST(t, c, method, url, tok, body, hdr...)
}

func httpsClient(roots *x509.CertPool, certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs, ServerName: "impact.test", MinVersion: tls.VersionTLS12},
	}}
}

// TestTLS: the patient listeners serve TLS only (1.2 or later) with HSTS,
// and the gateway reaches the gRPC listener over TLS.
func TestTLS(t *testing.T) {
	ca := impacttest.NewCA(t, "impact test CA")
	_, certPEM, keyPEM := ca.IssueServer(t, []string{"impact.test"}, net.ParseIP("127.0.0.1"))
	dir := t.TempDir()
	e := startEnvWith(t, impacttest.Options{Config: server.Config{
		TLSCertFile: impacttest.WriteFile(t, dir, "cert.pem", certPEM),
		TLSKeyFile:  impacttest.WriteFile(t, dir, "key.pem", keyPEM),
	}}, clientCreds{
		public: credentials.NewTLS(&tls.Config{RootCAs: ca.Pool, ServerName: "impact.test", MinVersion: tls.VersionTLS12}),
	})
	e.WaitReady(t)

	tok := e.Token(t, "alice")
	code, hdr, body := call(t, httpsClient(ca.Pool), "GET", "https://"+e.Addrs.HTTP+"/v1/status", tok, "")
	if code != 200 || hdr.Get("Strict-Transport-Security") != "max-age=31536000; includeSubDomains" || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("HTTPS through the TLS gateway: %d %v %s", code, hdr, body)
	}
	if _, err := impactv1.NewStatusServiceClient(e.public).ListMyStatuses(testclient.WithToken(context.Background(), tok), &impactv1.ListMyStatusesRequest{}); err != nil {
		t.Fatalf("gRPC over TLS: %v", err)
	}

	// Plaintext is refused on both (Go's TLS server answers a bare 400).
	if resp, err := http.Get("http://" + e.Addrs.HTTP + "/healthz"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || bytes.Contains(b, []byte("ok")) {
			t.Fatalf("plaintext HTTP on the TLS listener: %d %s", resp.StatusCode, b)
		}
	}
	plain := testclient.Dial(t, e.Addrs.GRPC, nil)
	if _, err := healthpb.NewHealthClient(plain).Check(context.Background(), &healthpb.HealthCheckRequest{}); grpcstatus.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext gRPC on the TLS listener: %v", err)
	}
	// TLS 1.1 is refused.
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool, ServerName: "impact.test", MaxVersion: tls.VersionTLS11}}}
	if _, err := old.Get("https://" + e.Addrs.HTTP + "/healthz"); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}
	// The ops listeners stay plaintext without a client CA (loopback).
	if code, hdr, _ := e.rest("GET", e.Addrs.AdminHTTP, "/healthz", "", ""); code != 200 || hdr.Get("Strict-Transport-Security") != "" {
		t.Fatalf("ops REST without a client CA: %d %v", code, hdr)
	}
}

// TestAdminMutualTLS: with --admin-client-ca the ops listeners require a
// client certificate from that CA; the ops gateway uses its own.
func TestAdminMutualTLS(t *testing.T) {
	ca := impacttest.NewCA(t, "impact test CA")
	opsCA := impacttest.NewCA(t, "ops CA")
	rogueCA := impacttest.NewCA(t, "rogue CA")
	_, certPEM, keyPEM := ca.IssueServer(t, []string{"impact.test"})
	opsCert, _, _ := opsCA.IssueClient(t)
	rogueCert, _, _ := rogueCA.IssueClient(t)
	serverTLS := func(certs ...tls.Certificate) *tls.Config {
		return &tls.Config{RootCAs: ca.Pool, ServerName: "impact.test", MinVersion: tls.VersionTLS12, Certificates: certs}
	}
	dir := t.TempDir()
	e := startEnvWith(t, impacttest.Options{Config: server.Config{
		TLSCertFile:       impacttest.WriteFile(t, dir, "cert.pem", certPEM),
		TLSKeyFile:        impacttest.WriteFile(t, dir, "key.pem", keyPEM),
		AdminClientCAFile: impacttest.WriteFile(t, dir, "ops-ca.pem", opsCA.PEM),
	}}, clientCreds{
		public: credentials.NewTLS(serverTLS()),
		admin:  credentials.NewTLS(serverTLS(opsCert)),
	})
	e.WaitReady(t)
	ctx := testclient.WithToken(context.Background(), e.adminTk)
	// NOT_FOUND (nothing uploaded) is the service's answer: the call got
	// through TLS and authentication.
	if _, err := impactv1.NewSnapshotServiceClient(e.admin).ListSnapshots(ctx, &impactv1.ListSnapshotsRequest{IncidentId: demo.IncidentID}); grpcstatus.Code(err) != codes.NotFound {
		t.Fatalf("ops gRPC with an ops client certificate: %v", err)
	}
	for name, creds := range map[string]credentials.TransportCredentials{
		"no client certificate": credentials.NewTLS(serverTLS()),
		"rogue CA":              credentials.NewTLS(serverTLS(rogueCert)),
		"plaintext":             insecure.NewCredentials(),
	} {
		conn, err := grpc.NewClient(e.Addrs.AdminGRPC, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		_, err = impactv1.NewSnapshotServiceClient(conn).ListSnapshots(ctx, &impactv1.ListSnapshotsRequest{IncidentId: demo.IncidentID})
		_ = conn.Close()
		if grpcstatus.Code(err) != codes.Unavailable {
			t.Fatalf("ops gRPC with %s: %v, want the handshake to fail", name, err)
		}
	}

	// REST: the ops gateway dials the mTLS gRPC listener with its own
	// certificate; callers need theirs.
	path := "https://" + e.Addrs.AdminHTTP + "/v1/incidents/" + demo.IncidentID + "/snapshots"
	if code, hdr, body := call(t, httpsClient(ca.Pool, opsCert), "GET", path, e.adminTk, ""); code != 404 || hdr.Get("Strict-Transport-Security") == "" {
		t.Fatalf("ops REST with an ops client certificate: %d %s", code, body)
	}
	for _, c := range []*http.Client{httpsClient(ca.Pool), httpsClient(ca.Pool, rogueCert)} {
		req, _ := http.NewRequest("GET", path, nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("ops REST without a valid client certificate answered %d", resp.StatusCode)
		}
	}
	// The patient listeners ask for no client certificate.
	if code, _, body := call(t, httpsClient(ca.Pool), "GET", "https://"+e.Addrs.HTTP+"/v1/status", e.Token(t, "bob"), ""); code != 200 {
		t.Fatalf("patient REST: %d %s", code, body)
	}
}

func TestTLSConfigErrors(t *testing.T) {
	ca := impacttest.NewCA(t, "impact test CA")
	_, certPEM, keyPEM := ca.IssueServer(t, []string{"impact.test"})
	_, noSAN, noSANKey := ca.IssueServer(t, nil)
	for name, set := range map[string]func(dir string, c *server.Config){
		"cert without key": func(dir string, c *server.Config) { c.TLSCertFile = impacttest.WriteFile(t, dir, "c.pem", certPEM) },
		"client CA, no cert": func(dir string, c *server.Config) {
			c.AdminClientCAFile = impacttest.WriteFile(t, dir, "ca.pem", ca.PEM)
		},
		"no SAN": func(dir string, c *server.Config) {
			c.TLSCertFile, c.TLSKeyFile = impacttest.WriteFile(t, dir, "c.pem", noSAN), impacttest.WriteFile(t, dir, "k.pem", noSANKey)
		},
		"CA file without PEM": func(dir string, c *server.Config) {
			c.TLSCertFile, c.TLSKeyFile = impacttest.WriteFile(t, dir, "c.pem", certPEM), impacttest.WriteFile(t, dir, "k.pem", keyPEM)
			c.AdminClientCAFile = impacttest.WriteFile(t, dir, "ca.pem", []byte("not pem"))
		},
		"star origin":   func(_ string, c *server.Config) { c.CORSOrigins = []string{"*"} },
		"origin w/path": func(_ string, c *server.Config) { c.CORSOrigins = []string{"https://app.example/x"} },
		"proxy header without proxies": func(_ string, c *server.Config) {
			c.TrustedProxyHeader = "X-Forwarded-For"
		},
	} {
		dir := t.TempDir()
		cfg := server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", AdminGRPCAddr: "127.0.0.1:0", AdminHTTPAddr: "127.0.0.1:0"}
		set(dir, &cfg)
		if srv, err := server.New(cfg, server.Deps{}); err == nil {
			_ = srv
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestCORS: only listed origins get CORS headers, on the patient listener
// only; no credentials; preflights for other methods or headers fail.
func TestCORS(t *testing.T) {
	e := startEnvWith(t, impacttest.Options{Config: server.Config{
		CORSOrigins: []string{"https://app.example.org, https://www.example.org:8443"},
	}}, clientCreds{})
	e.WaitReady(t)
	base := "http://" + e.Addrs.HTTP + "/v1/status"
	c := http.DefaultClient
	preflight := func(origin, method, headers string) (int, http.Header) {
		code, hdr, _ := call(t, c, "OPTIONS", base, "", "", "Origin", origin,
			"Access-Control-Request-Method", method, "Access-Control-Request-Headers", headers)
		return code, hdr
	}
	code, hdr := preflight("https://app.example.org", "GET", "authorization")
	if code != 204 || hdr.Get("Access-Control-Allow-Origin") != "https://app.example.org" ||
		!strings.Contains(hdr.Get("Access-Control-Allow-Headers"), "Authorization") ||
		!slices.Contains(hdr.Values("Vary"), "Origin") || hdr.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("allowed preflight: %d %v", code, hdr)
	}
	for _, bad := range [][3]string{
		{"https://evil.example", "GET", "authorization"},
		{"https://app.example.org.evil.example", "GET", ""},
		{"http://app.example.org", "GET", ""}, // scheme matters
		{"https://app.example.org", "DELETE", ""},
		{"https://app.example.org", "GET", "authorization, x-debug"},
	} {
		if code, hdr := preflight(bad[0], bad[1], bad[2]); code != 403 || hdr.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("refused preflight %v: %d %v", bad, code, hdr)
		}
	}
	tok := e.Token(t, "alice")
	code, hdr, _ = call(t, c, "GET", base, tok, "", "Origin", "https://www.example.org:8443")
	if code != 200 || hdr.Get("Access-Control-Allow-Origin") != "https://www.example.org:8443" ||
		hdr.Get("Access-Control-Expose-Headers") != "Retry-After" || hdr.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("allowed GET: %d %v", code, hdr)
	}
	code, hdr, _ = call(t, c, "GET", base, tok, "", "Origin", "https://evil.example")
	if hdr.Get("Access-Control-Allow-Origin") != "" || !slices.Contains(hdr.Values("Vary"), "Origin") {
		t.Fatalf("refused origin GET: %d %v", code, hdr)
	}
	// The ops REST listener never answers CORS; no HSTS without TLS.
	code, hdr, _ = call(t, c, "OPTIONS", "http://"+e.Addrs.AdminHTTP+"/v1/incidents/x/snapshots", "", "",
		"Origin", "https://app.example.org", "Access-Control-Request-Method", "GET")
	if hdr.Get("Access-Control-Allow-Origin") != "" || code == 204 || hdr.Get("Strict-Transport-Security") != "" {
		t.Fatalf("ops listener preflight: %d %v", code, hdr)
	}
}

// failingLimiter is a limiter whose store is down.
type failingLimiter struct{}

func (failingLimiter) Allow(context.Context, string) (bool, time.Duration, error) {
	return false, 0, errors.New("redis: connection refused")
}

func rateKeys(t *testing.T) *ratelimit.Hasher {
	h, err := ratelimit.NewHasher([]byte(strings.Repeat("r", 32)))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func retryDelay(err error) time.Duration {
	for _, d := range grpcstatus.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return -1
}

// TestSubjectRateLimit: a subject's burst is shared by both transports;
// then RESOURCE_EXHAUSTED with RetryInfo, 429 with Retry-After; other
// subjects are unaffected.
func TestSubjectRateLimit(t *testing.T) {
	lim, err := ratelimit.NewLocal(ratelimit.Limit{Rate: 1, Period: time.Hour, Burst: 3})
	if err != nil {
		t.Fatal(err)
	}
	e := startEnvWith(t, impacttest.Options{SubjectLimiter: lim, RateKeys: rateKeys(t)}, clientCreds{})
	e.WaitReady(t)
	alice := e.Token(t, "alice")
	ctx := testclient.WithToken(context.Background(), alice)
	client := impactv1.NewStatusServiceClient(e.public)
	for i := 0; i < 2; i++ {
		if _, err := client.ListMyStatuses(ctx, &impactv1.ListMyStatusesRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if code, _, body := e.rest("GET", e.Addrs.HTTP, "/v1/status", alice, ""); code != 200 {
		t.Fatalf("3rd call (REST): %d %s", code, body)
	}
	_, err = client.ListMyStatuses(ctx, &impactv1.ListMyStatusesRequest{})
	if grpcstatus.Code(err) != codes.ResourceExhausted || retryDelay(err) < 59*time.Minute || retryDelay(err) > time.Hour {
		t.Fatalf("4th call: %v (retry %v)", err, retryDelay(err))
	}
	code, hdr, body := e.rest("GET", e.Addrs.HTTP, "/v1/status", alice, "")
	ra, _ := strconv.Atoi(hdr.Get("Retry-After"))
	if code != 429 || ra < 3540 || ra > 3600 || !bytes.Contains(body, []byte(`"code":8`)) {
		t.Fatalf("5th call (REST): %d Retry-After %q %s", code, hdr.Get("Retry-After"), body)
	}
	if _, err := client.ListMyStatuses(testclient.WithToken(context.Background(), e.Token(t, "bob")), &impactv1.ListMyStatusesRequest{}); err != nil {
		t.Fatalf("another subject: %v", err)
	}
	// Health checks are never limited.
	for i := 0; i < 10; i++ {
		if _, err := healthpb.NewHealthClient(e.public).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Contains(e.logs.String(), "alice") {
		t.Fatal("a subject id reached the logs")
	}
}

// TestAddressRateLimit: with a trusted proxy, REST and gRPC callers are
// limited by the forwarded client address, shared across transports; a
// direct gRPC caller cannot claim another address through the gateway's
// metadata; an untrusted peer's forwarded header is ignored.
func TestAddressRateLimit(t *testing.T) {
	start := func(trusted bool) *env {
		lim, err := ratelimit.NewLocal(ratelimit.Limit{Rate: 1, Period: time.Hour, Burst: 2})
		if err != nil {
			t.Fatal(err)
		}
		o := impacttest.Options{AddrLimiter: lim, RateKeys: rateKeys(t)}
		if trusted {
			o.Config.TrustedProxyHeader = "X-Forwarded-For"
			o.Config.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		}
		return startEnvWith(t, o, clientCreds{})
	}
	e := start(true)
	e.WaitReady(t)
	tok := e.Token(t, "alice")
	get := func(xff string) int {
		code, _, _ := call(t, http.DefaultClient, "GET", "http://"+e.Addrs.HTTP+"/v1/status", tok, "", "X-Forwarded-For", xff)
		return code
	}
	grpcCall := func(md ...string) error {
		ctx := metadata.AppendToOutgoingContext(testclient.WithToken(context.Background(), tok), md...)
		_, err := impactv1.NewStatusServiceClient(e.public).ListMyStatuses(ctx, &impactv1.ListMyStatusesRequest{})
		return err
	}
	if get("198.51.100.1") != 200 || get("10.9.9.9, 198.51.100.1") != 200 {
		t.Fatal("first two calls from 198.51.100.1 refused")
	}
	if code := get("198.51.100.1"); code != 429 {
		t.Fatalf("third REST call from 198.51.100.1: %d", code)
	}
	if err := grpcCall("x-forwarded-for", "198.51.100.1"); grpcstatus.Code(err) != codes.ResourceExhausted {
		t.Fatalf("gRPC from the same forwarded address: %v", err)
	}
	// The right-most untrusted hop counts: a client cannot pick its address
	// by prepending to the header.
	if code := get("198.51.100.1, 198.51.100.2"); code != 200 {
		t.Fatalf("198.51.100.2: %d", code)
	}
	if code := get("198.51.100.2, 127.0.0.1"); code != 200 {
		t.Fatalf("198.51.100.2 through a second trusted hop: %d", code)
	}
	if code := get("203.0.113.5, 198.51.100.2"); code != 429 {
		t.Fatalf("198.51.100.2 third call: %d", code)
	}
	// Direct gRPC from loopback without the header: the peer, 127.0.0.1.
	for i := 0; i < 2; i++ {
		if err := grpcCall(); err != nil {
			t.Fatal(err)
		}
	}
	if err := grpcCall("x-impact-gateway", "guess", "x-impact-client-addr", "192.0.2.77"); grpcstatus.Code(err) != codes.ResourceExhausted {
		t.Fatalf("spoofed gateway metadata was believed: %v", err)
	}

	u := start(false)
	u.WaitReady(t)
	tok = u.Token(t, "alice")
	codes := []int{}
	for _, xff := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		c, _, _ := call(t, http.DefaultClient, "GET", "http://"+u.Addrs.HTTP+"/v1/status", tok, "", "X-Forwarded-For", xff)
		codes = append(codes, c)
	}
	if !slices.Equal(codes, []int{200, 200, 429}) {
		t.Fatalf("untrusted X-Forwarded-For must be ignored: %v", codes)
	}
}

// TestLimiterFailsOpen: a limiter that cannot decide lets calls through,
// counts the failures and warns once, without the subject.
func TestLimiterFailsOpen(t *testing.T) {
	e := startEnvWith(t, impacttest.Options{
		SubjectLimiter: failingLimiter{}, AddrLimiter: failingLimiter{}, RateKeys: rateKeys(t),
	}, clientCreds{})
	e.WaitReady(t)
	for i := 0; i < 5; i++ {
		if code, _, body := e.rest("GET", e.Addrs.HTTP, "/v1/status", e.Token(t, "alice"), ""); code != 200 {
			t.Fatalf("call %d with the limiter down: %d %s", i, code, body)
		}
	}
	if n := e.Server.LimiterErrors(); n != 10 {
		t.Fatalf("limiter errors %d, want 10", n)
	}
	logs := e.logs.String()
	if strings.Count(logs, "rate limiter unavailable") != 1 || strings.Contains(logs, "alice") {
		t.Fatalf("logs: %s", logs)
	}
}

// badTokens returns one Authorization header per class of bad token.
func badTokens(t *testing.T, e *env) map[string]string {
	t.Helper()
	files, _ := auth.EnsureDevKeys(e.Dir)
	raw, err := os.ReadFile(files.PrivateKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(raw)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key := k.(*ecdsa.PrivateKey)
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	jwks, _ := os.ReadFile(files.JWKSFile)
	if err := json.Unmarshal(jwks, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("dev JWKS: %v", err)
	}
	kid := set.Keys[0].Kid
	now := time.Now()
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"iss": auth.DevIssuer, "aud": auth.DevAudience, "sub": "alice",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	}
	with := func(c jwt.MapClaims, k string, v any) jwt.MapClaims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	mint := func(signer *ecdsa.PrivateKey, kid string, c jwt.MapClaims) string {
		tok, err := auth.MintToken(signer, kid, "ES256", c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b64 := base64.RawURLEncoding.EncodeToString
	claimsJSON, _ := json.Marshal(good())
	valid := mint(key, kid, good())
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + b64([]byte(strings.Replace(string(claimsJSON), "alice", "bobby", 1))) + "." + parts[2]

	pubDER, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, good())
	hs.Header["kid"] = kid
	hsTok, err := hs.SignedString(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	none := b64([]byte(`{"alg":"none","typ":"JWT","kid":"`+kid+`"}`)) + "." + b64(claimsJSON) + "."
	crit := jwt.NewWithClaims(jwt.SigningMethodES256, good())
	crit.Header["kid"], crit.Header["crit"] = kid, []string{"exp"}
	critTok, _ := crit.SignedString(key)
	noKid, _ := jwt.NewWithClaims(jwt.SigningMethodES256, good()).SignedString(key)

	return map[string]string{
		"missing":          "",
		"basic scheme":     "Basic YWxpY2U6c2VjcmV0",
		"empty bearer":     "Bearer ",
		"garbage":          "Bearer garbage",
		"JWE shape":        "Bearer a.b.c.d.e",
		"alg none":         "Bearer " + none,
		"HS256 public key": "Bearer " + hsTok,
		"no kid":           "Bearer " + noKid,
		"unknown kid":      "Bearer " + mint(other, "not-a-kid", good()),
		"wrong key":        "Bearer " + mint(other, kid, good()),
		"tampered":         "Bearer " + tampered,
		"crit header":      "Bearer " + critTok,
		"wrong issuer":     "Bearer " + mint(key, kid, with(good(), "iss", "https://evil.example")),
		"wrong audience":   "Bearer " + mint(key, kid, with(good(), "aud", "someone-else")),
		"expired":          "Bearer " + mint(key, kid, with(good(), "exp", now.Add(-5*time.Minute).Unix())),
		"not yet valid":    "Bearer " + mint(key, kid, with(good(), "nbf", now.Add(5*time.Minute).Unix())),
		"issued in future": "Bearer " + mint(key, kid, with(good(), "iat", now.Add(5*time.Minute).Unix())),
		"no exp":           "Bearer " + mint(key, kid, with(good(), "exp", nil)),
		"no sub":           "Bearer " + mint(key, kid, with(good(), "sub", nil)),
		"oversize":         "Bearer " + strings.Repeat("a", 9<<10) + "." + parts[1] + "." + parts[2],
	}
}

// TestBadTokensBothTransports: every bad-token class is UNAUTHENTICATED
// with one identical message over gRPC, and one identical 401 body over
// REST, on the patient and the ops listeners.
func TestBadTokensBothTransports(t *testing.T) {
	e := startEnv(t)
	e.WaitReady(t)
	type side struct {
		name     string
		grpcCall func(ctx context.Context) error
		method   string
		addr     string
		path     string
		body     string
	}
	sides := []side{
		{"patient", func(ctx context.Context) error {
			_, err := impactv1.NewStatusServiceClient(e.public).GetMyStatus(ctx, &impactv1.GetMyStatusRequest{IncidentId: demo.IncidentID})
			return err
		}, "GET", e.Addrs.HTTP, "/v1/incidents/" + demo.IncidentID + "/status", ""},
		{"ops", func(ctx context.Context) error {
			_, err := impactv1.NewNoticeServiceClient(e.admin).ClaimNotice(ctx, &impactv1.ClaimNoticeRequest{IncidentId: demo.IncidentID, SubjectId: "x", IdempotencyKey: "k"})
			return err
		}, "POST", e.Addrs.AdminHTTP, "/v1/incidents/" + demo.IncidentID + "/notices:claim", `{"subject_id":"x","idempotency_key":"k"}`},
	}
	classes := badTokens(t, e)
	if len(classes) < 20 {
		t.Fatalf("%d classes", len(classes))
	}
	for _, sd := range sides {
		var firstBody []byte
		for name, header := range classes {
			ctx := context.Background()
			if header != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", header)
			}
			err := sd.grpcCall(ctx)
			st := grpcstatus.Convert(err)
			// The only detail is the fixed reason: nothing says why the token was refused.
			if st.Code() != codes.Unauthenticated || st.Message() != "unauthenticated" || len(st.Details()) != 1 || errinfo.Of(err).GetReason() != errinfo.Unauthenticated || len(errinfo.Of(err).GetMetadata()) != 0 {
				t.Fatalf("%s, %s over gRPC: %v", sd.name, name, err)
			}
			req, _ := http.NewRequest(sd.method, "http://"+sd.addr+sd.path, strings.NewReader(sd.body))
			if header != "" {
				req.Header.Set("Authorization", header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="impact"` {
				t.Fatalf("%s, %s over REST: %d %s", sd.name, name, resp.StatusCode, body)
			}
			if firstBody == nil {
				firstBody = body
			} else if !bytes.Equal(body, firstBody) {
				t.Fatalf("%s, %s: 401 body %s differs from %s", sd.name, name, body, firstBody)
			}
		}
	}
	if logs := e.logs.String(); strings.Contains(logs, "Bearer") || strings.Contains(logs, "eyJ") {
		t.Fatal("a token reached the logs")
	}
}

// TestScopesBothTransports: a valid token without the method's scope is
// PERMISSION_DENIED / 403; with it, the call goes through.
func TestScopesBothTransports(t *testing.T) {
	e := startEnv(t)
	e.WaitReady(t)
	patient, notify, admin := e.Token(t, "alice"), e.Token(t, "mailer", auth.ScopeNotify), e.Token(t, "ops", auth.ScopeAdmin)
	snap := impactv1.NewSnapshotServiceClient(e.admin)
	notices := impactv1.NewNoticeServiceClient(e.admin)
	inc := demo.IncidentID
	for _, tc := range []struct {
		name   string
		tok    string
		grpc   func(ctx context.Context) error
		method string
		path   string
		body   string
		want   codes.Code
	}{
		{"patient lists snapshots", patient, func(ctx context.Context) error {
			_, err := snap.ListSnapshots(ctx, &impactv1.ListSnapshotsRequest{IncidentId: inc})
			return err
		}, "GET", "/v1/incidents/" + inc + "/snapshots", "", codes.PermissionDenied},
		{"patient claims a notice", patient, func(ctx context.Context) error {
			_, err := notices.ClaimNotice(ctx, &impactv1.ClaimNoticeRequest{IncidentId: inc, SubjectId: "alice", IdempotencyKey: "k"})
			return err
		}, "POST", "/v1/incidents/" + inc + "/notices:claim", `{"subject_id":"alice","idempotency_key":"k"}`, codes.PermissionDenied},
		{"notify publishes", notify, func(ctx context.Context) error {
			_, err := snap.PublishSnapshot(ctx, &impactv1.PublishSnapshotRequest{IncidentId: inc, Version: 1, ExpectedVisibleVersion: proto.Uint32(0)})
			return err
		}, "POST", "/v1/incidents/" + inc + "/snapshots/1:publish", `{"expected_visible_version":0}`, codes.PermissionDenied},
		{"notify diffs", notify, func(ctx context.Context) error {
			_, err := snap.DiffSnapshots(ctx, &impactv1.DiffSnapshotsRequest{IncidentId: inc, Version: 1})
			return err
		}, "GET", "/v1/incidents/" + inc + "/snapshots/1/diff", "", codes.PermissionDenied},
		{"admin claims a notice", admin, func(ctx context.Context) error {
			_, err := notices.ClaimNotice(ctx, &impactv1.ClaimNoticeRequest{IncidentId: inc, SubjectId: "alice", IdempotencyKey: "k"})
			return err
		}, "POST", "/v1/incidents/" + inc + "/notices:claim", `{"subject_id":"alice","idempotency_key":"k"}`, codes.PermissionDenied},
		{"notify reads stats", notify, func(ctx context.Context) error {
			_, err := notices.GetNoticeStats(ctx, &impactv1.GetNoticeStatsRequest{IncidentId: inc})
			return err
		}, "GET", "/v1/incidents/" + inc + "/notices/stats", "", codes.NotFound}, // allowed: nothing published
		{"admin lists snapshots", admin, func(ctx context.Context) error {
			_, err := snap.ListSnapshots(ctx, &impactv1.ListSnapshotsRequest{IncidentId: inc})
			return err
		}, "GET", "/v1/incidents/" + inc + "/snapshots", "", codes.NotFound}, // allowed: nothing uploaded
	} {
		err := tc.grpc(testclient.WithToken(context.Background(), tc.tok))
		if grpcstatus.Code(err) != tc.want {
			t.Fatalf("%s over gRPC: %v, want %v", tc.name, err, tc.want)
		}
		code, _, body := e.rest(tc.method, e.Addrs.AdminHTTP, tc.path, tc.tok, tc.body)
		wantHTTP := map[codes.Code]int{codes.PermissionDenied: 403, codes.NotFound: 404, codes.OK: 200}[tc.want]
		if code != wantHTTP {
			t.Fatalf("%s over REST: %d %s, want %d", tc.name, code, body, wantHTTP)
		}
		if tc.want == codes.PermissionDenied && !bytes.Contains(body, []byte(`"message":"permission denied"`)) {
			t.Fatalf("%s: 403 body %s", tc.name, body)
		}
	}
}

// TestOwnRecordProperty: over 1,000 random pairs of subjects (A, B), a
// token for A always yields A's record and never B's. Each subject's record
// is made distinguishable by its own notice id (every listed subject is
// claimed), its status and its cohorts.
func TestOwnRecordProperty(t *testing.T) {
	e := startEnv(t)
	e.WaitReady(t)
	const n = 120 // 100 listed, 20 absent (NOT_AFFECTED)
	rng := mrand.New(mrand.NewPCG(4, 2))
	cohorts := []string{"northland", "referrals", "uploads"}
	subjects := make([]string, n)
	rows := map[string]row{}
	for i := range subjects {
		subjects[i] = fmt.Sprintf("prop-%03d-%x", i, rng.Uint32())
		if i >= 100 {
			continue
		}
		if rng.IntN(5) == 0 {
			rows[subjects[i]] = row{store.UnderReview, ""}
			continue
		}
		var cs []string
		for _, c := range cohorts {
			if rng.IntN(2) == 0 {
				cs = append(cs, c)
			}
		}
		if len(cs) == 0 {
			cs = cohorts[rng.IntN(3):][:1]
		}
		rows[subjects[i]] = row{store.Affected, strings.Join(cs, ";")}
	}
	var csv strings.Builder
	csv.WriteString("subject_id,status,cohorts,practice_id\n")
	for i, s := range subjects {
		if r, ok := rows[s]; ok {
			fmt.Fprintf(&csv, "%s,%s,%s,GP-%03d\n", s, r.status, r.cohorts, i)
		}
	}
	if _, err := e.upload(testclient.DemoSpec(t), csv.String()); err != nil {
		t.Fatal(err)
	}
	e.publish(1, 0)

	// Claim everyone listed: each gets its own notice id.
	type record struct {
		status   impactv1.Status
		cohorts  string
		noticeID string
	}
	want := map[string]record{}
	notices := impactv1.NewNoticeServiceClient(e.admin)
	seenIDs := map[string]bool{}
	for _, s := range subjects {
		r, listed := rows[s]
		if !listed {
			want[s] = record{status: impactv1.Status_NOT_AFFECTED}
			continue
		}
		resp, err := notices.ClaimNotice(testclient.WithToken(context.Background(), e.adminTk),
			&impactv1.ClaimNoticeRequest{IncidentId: demo.IncidentID, SubjectId: s, IdempotencyKey: "prop:" + s})
		if err != nil {
			t.Fatal(err)
		}
		id := resp.GetClaim().GetNoticeId()
		if id == "" || seenIDs[id] {
			t.Fatalf("notice id %q empty or reused", id)
		}
		seenIDs[id] = true
		want[s] = record{status: apiStatus[r.status], cohorts: r.cohorts, noticeID: id}
	}
	tokens := map[string]string{}
	for _, s := range subjects {
		tokens[s] = e.Token(t, s)
	}
	got := func(a *impactv1.StatusAnswer) record {
		var cs []string
		for _, c := range a.GetCohorts() {
			cs = append(cs, c.GetId())
		}
		return record{status: a.GetStatus(), cohorts: strings.Join(cs, ";"), noticeID: a.GetNoticeId()}
	}
	client := impactv1.NewStatusServiceClient(e.public)
	for i := 0; i < 1000; i++ {
		a := subjects[rng.IntN(n)]
		b := subjects[rng.IntN(n)]
		for b == a {
			b = subjects[rng.IntN(n)]
		}
		var ans *impactv1.StatusAnswer
		if i%2 == 0 {
			r, err := client.GetMyStatus(testclient.WithToken(context.Background(), tokens[a]), &impactv1.GetMyStatusRequest{IncidentId: demo.IncidentID})
			if err != nil {
				t.Fatalf("pair %d gRPC: %v", i, err)
			}
			ans = r.GetAnswer()
		} else {
			code, _, body := e.rest("GET", e.Addrs.HTTP, "/v1/incidents/"+demo.IncidentID+"/status", tokens[a], "")
			if code != 200 {
				t.Fatalf("pair %d REST: %d %s", i, code, body)
			}
			ans = &impactv1.StatusAnswer{}
			if err := protojson.Unmarshal(body, ans); err != nil {
				t.Fatal(err)
			}
		}
		g := got(ans)
		if g != want[a] {
			t.Fatalf("pair %d: token for %s got %+v, want its own %+v", i, a, g, want[a])
		}
		if want[a] != want[b] && g == want[b] {
			t.Fatalf("pair %d: token for %s yielded %s's record", i, a, b)
		}
	}
}

// TestRequestValidation: every rule broken yields INVALID_ARGUMENT naming
// the field and the rule, never the value, over both transports.
func TestRequestValidation(t *testing.T) {
	e := startEnv(t)
	e.WaitReady(t)
	ctx := testclient.WithToken(context.Background(), e.adminTk)
	patient := testclient.WithToken(context.Background(), e.Token(t, "alice"))
	snap := impactv1.NewSnapshotServiceClient(e.admin)
	notices := impactv1.NewNoticeServiceClient(e.admin)
	inc := demo.IncidentID
	secret := "secret-patient-id"
	for _, tc := range []struct {
		name   string
		call   func() error
		fields []string
	}{
		{"status incident", func() error {
			_, err := impactv1.NewStatusServiceClient(e.public).GetMyStatus(patient, &impactv1.GetMyStatusRequest{IncidentId: "MMH 2025"})
			return err
		}, []string{"incident_id"}},
		{"publish", func() error {
			_, err := snap.PublishSnapshot(ctx, &impactv1.PublishSnapshotRequest{IncidentId: inc})
			return err
		}, []string{"version", "expected_visible_version"}},
		{"rollback", func() error {
			_, err := snap.RollbackSnapshot(ctx, &impactv1.RollbackSnapshotRequest{IncidentId: strings.Repeat("a", 65), ExpectedVisibleVersion: proto.Uint32(1)})
			return err
		}, []string{"incident_id", "to_version"}},
		{"diff", func() error {
			_, err := snap.DiffSnapshots(ctx, &impactv1.DiffSnapshotsRequest{IncidentId: inc})
			return err
		}, []string{"version"}},
		{"list", func() error {
			_, err := snap.ListSnapshots(ctx, &impactv1.ListSnapshotsRequest{})
			return err
		}, []string{"incident_id"}},
		{"stats", func() error {
			_, err := notices.GetNoticeStats(ctx, &impactv1.GetNoticeStatsRequest{IncidentId: "-" + secret + "\x00"})
			return err
		}, []string{"incident_id"}},
		{"claim empty", func() error {
			_, err := notices.ClaimNotice(ctx, &impactv1.ClaimNoticeRequest{IncidentId: inc})
			return err
		}, []string{"subject_id", "idempotency_key"}},
		{"claim control", func() error {
			_, err := notices.ClaimNotice(ctx, &impactv1.ClaimNoticeRequest{IncidentId: inc, SubjectId: secret + "\n", IdempotencyKey: strings.Repeat("k", 257)})
			return err
		}, []string{"subject_id", "idempotency_key"}},
		{"claim long", func() error {
			_, err := notices.ClaimNotice(ctx, &impactv1.ClaimNoticeRequest{IncidentId: inc, SubjectId: strings.Repeat(secret, 10), IdempotencyKey: "k"})
			return err
		}, []string{"subject_id"}},
		{"claim spaces", func() error {
			_, err := notices.ClaimNotice(ctx, &impactv1.ClaimNoticeRequest{IncidentId: inc, SubjectId: " " + secret, IdempotencyKey: "k"})
			return err
		}, []string{"subject_id"}},
		{"wave", func() error {
			s, err := notices.ClaimNotices(ctx)
			if err != nil {
				return err
			}
			if err := s.Send(&impactv1.ClaimNoticesRequest{IncidentId: inc, SubjectId: secret + "\t", IdempotencyKey: "k"}); err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}, []string{"subject_id"}},
		{"upload no part", func() error {
			s, err := snap.UploadSnapshot(ctx)
			if err != nil {
				return err
			}
			if err := s.Send(&impactv1.UploadSnapshotRequest{}); err != nil {
				return err
			}
			_, err = s.CloseAndRecv()
			return err
		}, []string{"part"}},
		{"upload header", func() error {
			s, err := snap.UploadSnapshot(ctx)
			if err != nil {
				return err
			}
			if err := s.Send(&impactv1.UploadSnapshotRequest{Part: &impactv1.UploadSnapshotRequest_Header{Header: &impactv1.UploadHeader{IncidentId: "X"}}}); err != nil {
				return err
			}
			_, err = s.CloseAndRecv()
			return err
		}, []string{"header.incident_id", "header.spec"}},
	} {
		err := tc.call()
		st := grpcstatus.Convert(err)
		if st.Code() != codes.InvalidArgument || strings.Contains(st.Message(), secret) {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var fields []string
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				for _, v := range br.GetFieldViolations() {
					fields = append(fields, v.GetField())
					if strings.Contains(v.GetDescription(), secret) {
						t.Fatalf("%s: value echoed: %v", tc.name, v)
					}
				}
			}
		}
		if !slices.Equal(fields, tc.fields) {
			t.Fatalf("%s: violations %v, want %v (%v)", tc.name, fields, tc.fields, err)
		}
		for _, f := range tc.fields {
			if !strings.Contains(st.Message(), f+" ") {
				t.Fatalf("%s: message %q does not name %s", tc.name, st.Message(), f)
			}
		}
	}
	// REST: 400 naming the field.
	code, _, body := e.rest("POST", e.Addrs.AdminHTTP, "/v1/incidents/"+inc+"/notices:claim", e.adminTk,
		`{"subject_id":"`+secret+`\u0007","idempotency_key":"k"}`)
	if code != 400 || !bytes.Contains(body, []byte("subject_id must not contain control characters")) || bytes.Contains(body, []byte(secret)) {
		t.Fatalf("REST claim with a bad subject: %d %s", code, body)
	}
}

// TestRequestSizeLimits: REST bodies over the cap are refused with 413
// (declared length) or 400 (streamed), before any handler runs.
func TestRequestSizeLimits(t *testing.T) {
	e := startEnvWith(t, impacttest.Options{Config: server.Config{MaxBodyBytes: 1 << 10}}, clientCreds{})
	e.WaitReady(t)
	big := `{"subject_id":"x","idempotency_key":"` + strings.Repeat("k", 2<<10) + `"}`
	code, _, body := e.rest("POST", e.Addrs.AdminHTTP, "/v1/incidents/"+demo.IncidentID+"/notices:claim", e.adminTk, big)
	if code != 413 || !bytes.Contains(body, []byte("larger than 1024 bytes")) {
		t.Fatalf("oversized body: %d %s", code, body)
	}
	// Without a declared length (chunked), the body is cut at the cap.
	req, _ := http.NewRequest("POST", "http://"+e.Addrs.AdminHTTP+"/v1/incidents/"+demo.IncidentID+"/notices:claim",
		io.MultiReader(strings.NewReader(big)))
	req.Header.Set("Authorization", "Bearer "+e.adminTk)
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 && resp.StatusCode != 413 {
		t.Fatalf("chunked oversized body: %d", resp.StatusCode)
	}
	// Oversized headers are refused by the HTTP server.
	code, _, _ = call(t, http.DefaultClient, "GET", "http://"+e.Addrs.HTTP+"/v1/status", "", "", "X-Pad", strings.Repeat("p", 64<<10))
	if code != 431 {
		t.Fatalf("oversized header: %d", code)
	}
}
