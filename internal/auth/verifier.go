package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// Verifier defaults and limits.
const (
	// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway is the largest leeway a Config may ask for.
	MaxLeeway = 60 * time.Second
	// DefaultMaxTokenBytes caps a token's length.
	DefaultMaxTokenBytes = 8 << 10
	// maxMaxTokenBytes is the largest cap a Config may ask for.
	maxMaxTokenBytes = 64 << 10
	// DefaultCacheSize is the number of verified tokens kept.
	DefaultCacheSize = 10000
)

// Config configures a Verifier. Exactly one of JWKSFile and JWKSURL is set;
// Issuer and Audience are required.
type Config struct {
	// JWKSFile is a local JWK Set, read at start and re-read when it changes
	// (checked every RefreshInterval, default 30s).
	JWKSFile string
	// JWKSURL is a JWK Set fetched over https (http for a loopback host only),
	// at start (failing NewVerifier if it cannot be fetched), every
	// RefreshInterval (default 15m), and when a token names an unknown kid
	// (at most once per 30s).
	JWKSURL string
	// Issuer is the required `iss` claim.
	Issuer string
	// Audience must be one of the token's `aud` values.
	Audience string
	// Leeway is the clock skew allowed on exp, nbf and iat: 0 means
	// DefaultLeeway (30s); at most MaxLeeway (60s).
	Leeway time.Duration
	// RefreshInterval is how often the JWKS is re-read (see JWKSFile and
	// JWKSURL for the defaults).
	RefreshInterval time.Duration
	// MaxTokenBytes caps the token's length: 0 means DefaultMaxTokenBytes (8 KiB).
	MaxTokenBytes int
	// CacheSize bounds the cache of verified tokens: 0 means
	// DefaultCacheSize, negative disables the cache.
	CacheSize int
	// Logger receives JWKS refresh problems (never token content); nil means
	// slog.Default().
	Logger *slog.Logger
}

// Verifier verifies bearer tokens. It is safe for concurrent use.
type Verifier struct {
	src      keySource
	parser   *jwt.Parser
	cache    *tokenCache
	maxBytes int
	now      func() time.Time
}

// verifierOptions are test hooks.
type verifierOptions struct {
	now        func() time.Time
	httpClient *http.Client
}

// NewVerifier loads the JWKS and returns a Verifier. ctx bounds the first
// JWKS fetch only; background refresh runs until Close.
func NewVerifier(ctx context.Context, cfg Config) (*Verifier, error) {
	return newVerifier(ctx, cfg, verifierOptions{})
}

func newVerifier(ctx context.Context, cfg Config, o verifierOptions) (*Verifier, error) {
	if (cfg.JWKSFile == "") == (cfg.JWKSURL == "") {
		return nil, errors.New("auth: exactly one of the JWKS file and the JWKS URL must be set")
	}
	if cfg.Issuer == "" {
		return nil, errors.New("auth: issuer is required")
	}
	if cfg.Audience == "" {
		return nil, errors.New("auth: audience is required")
	}
	leeway := cfg.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0 || leeway > MaxLeeway:
		return nil, fmt.Errorf("auth: leeway %s is outside 0..%s", cfg.Leeway, MaxLeeway)
	}
	maxBytes := cfg.MaxTokenBytes
	switch {
	case maxBytes == 0:
		maxBytes = DefaultMaxTokenBytes
	case maxBytes < 0 || maxBytes > maxMaxTokenBytes:
		return nil, fmt.Errorf("auth: max token size %d is outside 1..%d", cfg.MaxTokenBytes, maxMaxTokenBytes)
	}
	if cfg.RefreshInterval < 0 {
		return nil, fmt.Errorf("auth: refresh interval %s is negative", cfg.RefreshInterval)
	}
	cacheSize := cfg.CacheSize
	if cacheSize == 0 {
		cacheSize = DefaultCacheSize
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "auth")
	now := o.now
	if now == nil {
		now = time.Now
	}

	var src keySource
	if cfg.JWKSFile != "" {
		every := cfg.RefreshInterval
		if every == 0 {
			every = defaultFileRefresh
		}
		fs, err := newFileSource(cfg.JWKSFile, every, log)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		src = fs
	} else {
		every := cfg.RefreshInterval
		if every == 0 {
			every = defaultURLRefresh
		}
		client := o.httpClient
		if client == nil {
			client = &http.Client{Timeout: jwksHTTPTimeout}
		}
		us, err := newURLSource(ctx, cfg.JWKSURL, every, client, log)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		src = us
	}

	v := &Verifier{
		src:      src,
		cache:    newTokenCache(cacheSize),
		maxBytes: maxBytes,
		now:      now,
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(supportedAlgs),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
		jwt.WithStrictDecoding(),
	)
	return v, nil
}

