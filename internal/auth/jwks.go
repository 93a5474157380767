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
	"golang.org/x/sync/singleflight"
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
	// lookup returns the JWK named kid. When kid is unknown it may refresh
	// the set first (rate-limited, never waiting for the rate limit).
	lookup(ctx context.Context, kid string) (jwkset.JWK, error)
	// current returns the JWK named kid from the set as it is, without any
	// refresh: the re-check of a cached token's key.
	current(ctx context.Context, kid string) (jwkset.JWK, error)
	// generation numbers the set as it is: it changes whenever the set
	// may have (a reload, a fetch), never back to an earlier value, and is
	// never 0. A cached token verified at the current generation needs no
	// re-check of its key.
	generation() uint64
	close()
}

// genStorage is a JWK storage that counts its writes: its generation
// moves on after every change of the set (jwkset's HTTP storage replaces
// the set on each fetch).
type genStorage struct {
	jwkset.Storage
	gen atomic.Uint64
}

func newGenStorage() *genStorage {
	s := &genStorage{Storage: jwkset.NewMemoryStorage()}
	s.gen.Store(1)
	return s
}

func (s *genStorage) generation() uint64 { return s.gen.Load() }

func (s *genStorage) KeyDelete(ctx context.Context, keyID string) (bool, error) {
	defer s.gen.Add(1)
	return s.Storage.KeyDelete(ctx, keyID)
}

func (s *genStorage) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	defer s.gen.Add(1)
	return s.Storage.KeyReplaceAll(ctx, given)
}

func (s *genStorage) KeyWrite(ctx context.Context, jwk jwkset.JWK) error {
	defer s.gen.Add(1)
	return s.Storage.KeyWrite(ctx, jwk)
}

// errRateLimited: an unknown kid did not trigger a refresh because one ran
// recently.
var errRateLimited = errors.New("jwks refresh rate-limited")

// refresher runs the rate-limited refresh on an unknown kid: at most one per
// unknownKIDEvery; requests arriving while one runs share it, and requests
// arriving after the rate limit is spent are refused at once rather than
// queued.
type refresher struct {
	gate *rate.Limiter
	sf   singleflight.Group
	run  func(ctx context.Context) error
}

func newRefresher(run func(ctx context.Context) error) *refresher {
	return &refresher{gate: rate.NewLimiter(rate.Every(unknownKIDEvery), 1), run: run}
}

// refresh refreshes the set (or joins a running refresh) unless the rate
// limit is spent. The refresh itself is detached from ctx, so that one
// caller giving up does not fail the others; ctx bounds this caller's wait.
func (r *refresher) refresh(ctx context.Context) error {
	ch := r.sf.DoChan("refresh", func() (any, error) {
		if !r.gate.Allow() {
			return nil, errRateLimited
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jwksHTTPTimeout)
		defer cancel()
		return nil, r.run(rctx)
	})
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return ctx.Err()
	}
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
			fits = algsES256
		case elliptic.P384():
			fits = algsES384
		case elliptic.P521():
			fits = algsES512
		}
	case *rsa.PublicKey:
		if pub.N.BitLen() >= minRSABits {
			fits = algsRSA
		}
	case ed25519.PublicKey:
		fits = algsEdDSA
	}
	if jwkAlg == "" || fits == nil {
		return fits
	}
	if i := slices.Index(fits, jwkAlg); i >= 0 {
		return fits[i : i+1]
	}
	return nil
}

// The algorithms each key type may verify. Read only.
var (
	algsES256 = []string{"ES256"}
	algsES384 = []string{"ES384"}
	algsES512 = []string{"ES512"}
	algsRSA   = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	algsEdDSA = []string{"EdDSA"}
)

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

var errNoUsableKey = errors.New("JWKS has no usable signature key (each needs a kid, an EC P-256/384/521, RSA >= 2048 or Ed25519 key, use \"sig\" if any, and a matching alg if any)")

// usableJWK reports whether a JWK can verify tokens here.
func usableJWK(jwk jwkset.JWK) bool {
	m := jwk.Marshal()
	pub := publicKeyOf(jwk.Key())
	return m.KID != "" && pub != nil && usableForSignatures(m) && len(algsForKey(string(m.ALG), pub)) > 0
}

