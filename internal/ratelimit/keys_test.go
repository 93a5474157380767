package ratelimit

import (
	"strings"
	"testing"
)

// Replicas sharing the pepper agree on limiter keys; another pepper does
// not; and the key is not the pepper's plain HMAC of the id.
func TestNewHasherFromPepper(t *testing.T) {
	pepper := []byte(strings.Repeat("p", 32))
	a, err := NewHasherFromPepper(pepper)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewHasherFromPepper(append([]byte(nil), pepper...))
	c, _ := NewHasherFromPepper([]byte(strings.Repeat("q", 32)))
	plain, _ := NewHasher(pepper)
	k := a.Key("sub", "alice")
	if k != b.Key("sub", "alice") {
		t.Fatal("same pepper, different keys")
	}
	if k == c.Key("sub", "alice") {
		t.Fatal("another pepper gave the same key")
	}
	if k == plain.Key("sub", "alice") {
		t.Fatal("limiter key equals the HMAC under the pepper itself")
	}
}
