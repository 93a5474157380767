package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"golang.org/x/time/rate"
)

// Defaults and limits of the key sources.
const (
	defaultURLRefresh  = 15 * time.Minute
	defaultFileRefresh = 30 * time.Second
	// unknownKIDEvery is the minimum interval between two JWKS fetches caused
	// by tokens naming an unknown kid. A request that would wait longer is
	// rejected at once, so garbage kids cannot stall requests or flood the
	// identity provider.
	unknownKIDEvery = 30 * time.Second
	// jwksHTTPTimeout bounds one JWKS fetch.
	jwksHTTPTimeout = 10 * time.Second
	// maxJWKSFileBytes bounds a JWKS file.
	maxJWKSFileBytes = 1 << 20
	// minRSABits is the smallest RSA modulus accepted for signatures.
	minRSABits = 2048
)

// supportedAlgs are the asymmetric JWS algorithms a Verifier accepts at all
// (jwt.WithValidMethods); each key further pins the one (or, for an RSA key
// without "alg", the family) it may be used with. none and HS* are never in it.
var supportedAlgs = []string{
	"ES256", "ES384", "ES512",
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"EdDSA",
}

// keySource finds a verification key by kid.
type keySource interface {
	// storage is the current JWK set. For a URL source, a read of an
	// unknown kid may refresh it (rate-limited) before failing.
	storage() jwkset.Storage
	close()
}

// publicKeyOf returns the public key of a JWK's key, or nil when the key is
// not one a signature may be verified with (symmetric, X25519, ...).
func publicKeyOf(k any) crypto.PublicKey {
	switch k := k.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		return k
	case *ecdsa.PrivateKey:
		return &k.PublicKey
	case *rsa.PrivateKey:
		return &k.PublicKey
	case ed25519.PrivateKey:
		return k.Public()
	}
	return nil
}

// algsForKey returns the algorithms a key may verify: its JWK "alg" when set
// (and consistent with the key), otherwise the one its type and curve imply
// (RSA: RS* and PS*). An empty result means the key is unusable.
func algsForKey(jwkAlg string, pub crypto.PublicKey) []string {
	var fits []string
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			fits = []string{"ES256"}
		case elliptic.P384():
			fits = []string{"ES384"}
		case elliptic.P521():
			fits = []string{"ES512"}
		}
	case *rsa.PublicKey:
		if pub.N.BitLen() >= minRSABits {
			fits = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
		}
	case ed25519.PublicKey:
		fits = []string{"EdDSA"}
	}
	if jwkAlg == "" {
		return fits
	}
	if slices.Contains(fits, jwkAlg) {
		return []string{jwkAlg}
	}
	return nil
}

// usableForSignatures reports whether a JWK's "use" and "key_ops" allow
// verifying signatures.
func usableForSignatures(m jwkset.JWKMarshal) bool {
	if m.USE != "" && m.USE != jwkset.UseSig {
		return false
	}
	if len(m.KEYOPS) > 0 && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify) {
		return false
	}
	return true
}

// parseJWKS parses a JWK Set, keeping the keys usable for signatures and
// skipping key types this library does not support. It fails on malformed
// JSON, on a malformed key, or when no usable key with a kid remains.
func parseJWKS(raw []byte) (jwkset.Storage, int, error) {
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, 0, fmt.Errorf("JWKS is not valid JSON: %w", err)
	}
	store := jwkset.NewMemoryStorage()
	usable := 0
	for i, m := range set.Keys {
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{Private: true}, jwkset.JWKValidateOptions{})
		switch {
		case errors.Is(err, jwkset.ErrUnsupportedKey):
			continue
		case err != nil:
			return nil, 0, fmt.Errorf("JWKS key %d: %w", i, err)
		}
		pub := publicKeyOf(jwk.Key())
		if m.KID == "" || pub == nil || !usableForSignatures(m) || len(algsForKey(string(m.ALG), pub)) == 0 {
			continue
		}
		if err := store.KeyWrite(context.Background(), jwk); err != nil {
			return nil, 0, fmt.Errorf("JWKS key %d: %w", i, err)
		}
		usable++
	}
	if usable == 0 {
		return nil, 0, errors.New("JWKS has no usable signature key (each needs a kid, an EC P-256/384/521, RSA >= 2048 or Ed25519 key, and a matching alg if any)")
	}
	return store, usable, nil
}

