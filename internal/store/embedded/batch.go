package embedded

import (
	"context"
	"errors"

	bolt "go.etcd.io/bbolt"

	"github.com/impact-health/impact/internal/store"
)

// readManyChunk is how many keys ReadMany reads per read transaction, so
// that a long register does not hold one transaction open for long.
const readManyChunk = 10_000

// ReadMany returns the views of keys, every record read at the visible
// version the first transaction saw (records of a version never change, and
// a version that is deleted meanwhile fails the read instead of answering
// "absent").
func (s *Store) ReadMany(ctx context.Context, incident string, keys []store.Key) ([]store.View, error) {
	out := make([]store.View, len(keys))
	visible, first := uint64(0), true
	for lo := 0; lo < len(keys) || first; lo += readManyChunk {
		hi := min(len(keys), lo+readManyChunk)
		err := s.view(ctx, func(tx *bolt.Tx) error {
			ib, err := incidentBucket(tx, incident)
			if err != nil {
				return err
			}
			if first {
				visible = getU64(ib, keyVisible)
			}
			var rb *bolt.Bucket
			if visible != 0 {
				if rb = ib.Bucket(bucketRecords).Bucket(u64(visible)); rb == nil {
					return corrupt("records of the visible version", errors.New("missing"))
				}
			}
			pins := ib.Bucket(bucketPins)
			for i := lo; i < hi; i++ {
				k := keys[i]
				v := store.View{Visible: visible}
				if tombstoned(tx, k) {
					v.Erased = true
					out[i] = v
					continue
				}
				if rb != nil {
					if b := rb.Get(k[:]); b != nil {
						r, _, err := store.DecodeRecord(b)
						if err != nil {
							return corrupt("record", err)
						}
						v.Record = r
					}
				}
				if b := pins.Get(k[:]); b != nil {
					p, err := store.DecodePin(b)
					if err != nil {
						return corrupt("pin", err)
					}
					v.Pin = &p
				}
				out[i] = v
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		first = false
	}
	return out, nil
}