func hasUsableKey(keys []jwkset.JWK) bool {
	for _, k := range keys {
		if usableJWK(k) {
			return true
		}
	}
	return false
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
		if !usableJWK(jwk) {
			continue
		}
		if err := store.KeyWrite(context.Background(), jwk); err != nil {
			return nil, 0, fmt.Errorf("JWKS key %d: %w", i, err)
		}
		usable++
	}
	if usable == 0 {
		return nil, 0, errNoUsableKey
	}
	return store, usable, nil
}

// fileSource is a JWKS read from a local file, re-read when its size or
// modification time changes.
type fileSource struct {
	path    string
	log     *slog.Logger
	cur     atomic.Pointer[fileState]
	gens    atomic.Uint64 // the last generation given to a fileState
	refresh *refresher
	cancel  context.CancelFunc
	done    chan struct{}
}

type fileState struct {
	store jwkset.Storage
	size  int64
	mod   time.Time
	gen   uint64 // this load's generation (1 for the first)
}

func newFileSource(path string, every time.Duration, log *slog.Logger) (*fileSource, error) {
	s := &fileSource{path: path, log: log, done: make(chan struct{})}
	st, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(st)
	s.refresh = newRefresher(func(context.Context) error { s.reloadIfChanged(); return nil })
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
	return &fileState{store: store, size: fi.Size(), mod: fi.ModTime(), gen: s.gens.Add(1)}, nil
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

func (s *fileSource) current(ctx context.Context, kid string) (jwkset.JWK, error) {
	return s.cur.Load().store.KeyRead(ctx, kid)
}

func (s *fileSource) generation() uint64 { return s.cur.Load().gen }

func (s *fileSource) lookup(ctx context.Context, kid string) (jwkset.JWK, error) {
	jwk, err := s.current(ctx, kid)
	if err == nil {
		return jwk, nil
	}
	// An unknown kid: the file may have changed since the last poll. Even
	// when this caller may not refresh, another caller may just have.
	_ = s.refresh.refresh(ctx)
	return s.current(ctx, kid)
}

func (s *fileSource) close() {
	s.cancel()
	<-s.done
}

// urlSource is a JWKS fetched over HTTPS by jwkset (the JWKS storage
// underneath keyfunc): refreshed every interval, and on an unknown kid
// through a refresher.
type urlSource struct {
	client  jwkset.Storage // fetches when asked for an unknown kid
	set     jwkset.Storage // the keys as last fetched; reads never fetch
	keys    *genStorage    // where set keeps them
	refresh *refresher
	cancel  context.CancelFunc
	once    sync.Once
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
	keys := newGenStorage()
	set, err := jwkset.NewStorageFromHTTP(rawURL, jwkset.HTTPClientStorageOptions{
		Client:          client,
		Ctx:             bg,
		HTTPTimeout:     jwksHTTPTimeout,
		RefreshInterval: every,
		Storage:         keys,
		RefreshErrorHandler: func(_ context.Context, err error) {
			log.Warn("jwks refresh failed; keeping current keys", "error", err)
		},
	})
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("JWKS URL: first fetch failed: %w", err)
	}
	// The client refreshes the set when asked for an unknown kid; our
	// refresher decides when to ask, so the client's own limiter is open.
	storage, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{rawURL: set},
		RateLimitWaitMax:  jwksHTTPTimeout,
		RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1),
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("JWKS URL: %w", err)
	}
	if keys, _ := set.KeyReadAll(ctx); !hasUsableKey(keys) {
		cancel()
		return nil, fmt.Errorf("JWKS URL: %w", errNoUsableKey)
	}
	s := &urlSource{client: storage, set: set, keys: keys, cancel: cancel}
	s.refresh = newRefresher(func(ctx context.Context) error {
		// Reading a kid that cannot exist makes the client fetch.
		_, err := s.client.KeyRead(ctx, "\x00refresh")
		if errors.Is(err, jwkset.ErrKeyNotFound) {
			return nil
		}
		return err
	})
	return s, nil
}

func (s *urlSource) current(ctx context.Context, kid string) (jwkset.JWK, error) {
	return s.set.KeyRead(ctx, kid)
}

func (s *urlSource) generation() uint64 { return s.keys.generation() }

func (s *urlSource) lookup(ctx context.Context, kid string) (jwkset.JWK, error) {
	jwk, err := s.current(ctx, kid)
	if err == nil {
		return jwk, nil
	}
	// Even when this caller may not refresh, another caller may just have.
	_ = s.refresh.refresh(ctx)
	return s.current(ctx, kid)
}

func (s *urlSource) close() { s.once.Do(s.cancel) }
