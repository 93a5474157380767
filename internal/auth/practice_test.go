package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestVerifyPracticeClaim(t *testing.T) {
	k := theKeys()
	for _, cache := range []int{-1, 0} {
		v, _ := fileVerifier(t, newClock(), Config{CacheSize: cache}, allKeys()...)
		ok := []struct {
			name   string
			claims map[string]any
			want   string
		}{
			{"practice token", map[string]any{"scope": ScopePractice, "practice_id": "PR001"}, "PR001"},
			{"longest id", map[string]any{"scope": "openid " + ScopePractice, "practice_id": strings.Repeat("a", 64)}, strings.Repeat("a", 64)},
			{"roster charset", map[string]any{"scope": ScopePractice, "practice_id": "gp.north_01-A"}, "gp.north_01-A"},
			// Without the practice scope the claim grants nothing.
			{"patient token with a practice id", map[string]any{"practice_id": "PR001"}, ""},
			{"patient token", map[string]any{}, ""},
		}
		for _, tc := range ok {
			tok := sign(t, k.ec1, "ec1", "", with(goodClaims(), tc.claims))
			for range 2 { // the second time from the cache, when on
				p, err := v.Verify(context.Background(), tok)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				if p.Practice != tc.want || p.IsPractice() != (tc.want != "") {
					t.Errorf("%s: practice %q (is practice %v), want %q", tc.name, p.Practice, p.IsPractice(), tc.want)
				}
			}
		}
		bad := []struct {
			name   string
			claims map[string]any
		}{
			{"missing", map[string]any{"scope": ScopePractice}},
			{"empty", map[string]any{"scope": ScopePractice, "practice_id": ""}},
			{"over-long", map[string]any{"scope": ScopePractice, "practice_id": strings.Repeat("a", 65)}},
			{"number", map[string]any{"scope": ScopePractice, "practice_id": 1001}},
			{"list", map[string]any{"scope": ScopePractice, "practice_id": []string{"PR001"}}},
			{"null", map[string]any{"scope": ScopePractice, "practice_id": nil}},
			{"bad characters", map[string]any{"scope": ScopePractice, "practice_id": "PR 001"}},
			{"malformed without the scope", map[string]any{"practice_id": 7}},
		}
		for _, tc := range bad {
			tok := sign(t, k.ec1, "ec1", "", with(goodClaims(), tc.claims))
			_, err := v.Verify(context.Background(), tok)
			if !errors.Is(err, ErrUnauthenticated) || err.Error() != "unauthenticated" {
				t.Errorf("%s: error %v, want the one unauthenticated error", tc.name, err)
			}
			if tc.name != "null" && Reason(err) != "invalid_practice" {
				t.Errorf("%s: reason %q", tc.name, Reason(err))
			}
		}
	}
}

func TestMintDevPracticeToken(t *testing.T) {
	dir := t.TempDir()
	files, err := EnsureDevKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(context.Background(), Config{JWKSFile: files.JWKSFile, Issuer: DevIssuer, Audience: DevAudience})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	tok, err := MintDevPracticeToken(dir, "dr-who", "PR001", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "dr-who" || p.Practice != "PR001" || !p.HasScope(ScopePractice) {
		t.Errorf("principal %+v", p)
	}
	if _, err := MintDevPracticeToken(dir, "dr-who", "PR 001", nil, time.Hour); err == nil {
		t.Error("a malformed practice id was minted")
	}
}
