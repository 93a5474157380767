package snapshot

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"os"
	"sync"
	"testing"

	"github.com/impact-health/impact/internal/store"
)

// hmacKeyer keys subjects like package auth does: HMAC-SHA256 under a
// pepper, truncated to store.KeySize. It pools its HMAC states so that
// benchmarks measure the parser rather than the keyer's allocations.
type hmacKeyer struct{ pool sync.Pool }

type hmacState struct {
	h   hash.Hash
	buf []byte
	sum [sha256.Size]byte
}

func newHMACKeyer(pepper string) *hmacKeyer {
	k := &hmacKeyer{}
	k.pool.New = func() any { return &hmacState{h: hmac.New(sha256.New, []byte(pepper))} }
	return k
}

func (k *hmacKeyer) SubjectKey(subjectID string) store.Key {
	st := k.pool.Get().(*hmacState)
	st.h.Reset()
	st.buf = append(st.buf[:0], subjectID...)
	st.h.Write(st.buf)
	var key store.Key
	copy(key[:], st.h.Sum(st.sum[:0]))
	k.pool.Put(st)
	return key
}

var testKeyer = newHMACKeyer("test pepper, not a secret")

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testSpec is testdata/spec.yaml parsed: cohorts northland, referrals,
// uploads.
func testSpec(t testing.TB) *Spec {
	t.Helper()
	s, err := ParseSpec(readFile(t, "testdata/spec.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// validationError returns err as a *ValidationError or fails.
func validationError(t testing.TB, err error) *ValidationError {
	t.Helper()
	ve, ok := err.(*ValidationError)
	if !ok {
		t.Fatalf("got %T %v, want *ValidationError", err, err)
	}
	return ve
}
