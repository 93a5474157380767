package embedded

import (
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/impact-health/impact/internal/store"
)

// Read returns the subject's view, read in one transaction.
func (s *Store) Read(ctx context.Context, incident string, key store.Key, idem *store.IdemKey) (store.View, error) {
	var v store.View
	err := s.view(ctx, func(tx *bolt.Tx) error {
		ib, err := incidentBucket(tx, incident)
		if err != nil {
			return err
		}
		v.Visible = getU64(ib, keyVisible)
		if tombstoned(tx, key) {
			v.Erased = true
			return nil
		}
		if v.Visible != 0 {
			rb := ib.Bucket(bucketRecords).Bucket(u64(v.Visible))
			if rb == nil {
				return corrupt("records of the visible version", errors.New("missing"))
			}
			if b := rb.Get(key[:]); b != nil {
				r, _, err := store.DecodeRecord(b)
				if err != nil {
					return corrupt("record", err)
				}
				v.Record = r
			}
		}
		if b := ib.Bucket(bucketPins).Get(key[:]); b != nil {
			p, err := store.DecodePin(b)
			if err != nil {
				return corrupt("pin", err)
			}
			v.Pin = &p
		}
		if idem != nil {
			if b := ib.Bucket(bucketIdem).Get(idemKey(key, *idem)); b != nil {
				p, err := store.DecodePin(b)
				if err != nil {
					return corrupt("pin", err)
				}
				v.Replay = &p
			}
		}
		return nil
	})
	if err != nil {
		return store.View{}, err
	}
	return v, nil
}

// Records returns the records of keys at a staged or published version.
func (s *Store) Records(ctx context.Context, incident string, version uint64, keys []store.Key) ([]store.Record, error) {
	out := make([]store.Record, len(keys))
	err := s.view(ctx, func(tx *bolt.Tx) error {
		ib, doc, err := versionOf(tx, incident, version)
		if err != nil {
			return err
		}
		if !readable(doc.State) {
			return fmt.Errorf("embedded: records %s v%d (%s): %w", incident, version, doc.State, store.ErrNotStaged)
		}
		rb := ib.Bucket(bucketRecords).Bucket(u64(version))
		if rb == nil {
			return corrupt("records", errors.New("missing"))
		}
		for i, k := range keys {
			if b := rb.Get(k[:]); b != nil {
				r, _, err := store.DecodeRecord(b)
				if err != nil {
					return corrupt("record", err)
				}
				out[i] = r
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
