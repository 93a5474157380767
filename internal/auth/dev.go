package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Dev mode identity: the issuer and audience of tokens minted by
// MintDevToken, which impactd --dev expects.
const (
	DevIssuer   = "impact-dev"
	DevAudience = "impact"
)

// DefaultDevTokenTTL is the lifetime of a dev token when none is given.
const DefaultDevTokenTTL = time.Hour

// Names of the files under <dataDir>/dev.
const (
	devDirName     = "dev"
	devKeyName     = "signing-key.pem"
	devJWKSName    = "jwks.json"
	devPepperName  = "pepper"
	devPepperBytes = 32
)

// DevFiles are the paths of the dev-mode key material.
type DevFiles struct {
	// Dir is <dataDir>/dev.
	Dir string
	// JWKSFile is the public JWK Set (one ES256 key with its kid).
	JWKSFile string
	// PrivateKeyFile is the EC P-256 signing key, PKCS#8 PEM, mode 0600.
	PrivateKeyFile string
	// PepperFile is 32 random bytes in hex, mode 0600.
	PepperFile string
}

func devFiles(dataDir string) DevFiles {
	dir := filepath.Join(dataDir, devDirName)
	return DevFiles{
		Dir:            dir,
		JWKSFile:       filepath.Join(dir, devJWKSName),
		PrivateKeyFile: filepath.Join(dir, devKeyName),
		PepperFile:     filepath.Join(dir, devPepperName),
	}
}

// EnsureDevKeys creates the dev signing key, its JWKS and a pepper under
// <dataDir>/dev, keeping whichever already exist. It is idempotent and safe
// to run from two processes at once: files are created whole or not at all,
// and never replaced (except jwks.json, which is rewritten from the key when
// it does not match it).
func EnsureDevKeys(dataDir string) (DevFiles, error) {
	if dataDir == "" {
		return DevFiles{}, errors.New("dev keys: data directory is empty")
	}
	f := devFiles(dataDir)
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return DevFiles{}, fmt.Errorf("dev keys: %w", err)
	}

	if _, err := os.Stat(f.PrivateKeyFile); errors.Is(err, fs.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return DevFiles{}, fmt.Errorf("dev keys: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return DevFiles{}, fmt.Errorf("dev keys: %w", err)
		}
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err := createIfAbsent(f.PrivateKeyFile, pemBytes, 0o600); err != nil {
			return DevFiles{}, fmt.Errorf("dev keys: %w", err)
		}
	} else if err != nil {
		return DevFiles{}, fmt.Errorf("dev keys: %w", err)
	}
	key, err := loadDevKey(f.PrivateKeyFile)
	if err != nil {
		return DevFiles{}, err
	}

	jwks, err := devJWKS(&key.PublicKey)
	if err != nil {
		return DevFiles{}, err
	}
	if cur, err := os.ReadFile(f.JWKSFile); err != nil || !bytes.Equal(cur, jwks) {
		if err := replaceFile(f.JWKSFile, jwks, 0o644); err != nil {
			return DevFiles{}, fmt.Errorf("dev keys: %w", err)
		}
	}

	if _, err := os.Stat(f.PepperFile); errors.Is(err, fs.ErrNotExist) {
		p := make([]byte, devPepperBytes)
		if _, err := rand.Read(p); err != nil {
			return DevFiles{}, fmt.Errorf("dev keys: %w", err)
		}
		if err := createIfAbsent(f.PepperFile, []byte(hex.EncodeToString(p)+"\n"), 0o600); err != nil {
			return DevFiles{}, fmt.Errorf("dev keys: %w", err)
		}
	} else if err != nil {
		return DevFiles{}, fmt.Errorf("dev keys: %w", err)
	}
	if _, err := LoadPepper(f.PepperFile); err != nil {
		return DevFiles{}, fmt.Errorf("dev keys: %w", err)
	}
	return f, nil
}

// MintDevToken signs an ES256 token with the dev key under dataDir (created
// if missing): iss DevIssuer, aud DevAudience, the given sub and scopes,
// iat and nbf now, exp now+ttl (DefaultDevTokenTTL when ttl is 0).
func MintDevToken(dataDir, sub string, scopes []string, ttl time.Duration) (string, error) {
	return mintDev(dataDir, sub, scopes, ttl, nil)
}