// Close stops the background JWKS refresh. The Verifier keeps verifying
// with the keys it holds.
func (v *Verifier) Close() { v.src.close() }

// claims are the claims a Verifier reads.
type claims struct {
	jwt.RegisteredClaims
	Scope string `json:"scope,omitempty"`
	// PracticeID is kept raw so that a claim of the wrong type is refused
	// like any bad token, not by the JSON decoder's message.
	PracticeID json.RawMessage `json:"practice_id,omitempty"`
}

// Authenticate verifies the value of an Authorization header: "Bearer"
// (any case), one or more spaces, the token.
func (v *Verifier) Authenticate(ctx context.Context, authorizationHeader string) (Principal, error) {
	const scheme = "bearer"
	h := authorizationHeader
	if h == "" {
		return Principal{}, fail(reasonMissing)
	}
	if len(h) > len(scheme)+8+v.maxBytes {
		return Principal{}, fail(reasonOversize)
	}
	name, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(name, scheme) {
		return Principal{}, fail(reasonScheme)
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" {
		return Principal{}, fail(reasonMissing)
	}
	return v.Verify(ctx, tok)
}

// Verify verifies a compact JWS token and returns its principal. Every
// failure is ErrUnauthenticated (see Reason).
func (v *Verifier) Verify(ctx context.Context, token string) (Principal, error) {
	switch {
	case token == "":
		return Principal{}, fail(reasonMissing)
	case len(token) > v.maxBytes:
		return Principal{}, fail(reasonOversize)
	}
	switch strings.Count(token, ".") {
	case 2:
	case 4:
		return Principal{}, fail(reasonJWE)
	default:
		return Principal{}, fail(reasonMalformed)
	}

	hash := hashToken(token)
	now := v.now()
	if e, ok := v.cache.get(hash, now); ok {
		if v.keyStillValid(ctx, e) {
			return Principal{Subject: e.subject, Scopes: slices.Clone(e.scopes), Practice: e.practice}, nil
		}
		v.cache.remove(hash)
	}

	var (
		c       claims
		usedKID string
		usedKey crypto.PublicKey
		// Read before the key is looked up: a JWKS change racing the
		// verification leaves the entry at the older generation, so that
		// its first hit re-checks the key.
		gen = v.src.generation()
	)
	tok, err := v.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		kid, key, err := v.keyFor(ctx, t)
		usedKID, usedKey = kid, key
		return key, err
	})
	if err != nil {
		return Principal{}, classify(tok, err)
	}
	if c.Subject == "" {
		return Principal{}, fail(reasonSubject)
	}
	p := Principal{Subject: c.Subject, Scopes: strings.Fields(c.Scope)}
	if p.Practice, err = practiceOf(p, c.PracticeID); err != nil {
		return Principal{}, err
	}
	// exp is required, so c.ExpiresAt is set. A token inside the leeway
	// past its exp is accepted but not cached.
	if exp := c.ExpiresAt.Time; now.Before(exp) {
		e := &cacheEntry{
			hash:     hash,
			subject:  p.Subject,
			scopes:   slices.Clone(p.Scopes),
			practice: p.Practice,
			exp:      exp,
			kid:      usedKID,
			key:      usedKey,
		}
		e.gen.Store(gen)
		v.cache.put(e)
	}
	return p, nil
}

