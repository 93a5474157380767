package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestVerifyAcceptsValidTokens(t *testing.T) {
	k := theKeys()
	v, _ := fileVerifier(t, newClock(), Config{}, allKeys()...)
	tests := []struct {
		name string
		key  *testKey
		alg  string
	}{
		{"ES256", k.ec1, "ES256"},
		{"ES256 second key", k.ec2, "ES256"},
		{"ES256 key without alg", k.ecNoAlg, "ES256"},
		{"ES384", k.ec384, "ES384"},
		{"RS256 key without alg", k.rsa1, "RS256"},
		{"PS256 key without alg", k.rsa1, "PS256"},
		{"RS512 key without alg", k.rsa1, "RS512"},
		{"EdDSA", k.ed1, "EdDSA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := sign(t, tt.key, tt.key.kid, tt.alg, goodClaims())
			p, err := v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatalf("Verify: %v (reason %s)", err, Reason(err))
			}
			if p.Subject != "patient-1" {
				t.Errorf("Subject = %q", p.Subject)
			}
			if !slices.Equal(p.Scopes, []string{ScopeAdmin, ScopeNotify}) {
				t.Errorf("Scopes = %q", p.Scopes)
			}
			if !p.HasScope(ScopeAdmin) || !p.HasScope(ScopeNotify) || p.HasScope("impact") || p.HasScope("") {
				t.Errorf("HasScope wrong for %q", p.Scopes)
			}
		})
	}
}

func TestVerifyScopes(t *testing.T) {
	k := theKeys()
	v, _ := fileVerifier(t, newClock(), Config{CacheSize: -1}, allKeys()...)
	tests := []struct {
		scope any
		want  []string
	}{
		{nil, nil},
		{"", nil},
		{"impact.notify", []string{ScopeNotify}},
		{"  impact.admin   openid ", []string{ScopeAdmin, "openid"}},
	}
	for _, tt := range tests {
		tok := sign(t, k.ec1, "ec1", "", with(goodClaims(), map[string]any{"scope": tt.scope}))
		p, err := v.Verify(context.Background(), tok)
		if err != nil {
			t.Fatalf("scope %q: %v", tt.scope, err)
		}
		if !slices.Equal(p.Scopes, tt.want) {
			t.Errorf("scope %q: Scopes = %q, want %q", tt.scope, p.Scopes, tt.want)
		}
		if p.HasScope(ScopeAdmin) != slices.Contains(tt.want, ScopeAdmin) {
			t.Errorf("scope %q: HasScope(admin) wrong", tt.scope)
		}
	}
}

// rawToken assembles a token from a header, claims and signature bytes.
func rawToken(t *testing.T, header map[string]any, claims jwt.MapClaims, sig []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(h) + "." + enc.EncodeToString(c) + "." + enc.EncodeToString(sig)
}

