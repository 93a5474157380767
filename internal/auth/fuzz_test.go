package auth

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// FuzzAuthenticate feeds arbitrary Authorization headers to a Verifier: it
// must never panic, must fail only with the opaque ErrUnauthenticated, and
// may accept only the one validly signed token (whose principal is known).
func FuzzAuthenticate(f *testing.F) {
	k := theKeys()
	v, _ := fileVerifier(f, newClock(), Config{}, allKeys()...)
	valid := sign(f, k.ec1, "ec1", "", goodClaims())
	seeds := []string{
		"",
		"Bearer " + valid,
		"bearer " + valid,
		"Bearer " + sign(f, k.rsa1, "rsa1", "", goodClaims()),
		"Bearer " + sign(f, k.ed1, "ed1", "", goodClaims()),
		"Bearer " + sign(f, k.rsa1, "ec1", "RS256", goodClaims()),
		"Bearer " + sign(f, k.ec1, "ec1", "", with(goodClaims(), map[string]any{"sub": nil})),
		"Bearer a.b.c",
		"Bearer a.b.c.d.e",
		"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
		"Basic dXNlcjpwYXNz",
		"Bearer " + strings.Repeat(".", 100),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	accepted := map[string]Principal{}
	for _, s := range seeds[1:5] {
		p, err := v.Authenticate(context.Background(), s)
		if err != nil {
			f.Fatalf("seed rejected: %v (reason %s)", err, Reason(err))
		}
		accepted[strings.TrimSpace(s[len("Bearer "):])] = p
	}
	f.Fuzz(func(t *testing.T, header string) {
		p, err := v.Authenticate(context.Background(), header)
		if err != nil {
			if !errors.Is(err, ErrUnauthenticated) || err.Error() != "unauthenticated" || Reason(err) == "" {
				t.Fatalf("bad error %v", err)
			}
			if p.Subject != "" || p.Scopes != nil {
				t.Fatalf("principal on failure: %+v", p)
			}
			return
		}
		// Only a header carrying one of the validly signed tokens passes.
		_, tok, _ := strings.Cut(header, " ")
		want, ok := accepted[strings.TrimLeft(tok, " ")]
		if !ok {
			t.Fatalf("accepted a header that carries no known valid token: %q", header)
		}
		if p.Subject != want.Subject || !slices.Equal(p.Scopes, want.Scopes) {
			t.Fatalf("principal %+v, want %+v", p, want)
		}
	})
}
