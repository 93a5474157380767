package ratelimit

import "crypto/sha256"

// pepperLabel separates the limiter secret from every other use of the
// pepper: the subject keys of the store are HMACs under the pepper itself.
const pepperLabel = "impact rate-limit keys\x00"

// NewHasherFromPepper returns the Hasher whose secret is derived from the
// server's pepper (SHA-256 of a fixed label and the pepper), so that every
// replica sharing the pepper derives the same limiter keys, while a limiter
// key never equals a store key of the same subject.
func NewHasherFromPepper(pepper []byte) (*Hasher, error) {
	secret := sha256.Sum256(append([]byte(pepperLabel), pepper...))
	return NewHasher(secret[:])
}
