package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

const (
	testIssuer   = "https://id.example.test"
	testAudience = "impact-test"
)

// testKey is a signing key and how it is published in the JWKS.
type testKey struct {
	kid    string
	alg    string // JWK "alg"; empty to publish without one
	use    string // JWK "use"
	signer crypto.Signer
}

type testKeys struct {
	ec1, ec2, ecNoAlg, ec384, rsa1, ed1, other *testKey
}

var (
	keysOnce sync.Once
	keys     testKeys
)

func mustEC(curve elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// theKeys returns keys generated once per test binary (RSA is slow).
func theKeys() testKeys {
	keysOnce.Do(func() {
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		_, ek, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		keys = testKeys{
			ec1:     &testKey{kid: "ec1", alg: "ES256", use: "sig", signer: mustEC(elliptic.P256())},
			ec2:     &testKey{kid: "ec2", alg: "ES256", use: "sig", signer: mustEC(elliptic.P256())},
			ecNoAlg: &testKey{kid: "ec-noalg", signer: mustEC(elliptic.P256())},
			ec384:   &testKey{kid: "ec384", alg: "ES384", signer: mustEC(elliptic.P384())},
			rsa1:    &testKey{kid: "rsa1", alg: "", use: "sig", signer: rk},
			ed1:     &testKey{kid: "ed1", alg: "EdDSA", signer: ek},
			// other is never published.
			other: &testKey{kid: "other", alg: "ES256", signer: mustEC(elliptic.P256())},
		}
	})
	return keys
}

// jwksJSON renders the public JWK Set of ks.
func jwksJSON(t testing.TB, ks ...*testKey) []byte {
	t.Helper()
	var set jwkset.JWKSMarshal
	for _, k := range ks {
		jwk, err := jwkset.NewJWKFromKey(k.signer.Public(), jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: k.kid, ALG: jwkset.ALG(k.alg), USE: jwkset.USE(k.use)},
		})
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeJWKS(t testing.TB, path string, ks ...*testKey) {
	t.Helper()
	if err := os.WriteFile(path, jwksJSON(t, ks...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// advanceMTime moves path's modification time a second past its current
// one, so that a reload sees a rewrite even within the file system's
// timestamp resolution.
func advanceMTime(t testing.TB, path string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	next := st.ModTime().Add(time.Second)
	if err := os.Chtimes(path, next, next); err != nil {
		t.Fatal(err)
	}
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

var testEpoch = time.Unix(1_800_000_000, 0)

func newClock() *clock { return &clock{now: testEpoch} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// fileVerifier returns a Verifier on a JWKS file holding ks, and the file.
func fileVerifier(t testing.TB, c *clock, cfg Config, ks ...*testKey) (*Verifier, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jwks.json")
	writeJWKS(t, path, ks...)
	cfg.JWKSFile = path
	if cfg.Issuer == "" {
		cfg.Issuer = testIssuer
	}
	if cfg.Audience == "" {
		cfg.Audience = testAudience
	}
	v, err := newVerifier(context.Background(), cfg, verifierOptions{now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v, path
}

// allKeys are the keys the standard test JWKS publishes.
func allKeys() []*testKey {
	k := theKeys()
	return []*testKey{k.ec1, k.ec2, k.ecNoAlg, k.ec384, k.rsa1, k.ed1}
}

// goodClaims are valid claims at testEpoch.
func goodClaims() jwt.MapClaims {
	now := testEpoch.Unix()
	return jwt.MapClaims{
		"iss":   testIssuer,
		"aud":   testAudience,
		"sub":   "patient-1",
		"scope": "impact.admin impact.notify",
		"iat":   now - 10,
		"nbf":   now - 10,
		"exp":   now + 300,
	}
}

// with returns a copy of c with changes applied; a nil value deletes.
func with(c jwt.MapClaims, changes map[string]any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for k, v := range changes {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// sign signs claims with k under alg (k.alg, or ES256/RS256/EdDSA by type,
// when alg is empty) with kid in the header.
func sign(t testing.TB, k *testKey, kid, alg string, c jwt.MapClaims) string {
	t.Helper()
	if alg == "" {
		alg = k.alg
	}
	if alg == "" {
		switch k.signer.(type) {
		case *rsa.PrivateKey:
			alg = "RS256"
		case ed25519.PrivateKey:
			alg = "EdDSA"
		default:
			alg = "ES256"
		}
	}
	s, err := MintToken(k.signer, kid, alg, c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sha256Sum(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}
