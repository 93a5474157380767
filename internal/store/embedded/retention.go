package embedded

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/impact-health/impact/internal/store"
)

// DeleteVersion removes a version that is neither visible nor pinned: its
// records, manifest and info, and the idempotency records that replay a
// claim at it. Everything (the checks and the removal) happens in one write
// transaction, which appends its change; claims are written in write
// transactions that check that the version they pin still exists, so a
// claim either comes first (and the deletion sees its pin and refuses with
// store.ErrPinned) or after (and fails with store.ErrConflict). The
// incident's latest version number is untouched: numbers are never reused.
func (s *Store) DeleteVersion(ctx context.Context, incident string, version uint64) error {
	return s.logged(ctx, func(tx *bolt.Tx, emit func(store.Change)) error {
		ib, _, err := versionOf(tx, incident, version)
		if err != nil {
			return err
		}
		if getU64(ib, keyVisible) == version {
			return fmt.Errorf("embedded: delete %s v%d: it is visible: %w", incident, version, store.ErrPinned)
		}
		pinned := false
		err = ib.Bucket(bucketPins).ForEach(func(_, v []byte) error {
			p, err := store.DecodePin(v)
			if err != nil {
				return corrupt("pin", err)
			}
			if p.Version == version {
				pinned = true
				return errStopIteration
			}
			return nil
		})
		if err != nil && err != errStopIteration {
			return err
		}
		if pinned {
			return fmt.Errorf("embedded: delete %s v%d: a pin refers to it: %w", incident, version, store.ErrPinned)
		}
		// Replays of claims at the version (superseded pins) go with it.
		idem := ib.Bucket(bucketIdem)
		var stale [][]byte
		err = idem.ForEach(func(k, v []byte) error {
			p, err := store.DecodePin(v)
			if err != nil {
				return corrupt("idempotency record", err)
			}
			if p.Version == version {
				stale = append(stale, k) // valid until the transaction ends
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range stale {
			if err := idem.Delete(k); err != nil {
				return err
			}
		}
		recs := ib.Bucket(bucketRecords)
		if recs.Bucket(u64(version)) != nil {
			if err := recs.DeleteBucket(u64(version)); err != nil {
				return err
			}
		}
		if err := ib.Bucket(bucketManifests).Delete(u64(version)); err != nil {
			return err
		}
		if err := ib.Bucket(bucketVersions).Delete(u64(version)); err != nil {
			return err
		}
		emit(store.Change{Kind: store.ChangeDeleted, Incident: incident, Version: version})
		return nil
	})
}

// errStopIteration ends a bbolt ForEach early.
var errStopIteration = stopIteration{}

type stopIteration struct{}

func (stopIteration) Error() string { return "stop iteration" }