// tokenBufs are scratch buffers for hashToken: hashing a token must not
// allocate a copy of it on every call (it runs on every authenticated call).
var tokenBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// hashToken is the SHA-256 of token, the key of its cache entry. The
// scratch copy is zeroed before it goes back to the pool: no token bytes
// are left lying in reused memory.
func hashToken(token string) [sha256.Size]byte {
	bp := tokenBufs.Get().(*[]byte)
	b := append((*bp)[:0], token...)
	h := sha256.Sum256(b)
	clear(b)
	*bp = b[:0]
	tokenBufs.Put(bp)
	return h
}

// keyFor is the jwt.Keyfunc: it finds the key named by the token's kid and
// pins the algorithm to that key.
func (v *Verifier) keyFor(ctx context.Context, t *jwt.Token) (string, crypto.PublicKey, error) {
	if _, ok := t.Header["crit"]; ok {
		return "", nil, fail(reasonCrit)
	}
	kid, ok := t.Header[jwkset.HeaderKID].(string)
	if !ok || kid == "" {
		return "", nil, fail(reasonNoKID)
	}
	jwk, err := v.src.lookup(ctx, kid)
	if err != nil {
		return "", nil, fail(reasonUnknownKey)
	}
	m := jwk.Marshal()
	pub := publicKeyOf(jwk.Key())
	if pub == nil || !usableForSignatures(m) {
		return "", nil, fail(reasonUnknownKey)
	}
	if !slices.Contains(algsForKey(string(m.ALG), pub), t.Method.Alg()) {
		return "", nil, fail(reasonKeyMismatch)
	}
	return kid, pub, nil
}

// keyStillValid reports whether the key that verified a cached token is
// still in the JWKS, unchanged: a key removed (revoked) from the JWKS stops
// its cached tokens at once. While the JWKS is the one the token was
// verified with (same generation), it is.
func (v *Verifier) keyStillValid(ctx context.Context, e *cacheEntry) bool {
	gen := v.src.generation() // before the check: a change during it is checked next time
	if e.gen.Load() == gen {
		return true
	}
	if !v.keyInSet(ctx, e) {
		return false
	}
	e.gen.Store(gen)
	return true
}

// keyInSet reports whether the JWKS holds e's key under e's kid, usable for
// signatures.
func (v *Verifier) keyInSet(ctx context.Context, e *cacheEntry) bool {
	jwk, err := v.src.current(ctx, e.kid)
	if err != nil {
		return false
	}
	if !usableForSignatures(jwk.Marshal()) {
		return false
	}
	pub := publicKeyOf(jwk.Key())
	// Fast path: the JWKS still holds the very key object.
	switch a := e.key.(type) {
	case *ecdsa.PublicKey:
		if b, ok := pub.(*ecdsa.PublicKey); ok && a == b {
			return true
		}
	case *rsa.PublicKey:
		if b, ok := pub.(*rsa.PublicKey); ok && a == b {
			return true
		}
	}
	eq, ok := pub.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(e.key)
}

// classify maps a jwt parse error to a reason.
func classify(tok *jwt.Token, err error) error {
	var ae *authError
	if errors.As(err, &ae) {
		return ae
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fail(reasonMalformed)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return fail(reasonMissingClaim)
	case errors.Is(err, jwt.ErrTokenExpired):
		return fail(reasonExpired)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return fail(reasonNotYetValid)
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return fail(reasonIssuedFuture)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return fail(reasonIssuer)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return fail(reasonAudience)
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return fail(reasonClaims)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// No keyfunc error: the alg is unknown or missing.
		return fail(reasonAlg)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if tok != nil && tok.Method != nil && !slices.Contains(supportedAlgs, tok.Method.Alg()) {
			return fail(reasonAlg)
		}
		return fail(reasonSignature)
	}
	return fail(reasonMalformed)
}
