package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func readAll(t *testing.T, f DevFiles) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, p := range []string{f.JWKSFile, f.PrivateKeyFile, f.PepperFile} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[p] = b
	}
	return out
}

func TestEnsureDevKeys(t *testing.T) {
	data := t.TempDir()
	f, err := EnsureDevKeys(data)
	if err != nil {
		t.Fatal(err)
	}
	if f.Dir != filepath.Join(data, "dev") || filepath.Dir(f.JWKSFile) != f.Dir ||
		filepath.Base(f.PrivateKeyFile) != "signing-key.pem" || filepath.Base(f.JWKSFile) != "jwks.json" || filepath.Base(f.PepperFile) != "pepper" {
		t.Fatalf("unexpected paths %+v", f)
	}
	for _, p := range []string{f.PrivateKeyFile, f.PepperFile} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %o, want 0600", p, st.Mode().Perm())
		}
	}
	first := readAll(t, f)

	// The JWKS holds one ES256 key whose kid is the RFC 7638 thumbprint.
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(first[f.JWKSFile], &set); err != nil {
		t.Fatal(err)
	}
	key, err := loadDevKey(f.PrivateKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := thumbprint(&key.PublicKey)
	if len(set.Keys) != 1 || set.Keys[0]["alg"] != "ES256" || set.Keys[0]["kid"] != kid || set.Keys[0]["kty"] != "EC" || set.Keys[0]["d"] != "" {
		t.Fatalf("jwks = %s", first[f.JWKSFile])
	}
	if pepper, err := LoadPepper(f.PepperFile); err != nil || len(pepper) != 32 {
		t.Fatalf("pepper: %d bytes, %v", len(pepper), err)
	}

	// Idempotent: a second run changes nothing.
	f2, err := EnsureDevKeys(data)
	if err != nil {
		t.Fatal(err)
	}
	if f2 != f {
		t.Fatalf("paths changed: %+v vs %+v", f2, f)
	}
	for p, b := range readAll(t, f2) {
		if string(b) != string(first[p]) {
			t.Errorf("%s changed on the second run", p)
		}
	}

	// A lost JWKS is rebuilt from the key, identically.
	if err := os.Remove(f.JWKSFile); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureDevKeys(data); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(f.JWKSFile); string(b) != string(first[f.JWKSFile]) {
		t.Error("rebuilt JWKS differs")
	}
	// No temporary files are left behind.
	ents, _ := os.ReadDir(f.Dir)
	if len(ents) != 3 {
		t.Errorf("dev dir holds %d entries, want 3", len(ents))
	}
}

func TestThumbprintRFC7638(t *testing.T) {
	// RFC 7638 computes over {"crv","kty","x","y"} in that order; check
	// against the key's own coordinates through the JWKS the dev code emits.
	k := mustEC(elliptic.P256())
	a, err := thumbprint(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := thumbprint(&mustEC(elliptic.P256()).PublicKey)
	if a == b || len(a) != 43 {
		t.Fatalf("thumbprints %q %q", a, b)
	}
}

func TestEnsureDevKeysConcurrent(t *testing.T) {
	data := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = EnsureDevKeys(data)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Whoever won, the key and the JWKS agree.
	tok, err := MintDevToken(data, "alice", nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	v := devVerifier(t, data)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
}

func devVerifier(t *testing.T, data string) *Verifier {
	t.Helper()
	f, err := EnsureDevKeys(data)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(context.Background(), Config{JWKSFile: f.JWKSFile, Issuer: DevIssuer, Audience: DevAudience})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func TestMintDevTokenRoundTrip(t *testing.T) {
	data := t.TempDir()
	tok, err := MintDevToken(data, "alice", []string{ScopeAdmin, ScopeNotify}, 0)
	if err != nil {
		t.Fatal(err)
	}
	v := devVerifier(t, data)
	p, err := v.Authenticate(context.Background(), "Bearer "+tok)
	if err != nil {
		t.Fatalf("%v (reason %s)", err, Reason(err))
	}
	if p.Subject != "alice" || !slices.Equal(p.Scopes, []string{ScopeAdmin, ScopeNotify}) {
		t.Fatalf("principal %+v", p)
	}

	// The token carries the documented claims and header.
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	c := parsed.Claims.(jwt.MapClaims)
	for _, name := range []string{"iss", "aud", "sub", "scope", "iat", "nbf", "exp"} {
		if _, ok := c[name]; !ok {
			t.Errorf("claim %s missing", name)
		}
	}
	if parsed.Header["alg"] != "ES256" || parsed.Header["kid"] == "" {
		t.Errorf("header %v", parsed.Header)
	}
	exp, _ := c.GetExpirationTime()
	iat, _ := c.GetIssuedAt()
	if d := exp.Sub(iat.Time); d != DefaultDevTokenTTL {
		t.Errorf("ttl = %s, want %s", d, DefaultDevTokenTTL)
	}

	// Without scopes: no scope claim, no scopes.
	tok, err = MintDevToken(data, "bob", nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := v.Verify(context.Background(), tok); err != nil || p.Subject != "bob" || len(p.Scopes) != 0 {
		t.Fatalf("%+v %v", p, err)
	}

	// A dev token does not pass a verifier for another issuer.
	other, err := NewVerifier(context.Background(), Config{JWKSFile: filepath.Join(data, "dev", "jwks.json"), Issuer: "https://id.example.test", Audience: DevAudience})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Verify(context.Background(), tok); Reason(err) != string(reasonIssuer) {
		t.Fatalf("other issuer: %v", err)
	}
}

func TestMintDevTokenErrors(t *testing.T) {
	data := t.TempDir()
	for _, tt := range []struct {
		sub    string
		scopes []string
		ttl    time.Duration
	}{
		{"", nil, time.Minute},
		{"alice", []string{"a b"}, time.Minute},
		{"alice", []string{""}, time.Minute},
		{"alice", nil, -time.Minute},
	} {
		if _, err := MintDevToken(data, tt.sub, tt.scopes, tt.ttl); err == nil {
			t.Errorf("%+v accepted", tt)
		}
	}
	if _, err := EnsureDevKeys(""); err == nil {
		t.Error("empty data dir accepted")
	}
	// A corrupt key is an error, not silently replaced.
	f, err := EnsureDevKeys(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.PrivateKeyFile, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureDevKeys(data); err == nil || !strings.Contains(err.Error(), "PEM") {
		t.Errorf("corrupt key: %v", err)
	}
}

func TestMintTokenRefusesWeakAlgs(t *testing.T) {
	k := theKeys()
	for _, alg := range []string{"none", "HS256", "HS512", "", "ES256K"} {
		if _, err := MintToken(k.ec1.signer, "ec1", alg, goodClaims()); err == nil {
			t.Errorf("alg %q accepted", alg)
		}
	}
	// A key that does not suit the algorithm is an error.
	if _, err := MintToken(k.ec1.signer, "ec1", "RS256", goodClaims()); err == nil {
		t.Error("RS256 with an EC key accepted")
	}
	_ = ecdsa.PublicKey{}
}
