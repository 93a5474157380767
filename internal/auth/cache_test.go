package auth

import (
	"context"
	"strings"
	"testing"
	"time"
)

// cachedEntry returns the cache entry of tok, failing if there is none.
func cachedEntry(t *testing.T, v *Verifier, tok string) *cacheEntry {
	t.Helper()
	e, ok := v.cache.get(hashOf(tok), v.now())
	if !ok {
		t.Fatal("token not cached")
	}
	return e
}

// TestCacheGenerations: a cached token's key is taken on trust while the
// JWKS is the one it was verified with; once the JWKS changes, the first
// hit checks the key again (and moves the entry to the new generation if it
// is still there), and a withdrawn key stops the token.
func TestCacheGenerations(t *testing.T) {
	k := theKeys()
	v, path := fileVerifier(t, newClock(), Config{RefreshInterval: time.Hour}, k.ec1)
	fs := v.src.(*fileSource)
	ctx := context.Background()
	tok := sign(t, k.ec1, "ec1", "", goodClaims())
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	g1 := fs.generation()
	if e := cachedEntry(t, v, tok); e.gen.Load() != g1 {
		t.Fatalf("entry at generation %d, JWKS at %d", e.gen.Load(), g1)
	}
	reload := func(ks ...*testKey) {
		t.Helper()
		writeJWKS(t, path, ks...)
		advanceMTime(t, path)
		fs.reloadIfChanged()
	}

	// ec2 added, ec1 kept: the token is still good, checked once.
	reload(k.ec1, k.ec2)
	g2 := fs.generation()
	if g2 <= g1 {
		t.Fatalf("generation %d after a reload, was %d", g2, g1)
	}
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("after a reload keeping its key: %v", err)
	}
	if e := cachedEntry(t, v, tok); e.gen.Load() != g2 {
		t.Fatalf("entry at generation %d after its check, JWKS at %d", e.gen.Load(), g2)
	}

	// ec1 withdrawn: refused at once, and dropped from the cache.
	reload(k.ec2)
	if _, err := v.Verify(ctx, tok); Reason(err) != string(reasonUnknownKey) {
		t.Fatalf("after its key was withdrawn: %v (reason %s)", err, Reason(err))
	}
	if _, ok := v.cache.get(hashOf(tok), v.now()); ok {
		t.Fatal("a token whose key was withdrawn stays cached")
	}
}

// TestJWKSURLGenerations: every fetch of the JWKS moves the URL source's
// generation on, so that cached tokens are checked against what was
// fetched.
func TestJWKSURLGenerations(t *testing.T) {
	k := theKeys()
	srv := newJWKSServer(t, jwksJSON(t, k.ec1))
	v := urlVerifier(t, srv.URL, time.Hour)
	ctx := context.Background()
	g1 := v.src.generation()
	if g1 == 0 {
		t.Fatal("generation 0")
	}
	tok1 := sign(t, k.ec1, "ec1", "", goodClaims())
	if _, err := v.Verify(ctx, tok1); err != nil {
		t.Fatal(err)
	}
	// A new kid makes the source fetch: ec1 is gone from what it fetched.
	srv.set(jwksJSON(t, k.ec2))
	if _, err := v.Verify(ctx, sign(t, k.ec2, "ec2", "", goodClaims())); err != nil {
		t.Fatalf("new kid: %v", err)
	}
	if g2 := v.src.generation(); g2 <= g1 {
		t.Fatalf("generation %d after a fetch, was %d", g2, g1)
	}
	if _, err := v.Verify(ctx, tok1); Reason(err) != string(reasonUnknownKey) {
		t.Fatalf("cached token of a key no longer served: %v (reason %s)", err, Reason(err))
	}
}

// TestCacheNotPoisoned: only verified tokens enter the cache, keyed by the
// hash of the whole token: a forged variant of a cached token (another
// signature, another payload under its signature, alg none, extra bytes) is
// verified on its own and refused, and leaves the cached token's entry as
// it was.
func TestCacheNotPoisoned(t *testing.T) {
	k := theKeys()
	v, _ := fileVerifier(t, newClock(), Config{}, k.ec1)
	ctx := context.Background()
	tok := sign(t, k.ec1, "ec1", "", goodClaims())
	p, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	other := strings.Split(sign(t, k.ec1, "ec1", "", with(goodClaims(), map[string]any{"sub": "patient-evil"})), ".")
	flip := []byte(parts[2])
	flip[3] ^= 1
	for name, forged := range map[string]string{
		"another signature":              parts[0] + "." + parts[1] + "." + string(flip),
		"another payload, its signature": parts[0] + "." + other[1] + "." + parts[2],
		"its payload, another signature": parts[0] + "." + parts[1] + "." + other[2],
		"signed by another key":          sign(t, k.other, "ec1", "", goodClaims()),
		"alg none":                       "eyJhbGciOiJub25lIiwia2lkIjoiZWMxIn0." + parts[1] + ".",
		"trailing bytes":                 tok + "A",
	} {
		for range 2 { // refused the second time too: nothing was cached
			if got, err := v.Verify(ctx, forged); err == nil {
				t.Fatalf("%s: accepted as %+v", name, got)
			}
		}
		if n := v.cache.len(); n != 1 {
			t.Fatalf("%s: cache holds %d entries, want the genuine token's only", name, n)
		}
	}
	got, err := v.Verify(ctx, tok)
	if err != nil || got.Subject != p.Subject {
		t.Fatalf("genuine token after the forgeries: %+v, %v", got, err)
	}
}

// TestHashToken: the cache key is the token's SHA-256, whatever its length,
// and the scratch copy holds no token bytes afterwards.
func TestHashToken(t *testing.T) {
	for _, n := range []int{0, 1, 355, 1024, 1025, 8 << 10} {
		tok := strings.Repeat("eyJ.", n/4+1)[:n]
		if got := hashToken(tok); got != hashOf(tok) {
			t.Fatalf("hashToken of %d bytes differs from sha256", n)
		}
		bp := tokenBufs.Get().(*[]byte)
		for _, c := range (*bp)[:cap(*bp)] {
			if c != 0 {
				t.Fatalf("scratch buffer keeps token bytes after a %d-byte token", n)
			}
		}
		tokenBufs.Put(bp)
	}
}
