package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/bits"
)

// Digest is the SHA-256 digest of a version's canonical content.
type Digest [sha256.Size]byte

func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// ParseDigest parses the hex form.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(d) {
		return d, fmt.Errorf("invalid digest")
	}
	copy(d[:], b)
	return d, nil
}

// Digester computes a version's digest from its canonical content: the
// canonical spec, the number of entries, and the set of entries. The set is
// folded as the sum modulo 2^256 of the SHA-256 of each entry's canonical
// encoding, so the digest does not depend on row order and can be computed
// in one streaming pass, both while a roster is parsed and when a store reads
// a loaded version back (in any order: Redis buckets, bbolt pages). Entry
// hashes cover HMAC keys whose pepper is secret, so nobody outside the
// service can choose entries that cancel out in the sum.
//
// The zero value is not usable: call NewDigester.
type Digester struct {
	practices []string
	count     uint64
	sum       [4]uint64 // little-endian limbs of a 256-bit sum
	buf       []byte
}

// NewDigester returns a Digester for entries that refer to practices.
func NewDigester(practices []string) *Digester {
	return &Digester{practices: practices, buf: make([]byte, 0, 64)}
}

// Add folds one entry in. Its Practice must index the dictionary given.
func (d *Digester) Add(e Entry) error {
	practice := ""
	if e.Record.Practice != 0 {
		i := int(e.Record.Practice) - 1
		if i >= len(d.practices) {
			return fmt.Errorf("%w: practice index out of range", ErrVerify)
		}
		practice = d.practices[i]
	}
	d.AddWithPractice(e, practice)
	return nil
}

// AddWithPractice folds one entry in, naming its practice directly.
func (d *Digester) AddWithPractice(e Entry, practice string) {
	b := d.buf[:0]
	b = append(b, 'e')
	b = append(b, e.Key[:]...)
	b = append(b, byte(e.Record.Status))
	b = binary.BigEndian.AppendUint64(b, e.Record.Cohorts)
	b = binary.BigEndian.AppendUint32(b, uint32(len(practice)))
	b = append(b, practice...)
	h := sha256.Sum256(b)
	d.buf = b
	var c uint64
	for i := 0; i < 4; i++ {
		limb := binary.BigEndian.Uint64(h[24-8*i:])
		d.sum[i], c = bits.Add64(d.sum[i], limb, c)
	}
	d.count++
}

// Count is the number of entries added.
func (d *Digester) Count() uint64 { return d.count }

// Sum returns the digest of spec plus the entries added.
func (d *Digester) Sum(spec []byte) Digest {
	h := sha256.New()
	h.Write([]byte("impact.snapshot.v1\x00"))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(spec)))
	h.Write(n[:])
	h.Write(spec)
	binary.BigEndian.PutUint64(n[:], d.count)
	h.Write(n[:])
	for i := 3; i >= 0; i-- {
		binary.BigEndian.PutUint64(n[:], d.sum[i])
		h.Write(n[:])
	}
	var out Digest
	h.Sum(out[:0])
	return out
}

// Verify recomputes the digest and count of a loaded version with scan (a
// store's own read of what it holds) and compares them with what the loader
// computed. It returns the counts on success, or an error wrapping ErrVerify.
func Verify(m Manifest, want Digest, wantCount uint64, scan func(fn func(Entry) error) error) (Counts, error) {
	d := NewDigester(m.Practices)
	var counts Counts
	counts.PerCohort = make([][2]uint64, m.Cohorts)
	var pc *PracticeCounter
	if m.PracticeCounts != nil {
		pc = NewPracticeCounter(len(m.Practices), m.Cohorts)
	}
	err := scan(func(e Entry) error {
		counts.Add(e.Record, m.Cohorts)
		if pc != nil {
			if err := pc.Add(e.Record); err != nil {
				return err
			}
		}
		return d.Add(e)
	})
	if err != nil {
		return Counts{}, err
	}
	if d.Count() != wantCount {
		return Counts{}, fmt.Errorf("%w: stored %d entries, loaded %d", ErrVerify, d.Count(), wantCount)
	}
	if got := d.Sum(m.Spec); got != want {
		return Counts{}, fmt.Errorf("%w: stored content digest %s, expected %s", ErrVerify, got, want)
	}
	if err := verifyPracticeCounts(m, pc); err != nil {
		return Counts{}, err
	}
	return counts, nil
}
