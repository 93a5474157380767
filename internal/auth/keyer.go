package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"

	"github.com/impact-health/impact/internal/store"
)

// MinPepperBytes is the shortest pepper NewKeyer accepts.
const MinPepperBytes = 32

// maxPepperFileBytes bounds a pepper file.
const maxPepperFileBytes = 4096

// Domain-separation prefixes: a subject id and an idempotency key that are
// equal strings still get unrelated keys.
const (
	subjectDomain = "subject\x00"
	idemDomain    = "idem\x00"
)

// Keyer derives store keys from identifiers: the first 16 bytes of
// HMAC-SHA256(pepper, domain + "\x00" + id). It is safe for concurrent use.
type Keyer struct {
	pool sync.Pool // of *keyerState
}

// keyerState is one HMAC with scratch space, reused through the pool so
// that deriving a key does not allocate.
type keyerState struct {
	mac hash.Hash
	buf []byte
	sum [sha256.Size]byte
}

// NewKeyer returns a Keyer for pepper, which must be at least
// MinPepperBytes long. The pepper is copied.
func NewKeyer(pepper []byte) (*Keyer, error) {
	if len(pepper) < MinPepperBytes {
		return nil, fmt.Errorf("auth: pepper is %d bytes; at least %d are required", len(pepper), MinPepperBytes)
	}
	p := bytes.Clone(pepper)
	k := &Keyer{}
	k.pool.New = func() any {
		return &keyerState{mac: hmac.New(sha256.New, p), buf: make([]byte, 0, 128)}
	}
	return k, nil
}

func (k *Keyer) derive(domain, id string) [store.KeySize]byte {
	s := k.pool.Get().(*keyerState)
	s.mac.Reset()
	s.buf = append(append(s.buf[:0], domain...), id...)
	s.mac.Write(s.buf)
	s.mac.Sum(s.sum[:0])
	var out [store.KeySize]byte
	copy(out[:], s.sum[:])
	if cap(s.buf) > 4096 { // do not keep a huge id's buffer alive
		s.buf = make([]byte, 0, 128)
	}
	k.pool.Put(s)
	return out
}

// SubjectKey returns the store key of a subject id.
func (k *Keyer) SubjectKey(subjectID string) store.Key {
	return store.Key(k.derive(subjectDomain, subjectID))
}

// IdemKey returns the store key of an idempotency key.
func (k *Keyer) IdemKey(idempotencyKey string) store.IdemKey {
	return store.IdemKey(k.derive(idemDomain, idempotencyKey))
}

// LoadPepper reads a pepper file: hex (an even number of hex digits,
// surrounding whitespace ignored: 64 digits for 32 bytes) or, when the file
// is not all hex, its raw bytes. The pepper must be at least MinPepperBytes
// long, and the file must not be accessible to group or others (chmod 600).
// Errors never include the file's content.
func LoadPepper(path string) ([]byte, error) {
	f, err := os.Open(path) // #nosec G304 -- the operator's --pepper-file, not request input
	if err != nil {
		return nil, fmt.Errorf("pepper: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("pepper: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("pepper file %s is not a regular file", path)
	}
	// Group read is allowed: Kubernetes mounts Secret files 0440 with the
	// pod's fsGroup. Anything for others, or group write, is refused.
	if perm := fi.Mode().Perm(); perm&0o037 != 0 {
		return nil, fmt.Errorf("pepper file %s has mode %04o; it must not be accessible to others nor writable by group (chmod 600 or 440)", path, perm)
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxPepperFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("pepper: %w", err)
	}
	if len(raw) > maxPepperFileBytes {
		return nil, fmt.Errorf("pepper file %s is larger than %d bytes", path, maxPepperFileBytes)
	}
	pepper := raw
	if t := bytes.TrimSpace(raw); len(t) > 0 && len(t)%2 == 0 && isHex(t) {
		pepper = make([]byte, len(t)/2)
		if _, err := hex.Decode(pepper, t); err != nil {
			return nil, fmt.Errorf("pepper file %s: %w", path, err)
		}
	}
	if len(pepper) < MinPepperBytes {
		return nil, fmt.Errorf("pepper file %s holds %d bytes; at least %d are required (e.g. 64 hex digits)", path, len(pepper), MinPepperBytes)
	}
	return pepper, nil
}

func isHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