func TestVerifyRejects(t *testing.T) {
	k := theKeys()
	c := newClock()
	v, _ := fileVerifier(t, c, Config{CacheSize: -1}, allKeys()...)
	now := testEpoch.Unix()

	ecPubDER, err := x509.MarshalPKIXPublicKey(k.ec1.signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	ecPubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecPubDER})
	jwksBytes := jwksJSON(t, allKeys()...)

	hmacToken := func(secret []byte, kid string) string {
		tk := jwt.NewWithClaims(jwt.SigningMethodHS256, goodClaims())
		tk.Header["kid"] = kid
		s, err := tk.SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	noneToken := func(kid string) string {
		tk := jwt.NewWithClaims(jwt.SigningMethodNone, goodClaims())
		if kid != "" {
			tk.Header["kid"] = kid
		}
		s, err := tk.SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := sign(t, k.ec1, "ec1", "", goodClaims())
	parts := strings.Split(good, ".")
	tamperedClaims := base64.RawURLEncoding.EncodeToString([]byte(
		`{"iss":"` + testIssuer + `","aud":"` + testAudience + `","sub":"patient-2","exp":` + jsonInt(now+300) + `}`))

	tests := []struct {
		name   string
		token  string
		reason reason
	}{
		{"empty", "", reasonMissing},
		{"garbage", "not a token", reasonMalformed},
		{"garbage three parts", "a.b.c", reasonMalformed},
		{"many dots", strings.Repeat(".", 5000), reasonMalformed},
		{"JWE five parts", "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d", reasonJWE},
		{"oversize", parts[0] + "." + strings.Repeat("A", DefaultMaxTokenBytes) + "." + parts[2], reasonOversize},
		{"wrong signature (other key, published kid)", sign(t, k.other, "ec1", "ES256", goodClaims()), reasonSignature},
		{"tampered claims", parts[0] + "." + tamperedClaims + "." + parts[2], reasonSignature},
		{"signature stripped", parts[0] + "." + parts[1] + ".", reasonSignature},
		{"unknown kid", sign(t, k.other, "other", "ES256", goodClaims()), reasonUnknownKey},
		{"missing kid", sign(t, k.ec1, "", "ES256", goodClaims()), reasonNoKID},
		{"alg none with kid", noneToken("ec1"), reasonAlg},
		{"alg none without kid", noneToken(""), reasonAlg},
		{"alg none spelled NoNe", rawToken(t, map[string]any{"alg": "NoNe", "kid": "ec1"}, goodClaims(), nil), reasonAlg},
		{"alg unknown", rawToken(t, map[string]any{"alg": "XS256", "kid": "ec1"}, goodClaims(), []byte("x")), reasonAlg},
		{"alg missing", rawToken(t, map[string]any{"kid": "ec1"}, goodClaims(), []byte("x")), reasonAlg},
		{"HS256 with public key PEM as secret", hmacToken(ecPubPEM, "ec1"), reasonAlg},
		{"HS256 with public key DER as secret", hmacToken(ecPubDER, "ec1"), reasonAlg},
		{"HS256 with JWKS bytes as secret", hmacToken(jwksBytes, "rsa1"), reasonAlg},
		{"RS256 header with EC key kid", sign(t, k.rsa1, "ec1", "RS256", goodClaims()), reasonKeyMismatch},
		{"EdDSA header with EC key kid", sign(t, k.ed1, "ec1", "EdDSA", goodClaims()), reasonKeyMismatch},
		{"ES256 header with RSA key kid", sign(t, k.ec1, "rsa1", "ES256", goodClaims()), reasonKeyMismatch},
		{"ES384 header with P-256 key without alg", sign(t, k.ec384, "ec-noalg", "ES384", goodClaims()), reasonKeyMismatch},
		{"ES256 header with P-384 key", sign(t, k.ec1, "ec384", "ES256", goodClaims()), reasonKeyMismatch},
		{"crit header", rawToken(t, map[string]any{"alg": "ES256", "kid": "ec1", "crit": []string{"exp"}}, goodClaims(), []byte("x")), reasonCrit},
		{"expired", sign(t, k.ec1, "ec1", "", with(goodClaims(), map[string]any{"exp": now - 31})), reasonExpired},
		{"expired long ago", sign(t, k.ec1, "ec1", "", with(goodClaims(), map[string]any{"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600})), reasonExpired},
		{"exp missing", sign(t, k.ec1, "ec1", "", with(goodClaims(), map[string]any{"exp": nil})), reasonMissingClaim},
		{"exp not a number", sign(t, k.ec1, "ec1", "", with(goodClaims(), map[string]any{"exp": "tomorrow"})), reasonMalformed},
		{"nbf beyond leeway", sign(t, k.ec1, "ec1", "", with(goodClaims(), map[string]any{"nbf": now + 31})), reasonNotYetValid},
		{"iat beyond leeway", sign(t, k.ec1, "ec1", "", with(goodClaims(), map[string]any{"iat": now + 31, "nbf": nil})), reasonIssuedFuture},
		{"wrong issuer", sign(t, k.ec1, "ec1", "", with(goodClaims(), map[string]any{"iss": "https://evil.test"})), reasonIssuer},
		{"issuer missing", sign(t, k.ec1, "ec1", "", with(goodClaims(), map[string]any{"iss": nil})), reasonMissingClaim},
		{"wrong audience", sign(t, k.ec1, "ec1", "", with(goodClaims(), map[string]any{"aud": "other-service"})), reasonAudience},
		{"wrong audience list", sign(t, k.ec1, "ec1", "", with(goodClaims(), map[string]any{"aud": []string{"a", "b"}})), reasonAudience},
		{"audience missing", sign(t, k.ec1, "ec1", "", with(goodClaims(), map[string]any{"aud": nil})), reasonMissingClaim},
		{"sub missing", sign(t, k.ec1, "ec1", "", with(goodClaims(), map[string]any{"sub": nil})), reasonSubject},
		{"sub empty", sign(t, k.ec1, "ec1", "", with(goodClaims(), map[string]any{"sub": ""})), reasonSubject},
		{"scope not a string", sign(t, k.ec1, "ec1", "", with(goodClaims(), map[string]any{"scope": []string{ScopeAdmin}})), reasonMalformed},
		{"padded base64", parts[0] + "=." + parts[1] + "." + parts[2], reasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), tt.token)
			if err == nil {
				t.Fatalf("accepted: %+v", p)
			}
			if !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("error %v does not wrap ErrUnauthenticated", err)
			}
			if err.Error() != "unauthenticated" {
				t.Errorf("error text %q leaks detail", err.Error())
			}
			if got := Reason(err); got != string(tt.reason) {
				t.Errorf("Reason = %q, want %q", got, tt.reason)
			}
			if p.Subject != "" || p.Scopes != nil {
				t.Errorf("principal not empty on failure: %+v", p)
			}
		})
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestVerifyLeeway(t *testing.T) {
	k := theKeys()
	now := testEpoch.Unix()
	tests := []struct {
		name   string
		leeway time.Duration
		claims map[string]any
		ok     bool
	}{
		{"exp just past, default leeway", 0, map[string]any{"exp": now - 29}, true},
		{"exp past default leeway", 0, map[string]any{"exp": now - 31}, false},
		{"nbf within default leeway", 0, map[string]any{"nbf": now + 29}, true},
		{"iat within default leeway", 0, map[string]any{"iat": now + 29, "nbf": nil}, true},
		{"exp within 60s leeway", 60 * time.Second, map[string]any{"exp": now - 59}, true},
		{"exp past 60s leeway", 60 * time.Second, map[string]any{"exp": now - 61}, false},
		{"exp past 5s leeway", 5 * time.Second, map[string]any{"exp": now - 6}, false},
		{"nbf past 5s leeway", 5 * time.Second, map[string]any{"nbf": now + 6}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := fileVerifier(t, newClock(), Config{Leeway: tt.leeway}, k.ec1)
			_, err := v.Verify(context.Background(), sign(t, k.ec1, "ec1", "", with(goodClaims(), tt.claims)))
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v (reason %s), want ok=%v", err, Reason(err), tt.ok)
			}
		})
	}
}

func TestAuthenticateHeader(t *testing.T) {
	k := theKeys()
	v, _ := fileVerifier(t, newClock(), Config{}, k.ec1)
	tok := sign(t, k.ec1, "ec1", "", goodClaims())
	tests := []struct {
		header string
		reason reason // "" = accepted
	}{
		{"Bearer " + tok, ""},
		{"bearer " + tok, ""},
		{"BEARER " + tok, ""},
		{"Bearer    " + tok, ""},
		{"", reasonMissing},
		{"Bearer", reasonScheme},
		{"Bearer ", reasonMissing},
		{"Bearer    ", reasonMissing},
		{"Basic " + tok, reasonScheme},
		{"Bearer" + tok, reasonScheme},
		{tok, reasonScheme},
		{"Bearer\t" + tok, reasonScheme},
		{"Bearer " + tok + " ", reasonMalformed},
		{"Bearer " + tok + " extra", reasonMalformed},
		{"Bearer " + strings.Repeat("a", 9000), reasonOversize},
		{"Bearer " + strings.Repeat(" ", 9000) + tok, reasonOversize},
	}
	for i, tt := range tests {
		p, err := v.Authenticate(context.Background(), tt.header)
		if tt.reason == "" {
			if err != nil || p.Subject != "patient-1" {
				t.Errorf("case %d: got %+v, %v (reason %s)", i, p, err, Reason(err))
			}
			continue
		}
		if !errors.Is(err, ErrUnauthenticated) || err.Error() != "unauthenticated" {
			t.Errorf("case %d: err = %v", i, err)
		}
		if Reason(err) != string(tt.reason) {
			t.Errorf("case %d: Reason = %q, want %q", i, Reason(err), tt.reason)
		}
	}
}

func TestNewVerifierConfig(t *testing.T) {
	k := theKeys()
	dir := t.TempDir()
	path := dir + "/jwks.json"
	writeJWKS(t, path, k.ec1)
	empty := dir + "/empty.json"
	if err := os.WriteFile(empty, []byte(`{"keys":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	hmacOnly := dir + "/oct.json"
	if err := os.WriteFile(hmacOnly, []byte(`{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0","alg":"HS256"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	base := Config{JWKSFile: path, Issuer: testIssuer, Audience: testAudience}
	tests := []struct {
		name string
		edit func(*Config)
		want string // substring of the error; "" = ok
	}{
		{"ok", func(*Config) {}, ""},
		{"leeway 60s", func(c *Config) { c.Leeway = 60 * time.Second }, ""},
		{"no source", func(c *Config) { c.JWKSFile = "" }, "exactly one"},
		{"two sources", func(c *Config) { c.JWKSURL = "https://id.example.test/jwks" }, "exactly one"},
		{"no issuer", func(c *Config) { c.Issuer = "" }, "issuer"},
		{"no audience", func(c *Config) { c.Audience = "" }, "audience"},
		{"leeway too large", func(c *Config) { c.Leeway = 61 * time.Second }, "leeway"},
		{"leeway negative", func(c *Config) { c.Leeway = -time.Second }, "leeway"},
		{"max token negative", func(c *Config) { c.MaxTokenBytes = -1 }, "max token"},
		{"max token huge", func(c *Config) { c.MaxTokenBytes = 1 << 20 }, "max token"},
		{"refresh negative", func(c *Config) { c.RefreshInterval = -time.Second }, "refresh"},
		{"missing file", func(c *Config) { c.JWKSFile = dir + "/nope.json" }, "no such file"},
		{"empty JWKS", func(c *Config) { c.JWKSFile = empty }, "no usable"},
		{"symmetric-only JWKS", func(c *Config) { c.JWKSFile = hmacOnly }, "no usable"},
		{"http URL to a remote host", func(c *Config) { c.JWKSFile, c.JWKSURL = "", "http://id.example.test/jwks" }, "https"},
		{"ftp URL", func(c *Config) { c.JWKSFile, c.JWKSURL = "", "ftp://id.example.test/jwks" }, "https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.edit(&cfg)
			v, err := NewVerifier(context.Background(), cfg)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				v.Close()
				return
			}
			if err == nil {
				v.Close()
				t.Fatalf("accepted, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestCheckJWKSURL(t *testing.T) {
	for u, ok := range map[string]bool{
		"https://id.example.test/.well-known/jwks.json": true,
		"http://127.0.0.1:8080/jwks":                    true,
		"http://[::1]:8080/jwks":                        true,
		"http://localhost/jwks":                         true,
		"http://id.example.test/jwks":                   false,
		"http://10.0.0.1/jwks":                          false,
		"https:///jwks":                                 false,
		"file:///etc/jwks.json":                         false,
		"jwks.json":                                     false,
	} {
		if err := checkJWKSURL(u); (err == nil) != ok {
			t.Errorf("%s: err = %v, want ok=%v", u, err, ok)
		}
	}
}

func TestCacheHonoursExp(t *testing.T) {
	k := theKeys()
	c := newClock()
	v, _ := fileVerifier(t, c, Config{}, k.ec1)
	exp := testEpoch.Add(60 * time.Second)
	tok := sign(t, k.ec1, "ec1", "", with(goodClaims(), map[string]any{"exp": exp.Unix()}))

	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if n := v.cache.len(); n != 1 {
		t.Fatalf("cache holds %d entries, want 1", n)
	}
	// A cache hit returns the same principal, and the caller cannot change
	// the cached one.
	p, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	p.Scopes[0] = "impact.root"
	p, err = v.Verify(context.Background(), tok)
	if err != nil || p.Scopes[0] != ScopeAdmin {
		t.Fatalf("cached principal changed: %+v, %v", p, err)
	}

	// Past exp but within the leeway: the entry is dead, the token is
	// re-verified (accepted by the leeway) and not cached again.
	c.Set(exp.Add(10 * time.Second))
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("within leeway: %v", err)
	}
	if n := v.cache.len(); n != 0 {
		t.Fatalf("cache holds %d entries after exp, want 0", n)
	}
	// Past exp and the leeway: rejected.
	c.Set(exp.Add(31 * time.Second))
	_, err = v.Verify(context.Background(), tok)
	if Reason(err) != string(reasonExpired) {
		t.Fatalf("err = %v (reason %s), want expired", err, Reason(err))
	}
}

func TestCachedExpiredTokenRejected(t *testing.T) {
	// Even a cached entry (no re-verification on a hit) dies at exp.
	k := theKeys()
	c := newClock()
	v, _ := fileVerifier(t, c, Config{Leeway: time.Second}, k.ec1)
	exp := testEpoch.Add(5 * time.Minute)
	tok := sign(t, k.ec1, "ec1", "", with(goodClaims(), map[string]any{"exp": exp.Unix()}))
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	c.Set(exp.Add(-time.Second))
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("before exp: %v", err)
	}
	c.Set(exp.Add(2 * time.Second))
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("after exp: err = %v", err)
	}
}

func TestCacheBound(t *testing.T) {
	k := theKeys()
	v, _ := fileVerifier(t, newClock(), Config{CacheSize: 4}, k.ec1)
	var toks []string
	for i := range 10 {
		tok := sign(t, k.ec1, "ec1", "", with(goodClaims(), map[string]any{"sub": "patient-" + jsonInt(int64(i))}))
		toks = append(toks, tok)
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
		if n := v.cache.len(); n > 4 {
			t.Fatalf("cache holds %d entries, cap 4", n)
		}
		// Keep the first token hot: LRU keeps it.
		if _, err := v.Verify(context.Background(), toks[0]); err != nil {
			t.Fatal(err)
		}
	}
	now := v.now()
	if _, ok := v.cache.get(hashOf(toks[0]), now); !ok {
		t.Error("recently used token was evicted")
	}
	if _, ok := v.cache.get(hashOf(toks[1]), now); ok {
		t.Error("least recently used token was kept")
	}
	if _, ok := v.cache.get(hashOf(toks[9]), now); !ok {
		t.Error("newest token missing")
	}
	// The cache holds hashes, never tokens.
	for h := range v.cache.items {
		for _, tok := range toks {
			if strings.Contains(tok, string(h[:])) {
				t.Fatal("cache key contains token bytes")
			}
		}
	}
}

func TestCacheDisabled(t *testing.T) {
	k := theKeys()
	v, _ := fileVerifier(t, newClock(), Config{CacheSize: -1}, k.ec1)
	tok := sign(t, k.ec1, "ec1", "", goodClaims())
	for range 3 {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.cache.len(); n != 0 {
		t.Fatalf("disabled cache holds %d entries", n)
	}
}

func hashOf(tok string) [32]byte {
	var h [32]byte
	copy(h[:], sha256Sum(tok))
	return h
}

func TestFileReload(t *testing.T) {
	k := theKeys()
	c := newClock()
	// A long interval: the test drives reloads itself.
	v, path := fileVerifier(t, c, Config{RefreshInterval: time.Hour}, k.ec1)
	fs := v.src.(*fileSource)
	tok1 := sign(t, k.ec1, "ec1", "", goodClaims())
	tok2 := sign(t, k.ec2, "ec2", "", goodClaims())
	if _, err := v.Verify(context.Background(), tok1); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), tok2); Reason(err) != string(reasonUnknownKey) {
		t.Fatalf("ec2 before rotation: %v", err)
	}

	bump := func() {
		t.Helper()
		advanceMTime(t, path)
		fs.reloadIfChanged()
	}

	// Rotation: ec2 added, ec1 removed. The cached ec1 token stops at once.
	writeJWKS(t, path, k.ec2)
	bump()
	if _, err := v.Verify(context.Background(), tok2); err != nil {
		t.Fatalf("ec2 after rotation: %v", err)
	}
	if _, err := v.Verify(context.Background(), tok1); Reason(err) != string(reasonUnknownKey) {
		t.Fatalf("cached ec1 token after its key was removed: %v (reason %s)", err, Reason(err))
	}

	// A broken file keeps the current keys.
	if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	bump()
	if _, err := v.Verify(context.Background(), tok2); err != nil {
		t.Fatalf("after a broken rewrite: %v", err)
	}

	// A kid rebound to a different key: the cached token is not accepted.
	rebound := *k.other
	rebound.kid = "ec2"
	writeJWKS(t, path, &rebound)
	bump()
	if _, err := v.Verify(context.Background(), tok2); Reason(err) != string(reasonSignature) {
		t.Fatalf("cached token after kid rebound: %v (reason %s)", err, Reason(err))
	}
}

func TestFileUnknownKIDReload(t *testing.T) {
	k := theKeys()
	v, path := fileVerifier(t, newClock(), Config{RefreshInterval: time.Hour}, k.ec1)
	fs := v.src.(*fileSource)
	rewrite := func(ks ...*testKey) {
		t.Helper()
		writeJWKS(t, path, ks...)
		advanceMTime(t, path)
	}
	// A token naming a kid that the changed file now holds is accepted at
	// once, without waiting for the hourly poll.
	rewrite(k.ec1, k.ec2)
	if _, err := v.Verify(context.Background(), sign(t, k.ec2, "ec2", "", goodClaims())); err != nil {
		t.Fatalf("new kid: %v (reason %s)", err, Reason(err))
	}
	// A second change right after: the unknown-kid re-read is rate-limited,
	// so the new key waits for the poll.
	rewrite(k.ec1, k.ec2, k.ed1)
	tokEd := sign(t, k.ed1, "ed1", "", goodClaims())
	if _, err := v.Verify(context.Background(), tokEd); Reason(err) != string(reasonUnknownKey) {
		t.Fatalf("rate-limited re-read: %v (reason %s)", err, Reason(err))
	}
	fs.reloadIfChanged()
	if _, err := v.Verify(context.Background(), tokEd); err != nil {
		t.Fatalf("after poll: %v", err)
	}
}

// jwksServer serves a JWK Set that the test can replace, counting fetches.
type jwksServer struct {
	*httptest.Server
	body    atomic.Pointer[[]byte]
	fetches atomic.Int64
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	s := &jwksServer{}
	s.body.Store(&body)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(*s.body.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(body []byte) { s.body.Store(&body) }

func urlVerifier(t *testing.T, url string, refresh time.Duration) *Verifier {
	t.Helper()
	v, err := newVerifier(context.Background(), Config{
		JWKSURL: url, Issuer: testIssuer, Audience: testAudience, RefreshInterval: refresh,
	}, verifierOptions{now: newClock().Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func TestJWKSURLRotation(t *testing.T) {
	k := theKeys()
	srv := newJWKSServer(t, jwksJSON(t, k.ec1))
	v := urlVerifier(t, srv.URL, time.Hour)
	ctx := context.Background()
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("fetches at start = %d, want 1", n)
	}
	if _, err := v.Verify(ctx, sign(t, k.ec1, "ec1", "", goodClaims())); err != nil {
		t.Fatal(err)
	}

	// The identity provider publishes a new key: a token naming it is
	// accepted without a restart, after one fetch.
	srv.set(jwksJSON(t, k.ec1, k.ec2))
	if _, err := v.Verify(ctx, sign(t, k.ec2, "ec2", "", goodClaims())); err != nil {
		t.Fatalf("new kid after rotation: %v (reason %s)", err, Reason(err))
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("fetches after rotation = %d, want 2", n)
	}

	// Unknown kids do not make the verifier hammer the JWKS endpoint: the
	// refresh is rate-limited and the request is refused at once.
	for range 5 {
		_, err := v.Verify(ctx, sign(t, k.other, "other", "", goodClaims()))
		if Reason(err) != string(reasonUnknownKey) {
			t.Fatalf("unknown kid: %v (reason %s)", err, Reason(err))
		}
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("fetches after unknown kids = %d, want 2", n)
	}
	// Known keys still work.
	if _, err := v.Verify(ctx, sign(t, k.ec1, "ec1", "", goodClaims())); err != nil {
		t.Fatal(err)
	}
}

func TestJWKSURLConcurrentNewKID(t *testing.T) {
	k := theKeys()
	srv := newJWKSServer(t, jwksJSON(t, k.ec1))
	v := urlVerifier(t, srv.URL, time.Hour)
	srv.set(jwksJSON(t, k.ec1, k.ec2))
	tok := sign(t, k.ec2, "ec2", "", goodClaims())
	errs := make(chan error, 16)
	for range cap(errs) {
		go func() {
			_, err := v.Verify(context.Background(), tok)
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Errorf("concurrent new kid: %v (reason %s)", err, Reason(err))
		}
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2 (one shared refresh)", n)
	}
}

func TestJWKSURLPeriodicRefreshRevokes(t *testing.T) {
	k := theKeys()
	srv := newJWKSServer(t, jwksJSON(t, k.ec1, k.ec2))
	v := urlVerifier(t, srv.URL, 20*time.Millisecond)
	ctx := context.Background()
	tok1 := sign(t, k.ec1, "ec1", "", goodClaims())
	if _, err := v.Verify(ctx, tok1); err != nil {
		t.Fatal(err)
	}
	// ec1 is withdrawn; after the next periodic refresh its cached token
	// is refused.
	srv.set(jwksJSON(t, k.ec2))
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := v.Verify(ctx, tok1)
		if err != nil {
			if Reason(err) != string(reasonUnknownKey) {
				t.Fatalf("reason %s, want unknown_key", Reason(err))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("withdrawn key still accepted after 10s of 20ms refreshes")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := v.Verify(ctx, sign(t, k.ec2, "ec2", "", goodClaims())); err != nil {
		t.Fatal(err)
	}
}

func TestJWKSURLUnavailableAtStart(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	_, err := NewVerifier(context.Background(), Config{JWKSURL: srv.URL, Issuer: testIssuer, Audience: testAudience})
	if err == nil || !strings.Contains(err.Error(), "first fetch failed") {
		t.Fatalf("err = %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	k := theKeys()
	ok := newJWKSServer(t, jwksJSON(t, k.ec1))
	if _, err := NewVerifier(ctx, Config{JWKSURL: ok.URL, Issuer: testIssuer, Audience: testAudience}); err == nil {
		t.Fatal("NewVerifier with a cancelled context succeeded")
	}
}

func TestReasonOfOtherErrors(t *testing.T) {
	if Reason(nil) != "" || Reason(errors.New("x")) != "" {
		t.Fatal("Reason of a foreign error is not empty")
	}
	var _ *ecdsa.PublicKey // keep import honest if cases change
}

func TestAlgsForKey(t *testing.T) {
	k := theKeys()
	ec := k.ec1.signer.Public()
	ec384 := k.ec384.signer.Public()
	rsaPub := k.rsa1.signer.Public()
	ed := k.ed1.signer.Public()
	weakRSA := &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), 1023), E: 65537}
	tests := []struct {
		alg  string
		pub  any
		want []string
	}{
		{"", ec, []string{"ES256"}},
		{"ES256", ec, []string{"ES256"}},
		{"ES384", ec, nil},
		{"RS256", ec, nil},
		{"HS256", ec, nil},
		{"none", ec, nil},
		{"", ec384, []string{"ES384"}},
		{"", rsaPub, []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}},
		{"PS384", rsaPub, []string{"PS384"}},
		{"ES256", rsaPub, nil},
		{"", weakRSA, nil},
		{"RS256", weakRSA, nil},
		{"", ed, []string{"EdDSA"}},
		{"ES256", ed, nil},
		{"", []byte("secret"), nil},
		{"HS256", []byte("secret"), nil},
	}
	for i, tt := range tests {
		if got := algsForKey(tt.alg, tt.pub); !slices.Equal(got, tt.want) {
			t.Errorf("case %d (%s, %T): %q, want %q", i, tt.alg, tt.pub, got, tt.want)
		}
	}
}

func TestEncryptionKeyNotUsedForSignatures(t *testing.T) {
	k := theKeys()
	enc := *k.ec2
	enc.use = "enc"
	tok := sign(t, k.ec2, "ec2", "", goodClaims())
	// File source: the key is dropped when the JWKS is read.
	v, _ := fileVerifier(t, newClock(), Config{}, k.ec1, &enc)
	if _, err := v.Verify(context.Background(), tok); Reason(err) != string(reasonUnknownKey) {
		t.Fatalf("file: %v (reason %s)", err, Reason(err))
	}
	// URL source: jwkset keeps it; the verifier refuses it.
	srv := newJWKSServer(t, jwksJSON(t, k.ec1, &enc))
	uv := urlVerifier(t, srv.URL, time.Hour)
	if _, err := uv.Verify(context.Background(), tok); Reason(err) != string(reasonUnknownKey) {
		t.Fatalf("url: %v (reason %s)", err, Reason(err))
	}
}
