package embedded

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/impact-health/impact/internal/store"
)

// bucketFences, inside an incident's bucket, holds its publish fences:
// <id> -> 8-byte version covered, 8-byte deadline (Unix nanoseconds).
var bucketFences = []byte("fences")

// Fence sets or renews fence id covering the versions up to visible.
func (s *Store) Fence(ctx context.Context, incident string, visible uint64, id string, ttl time.Duration) error {
	if id == "" || ttl <= 0 {
		return fmt.Errorf("embedded: fence needs an id and a positive ttl")
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		ib, err := incidentBucket(tx, incident)
		if err != nil {
			return err
		}
		fb, err := ib.CreateBucketIfNotExists(bucketFences)
		if err != nil {
			return err
		}
		now := time.Now()
		if upTo, live := fenceOf(fb.Get([]byte(id)), now); live {
			visible = upTo // a renewal keeps what it covers
		} else if v := getU64(ib, keyVisible); v != visible {
			return fmt.Errorf("embedded: fence %s: visible is v%d, not v%d: %w", incident, v, visible, store.ErrConflict)
		}
		// Drop expired fences (collect first: no deletes while iterating).
		var stale [][]byte
		_ = fb.ForEach(func(k, v []byte) error {
			if _, live := fenceOf(v, now); !live {
				stale = append(stale, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range stale {
			if err := fb.Delete(k); err != nil {
				return err
			}
		}
		val := make([]byte, 16)
		binary.BigEndian.PutUint64(val, visible)
		binary.BigEndian.PutUint64(val[8:], uint64(now.Add(ttl).UnixNano()))
		return fb.Put([]byte(id), val)
	})
}

// Unfence lifts fence id.
func (s *Store) Unfence(ctx context.Context, incident, id string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		ib, err := incidentBucket(tx, incident)
		if err != nil {
			return err
		}
		if fb := ib.Bucket(bucketFences); fb != nil {
			return fb.Delete([]byte(id))
		}
		return nil
	})
}

// fenceOf decodes a fence: the highest version it covers, and whether it is
// still live at now.
func fenceOf(v []byte, now time.Time) (uint64, bool) {
	if len(v) != 16 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), int64(binary.BigEndian.Uint64(v[8:])) > now.UnixNano()
}

// fenced reports whether a live fence of the incident covers version.
func fenced(ib *bolt.Bucket, version uint64) bool {
	fb := ib.Bucket(bucketFences)
	if fb == nil {
		return false
	}
	now := time.Now()
	covered := false
	_ = fb.ForEach(func(_, v []byte) error {
		if upTo, live := fenceOf(v, now); live && version <= upTo {
			covered = true
		}
		return nil
	})
	return covered
}