// mintDev is MintDevToken with extra claims.
func mintDev(dataDir, sub string, scopes []string, ttl time.Duration, extra map[string]any) (string, error) {
	if sub == "" {
		return "", errors.New("dev token: subject is empty")
	}
	for _, s := range scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return "", fmt.Errorf("dev token: scope %q is empty or contains whitespace", s)
		}
	}
	switch {
	case ttl == 0:
		ttl = DefaultDevTokenTTL
	case ttl < 0:
		return "", fmt.Errorf("dev token: ttl %s is negative", ttl)
	}
	f, err := EnsureDevKeys(dataDir)
	if err != nil {
		return "", err
	}
	key, err := loadDevKey(f.PrivateKeyFile)
	if err != nil {
		return "", err
	}
	kid, err := thumbprint(&key.PublicKey)
	if err != nil {
		return "", err
	}
	now := time.Now()
	c := jwt.MapClaims{
		"iss": DevIssuer,
		"aud": DevAudience,
		"sub": sub,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(ttl).Unix(),
	}
	if len(scopes) > 0 {
		c["scope"] = strings.Join(scopes, " ")
	}
	for k, v := range extra {
		c[k] = v
	}
	return MintToken(key, kid, "ES256", c)
}

// MintToken signs claims with key under the asymmetric algorithm alg
// (ES256, RS256, EdDSA, ...; never none or HS*), with kid in the header
// when not empty. The key must suit alg (*ecdsa.PrivateKey for ES*,
// *rsa.PrivateKey for RS* and PS*, ed25519.PrivateKey for EdDSA).
func MintToken(key crypto.Signer, kid, alg string, claims jwt.MapClaims) (string, error) {
	if !slices.Contains(supportedAlgs, alg) {
		return "", fmt.Errorf("mint token: algorithm %q is not supported", alg)
	}
	t := jwt.NewWithClaims(jwt.GetSigningMethod(alg), claims)
	if kid != "" {
		t.Header["kid"] = kid
	}
	s, err := t.SignedString(key)
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return s, nil
}

// loadDevKey reads the dev signing key: PKCS#8 PEM, EC P-256.
func loadDevKey(path string) (*ecdsa.PrivateKey, error) {
	raw, err := os.ReadFile(path) // #nosec G304 -- the operator's own --data-dir, not request input
	if err != nil {
		return nil, fmt.Errorf("dev key: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("dev key %s: not a PKCS#8 PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("dev key %s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("dev key %s: not an EC P-256 key", path)
	}
	return ek, nil
}

// ecCoords returns the fixed-width big-endian X and Y of a P-256 key.
func ecCoords(pub *ecdsa.PublicKey) (x, y []byte, err error) {
	b, err := pub.Bytes() // 0x04 || X || Y
	if err != nil {
		return nil, nil, fmt.Errorf("dev key: %w", err)
	}
	n := (len(b) - 1) / 2
	return b[1 : 1+n], b[1+n:], nil
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of a P-256
// key: the dev key's kid.
func thumbprint(pub *ecdsa.PublicKey) (string, error) {
	x, y, err := ecCoords(pub)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	canon := `{"crv":"P-256","kty":"EC","x":"` + enc.EncodeToString(x) + `","y":"` + enc.EncodeToString(y) + `"}`
	sum := sha256.Sum256([]byte(canon))
	return enc.EncodeToString(sum[:]), nil
}

// devJWKS renders the JWK Set of the dev public key.
func devJWKS(pub *ecdsa.PublicKey) ([]byte, error) {
	x, y, err := ecCoords(pub)
	if err != nil {
		return nil, err
	}
	kid, err := thumbprint(pub)
	if err != nil {
		return nil, err
	}
	type jwk struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Y   string `json:"y"`
		Kid string `json:"kid"`
		Alg string `json:"alg"`
		Use string `json:"use"`
	}
	enc := base64.RawURLEncoding
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{{Kty: "EC", Crv: "P-256", X: enc.EncodeToString(x), Y: enc.EncodeToString(y), Kid: kid, Alg: "ES256", Use: "sig"}}}
	b, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("dev jwks: %w", err)
	}
	return append(b, '\n'), nil
}

// writeTemp writes data to a new temporary file in dir with mode, synced.
func writeTemp(dir string, data []byte, mode os.FileMode) (string, error) {
	t, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", err
	}
	name := t.Name()
	err = t.Chmod(mode)
	if err == nil {
		_, err = t.Write(data)
	}
	if err == nil {
		err = t.Sync()
	}
	if cerr := t.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(name) // best effort: the write error is what matters
		return "", err
	}
	return name, nil
}

// createIfAbsent atomically creates path with data unless it exists: the
// file appears whole or not at all, and a concurrent creator's file wins.
func createIfAbsent(path string, data []byte, mode os.FileMode) error {
	tmp, err := writeTemp(filepath.Dir(path), data, mode)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// replaceFile atomically replaces path with data.
func replaceFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := writeTemp(filepath.Dir(path), data, mode)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp) // best effort: the rename error is what matters
		return err
	}
	return nil
}
