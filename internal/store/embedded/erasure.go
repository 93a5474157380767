package embedded

import (
	"bytes"
	"context"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/impact-health/impact/internal/store"
)

// bucketTombstones is the root bucket of closed accounts: <key> -> the time
// of the erasure (8-byte big-endian Unix seconds). It holds subject keys
// (HMACs) only.
var bucketTombstones = []byte("tombstones")

// Tombstone records key's tombstone and removes its pins and idempotency
// records in every incident, in one transaction, and appends its change
// the first time. Claims are written in
// write transactions that check the tombstone, so a claim either comes
// first (and its pin is removed here) or is refused.
func (s *Store) Tombstone(ctx context.Context, key store.Key) (int, error) {
	removed := 0
	err := s.logged(ctx, func(tx *bolt.Tx, emit func(store.Change)) error {
		removed = 0
		tb, err := tx.CreateBucketIfNotExists(bucketTombstones)
		if err != nil {
			return err
		}
		if tb.Get(key[:]) == nil {
			if err := tb.Put(key[:], u64(uint64(time.Now().Unix()))); err != nil {
				return err
			}
			// Once per account, as on Redis: a second call finds no pins
			// (claims refuse a tombstoned subject).
			emit(store.Change{Kind: store.ChangeTombstone, Key: key})
		}
		root := tx.Bucket(bucketIncidents)
		return root.ForEachBucket(func(id []byte) error {
			ib := root.Bucket(id)
			if pins := ib.Bucket(bucketPins); pins != nil && pins.Get(key[:]) != nil {
				if err := pins.Delete(key[:]); err != nil {
					return err
				}
				removed++
			}
			idem := ib.Bucket(bucketIdem)
			if idem == nil {
				return nil
			}
			// Idempotency records are keyed <key><idem>: the subject's are
			// one contiguous run.
			var stale [][]byte
			c := idem.Cursor()
			for k, _ := c.Seek(key[:]); k != nil && bytes.HasPrefix(k, key[:]); k, _ = c.Next() {
				stale = append(stale, k)
			}
			for _, k := range stale {
				if err := idem.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	return removed, nil
}

// Tombstoned reports which keys are tombstoned, in one read transaction.
func (s *Store) Tombstoned(ctx context.Context, keys []store.Key) ([]bool, error) {
	out := make([]bool, len(keys))
	err := s.view(ctx, func(tx *bolt.Tx) error {
		tb := tx.Bucket(bucketTombstones)
		if tb == nil {
			return nil
		}
		for i, k := range keys {
			out[i] = tb.Get(k[:]) != nil
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// tombstoned reports whether key is tombstoned, inside tx.
func tombstoned(tx *bolt.Tx, key store.Key) bool {
	tb := tx.Bucket(bucketTombstones)
	return tb != nil && tb.Get(key[:]) != nil
}
