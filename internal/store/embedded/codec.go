package embedded

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/impact-health/impact/internal/store"
)

// maxRecordSize bounds store.AppendRecord's output: a status byte and two
// uvarints.
const maxRecordSize = 1 + 2*binary.MaxVarintLen64

// versionDoc is the stored form of a version's info.
type versionDoc struct {
	Version     uint64       `json:"version"`
	State       store.State  `json:"state"`
	Digest      store.Digest `json:"-"`
	DigestHex   string       `json:"digest,omitempty"`
	Counts      store.Counts `json:"counts"`
	CreatedBy   string       `json:"created_by,omitempty"`
	CreatedAt   time.Time    `json:"created_at"`
	PublishedBy string       `json:"published_by,omitempty"`
	PublishedAt time.Time    `json:"published_at"`
	Source      string       `json:"source,omitempty"`
}

func (d versionDoc) info(incident string) store.VersionInfo {
	return store.VersionInfo{
		Incident:    incident,
		Version:     d.Version,
		State:       d.State,
		Digest:      d.Digest,
		Counts:      d.Counts,
		CreatedBy:   d.CreatedBy,
		CreatedAt:   d.CreatedAt,
		PublishedBy: d.PublishedBy,
		PublishedAt: d.PublishedAt,
		Source:      d.Source,
	}
}

func putVersion(ib *bolt.Bucket, d versionDoc) error {
	d.DigestHex = ""
	if d.Digest != (store.Digest{}) {
		d.DigestHex = d.Digest.String()
	}
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("embedded: encode version: %w", err)
	}
	return ib.Bucket(bucketVersions).Put(u64(d.Version), b)
}

func decodeVersion(b []byte) (versionDoc, error) {
	var d versionDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return d, corrupt("version", err)
	}
	if d.DigestHex != "" {
		dg, err := store.ParseDigest(d.DigestHex)
		if err != nil {
			return d, corrupt("version digest", err)
		}
		d.Digest = dg
	}
	return d, nil
}

func decodeEntry(k, v []byte) (store.Entry, error) {
	if len(k) != store.KeySize {
		return store.Entry{}, corrupt("record key", errors.New("bad length"))
	}
	r, _, err := store.DecodeRecord(v)
	if err != nil {
		return store.Entry{}, corrupt("record", err)
	}
	return store.Entry{Key: store.Key(k), Record: r}, nil
}

func idemKey(key store.Key, idem store.IdemKey) []byte {
	b := make([]byte, 0, 2*store.KeySize)
	b = append(b, key[:]...)
	return append(b, idem[:]...)
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getU64(b *bolt.Bucket, k []byte) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// seekAfter positions c on the first key after `after` (the first key of
// all when after is nil): how Scan and Pins resume in a new transaction
// where the previous chunk ended.
func seekAfter(c *bolt.Cursor, after []byte) (k, v []byte) {
	if after == nil {
		return c.First()
	}
	k, v = c.Seek(after)
	if bytes.Equal(k, after) {
		k, v = c.Next()
	}
	return k, v
}