// fileSource is a JWKS read from a local file, re-read when its size or
// modification time changes.
type fileSource struct {
	path   string
	log    *slog.Logger
	cur    atomic.Pointer[fileState]
	cancel context.CancelFunc
	done   chan struct{}
}

type fileState struct {
	store jwkset.Storage
	size  int64
	mod   time.Time
}

func newFileSource(path string, every time.Duration, log *slog.Logger) (*fileSource, error) {
	s := &fileSource{path: path, log: log, done: make(chan struct{})}
	st, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(st)
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.watch(ctx, every)
	return s, nil
}

func (s *fileSource) load() (*fileState, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, fmt.Errorf("JWKS file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("JWKS file: %w", err)
	}
	if fi.Size() > maxJWKSFileBytes {
		return nil, fmt.Errorf("JWKS file %s is larger than %d bytes", s.path, maxJWKSFileBytes)
	}
	raw := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, raw); err != nil {
		return nil, fmt.Errorf("JWKS file: %w", err)
	}
	store, _, err := parseJWKS(raw)
	if err != nil {
		return nil, fmt.Errorf("JWKS file %s: %w", s.path, err)
	}
	return &fileState{store: store, size: fi.Size(), mod: fi.ModTime()}, nil
}

func (s *fileSource) watch(ctx context.Context, every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.reloadIfChanged()
	}
}

// reloadIfChanged re-reads the file when its size or modification time
// differs from the loaded one. A file that fails to load leaves the current
// keys in place.
func (s *fileSource) reloadIfChanged() {
	fi, err := os.Stat(s.path)
	if err != nil {
		s.log.Warn("jwks file stat failed; keeping current keys", "error", err)
		return
	}
	cur := s.cur.Load()
	if fi.Size() == cur.size && fi.ModTime().Equal(cur.mod) {
		return
	}
	st, err := s.load()
	if err != nil {
		s.log.Warn("jwks file reload failed; keeping current keys", "error", err)
		return
	}
	s.cur.Store(st)
	s.log.Info("jwks file reloaded", "path", s.path)
}

func (s *fileSource) storage() jwkset.Storage { return s.cur.Load().store }

func (s *fileSource) close() {
	s.cancel()
	<-s.done
}

// urlSource is a JWKS fetched over HTTPS by keyfunc/jwkset: refreshed every
// interval, and on an unknown kid (rate-limited).
type urlSource struct {
	kf     keyfunc.Keyfunc
	cancel context.CancelFunc
	once   sync.Once
}

// checkJWKSURL accepts https URLs, and http only to a loopback host.
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("JWKS URL: %w", err)
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return errors.New("JWKS URL has no host")
		}
		return nil
	case "http":
		host := u.Hostname()
		if host == "localhost" {
			return nil
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return nil
		}
		return errors.New("JWKS URL must use https (http is allowed for a loopback host only)")
	}
	return errors.New("JWKS URL must use https")
}

func newURLSource(ctx context.Context, rawURL string, every time.Duration, client *http.Client, log *slog.Logger) (*urlSource, error) {
	if err := checkJWKSURL(rawURL); err != nil {
		return nil, err
	}
	// The refresh goroutine outlives ctx (which only bounds the first fetch)
	// and ends with Close.
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	failFirst := false
	kf, err := keyfunc.NewDefaultOverrideCtx(bg, []string{rawURL}, keyfunc.Override{
		Client:                    client,
		HTTPTimeout:               jwksHTTPTimeout,
		NoErrorReturnFirstHTTPReq: &failFirst,
		RateLimitWaitMax:          jwksHTTPTimeout,
		RefreshInterval:           every,
		RefreshUnknownKID:         rate.NewLimiter(rate.Every(unknownKIDEvery), 1),
		RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				log.Warn("jwks refresh failed; keeping current keys", "error", err)
			}
		},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("JWKS URL: first fetch failed: %w", err)
	}
	if ctx.Err() != nil {
		cancel()
		return nil, fmt.Errorf("JWKS URL: %w", ctx.Err())
	}
	return &urlSource{kf: kf, cancel: cancel}, nil
}

func (s *urlSource) storage() jwkset.Storage { return s.kf.Storage() }

func (s *urlSource) close() { s.once.Do(s.cancel) }
