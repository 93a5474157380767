// Package auth verifies the bearer tokens of Impact's callers and derives the
// keys under which stores know subjects.
//
// A Verifier checks JWTs against a JWKS (file or URL) with the algorithm pinned
// to the key, issuer and audience required, expiry required and a bounded
// clock leeway; it returns the caller's Principal (the `sub` claim and the
// space-separated `scope` claim). Every failure is ErrUnauthenticated, with no
// hint of the cause in the error text: the transport maps it to one identical
// UNAUTHENTICATED / 401. Reason gives a fixed, token-free category for debug
// logs.
//
// A Keyer turns a subject id or an idempotency key into a store.Key or
// store.IdemKey: a truncated, domain-separated HMAC-SHA256 under a server-side
// pepper, so no store holds a raw identifier.
//
// EnsureDevKeys and MintDevToken give a single machine a signing key, a JWKS
// and a pepper for local use (impactd --dev, impactctl dev token).
package auth

import (
	"errors"
	"slices"
)

// Scopes that grant access to the ops listener.
const (
	// ScopeAdmin allows snapshot operations (upload, list, diff, publish).
	ScopeAdmin = "impact.admin"
	// ScopeNotify allows notice operations (claim, stats).
	ScopeNotify = "impact.notify"
)

// Principal is an authenticated caller.
type Principal struct {
	// Subject is the token's `sub` claim, never empty.
	Subject string
	// Scopes are the space-separated values of the token's `scope` claim.
	Scopes []string
	// Practice is the token's `practice_id` claim, set only on tokens with
	// the impact.practice scope (see ScopePractice).
	Practice string
}

// HasScope reports whether the principal was granted scope s.
func (p Principal) HasScope(s string) bool {
	return s != "" && slices.Contains(p.Scopes, s)
}

// ErrUnauthenticated is the error of every verification failure. Its text
// says nothing about the cause; use Reason for a debug-log category.
var ErrUnauthenticated = errors.New("unauthenticated")

// reason is a fixed category of verification failure. The set is closed so
// that no token content (kid, claims, header) can reach a log through it.
type reason string

const (
	reasonMissing      reason = "missing_token"
	reasonScheme       reason = "bad_scheme"
	reasonOversize     reason = "oversize"
	reasonMalformed    reason = "malformed"
	reasonJWE          reason = "jwe_not_accepted"
	reasonAlg          reason = "algorithm_not_allowed"
	reasonNoKID        reason = "missing_kid"
	reasonUnknownKey   reason = "unknown_key"
	reasonKeyMismatch  reason = "algorithm_key_mismatch"
	reasonCrit         reason = "critical_header"
	reasonSignature    reason = "bad_signature"
	reasonExpired      reason = "expired"
	reasonNotYetValid  reason = "not_yet_valid"
	reasonIssuedFuture reason = "issued_in_future"
	reasonIssuer       reason = "wrong_issuer"
	reasonAudience     reason = "wrong_audience"
	reasonClaims       reason = "invalid_claims"
	reasonMissingClaim reason = "missing_claim"
	reasonSubject      reason = "missing_subject"
	reasonPractice     reason = "invalid_practice"
)

// authError is what the Verifier returns: its text is always
// "unauthenticated" and it unwraps to ErrUnauthenticated only.
type authError struct{ reason reason }

func (e *authError) Error() string { return ErrUnauthenticated.Error() }
func (e *authError) Unwrap() error { return ErrUnauthenticated }

// Preallocated errors, one per reason: a failure costs no allocation.
var authErrors = func() map[reason]*authError {
	m := make(map[reason]*authError)
	for _, r := range []reason{reasonMissing, reasonScheme, reasonOversize, reasonMalformed, reasonJWE,
		reasonAlg, reasonNoKID, reasonUnknownKey, reasonKeyMismatch, reasonCrit, reasonSignature,
		reasonExpired, reasonNotYetValid, reasonIssuedFuture, reasonIssuer, reasonAudience,
		reasonClaims, reasonMissingClaim, reasonSubject, reasonPractice} {
		m[r] = &authError{reason: r}
	}
	return m
}()

func fail(r reason) error { return authErrors[r] }

// Reason returns a fixed category for a verification failure returned by a
// Verifier ("expired", "bad_signature", "unknown_key", ...), or "" when err is
// not one. It never contains token content and is meant for debug logs only:
// callers must not be told the reason.
func Reason(err error) string {
	var ae *authError
	if errors.As(err, &ae) {
		return string(ae.reason)
	}
	return ""
}
