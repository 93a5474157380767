package embedded

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/impact-health/impact/internal/store"
)

// bucketRequests, inside an incident's bucket, holds its pending publish
// requests: <ver> -> store.MarshalPublishRequest bytes.
var bucketRequests = []byte("publish_requests")

// PutPublishRequest records a new request.
func (s *Store) PutPublishRequest(ctx context.Context, r store.PendingPublish) error {
	r.ApprovedBy = nil
	val, err := store.MarshalPublishRequest(r)
	if err != nil {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		ib, err := incidentBucket(tx, r.Incident)
		if err != nil {
			return err
		}
		rb, err := ib.CreateBucketIfNotExists(bucketRequests)
		if err != nil {
			return err
		}
		if rb.Get(u64(r.Version)) != nil {
			return fmt.Errorf("embedded: a publish request for v%d exists: %w", r.Version, store.ErrConflict)
		}
		return rb.Put(u64(r.Version), val)
	})
}

// GetPublishRequest returns the request for a version.
func (s *Store) GetPublishRequest(ctx context.Context, incident string, version uint64) (store.PendingPublish, error) {
	var r store.PendingPublish
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		r, err = getRequest(tx, incident, version)
		return err
	})
	return r, err
}

func getRequest(tx *bolt.Tx, incident string, version uint64) (store.PendingPublish, error) {
	ib, err := incidentBucket(tx, incident)
	if err != nil {
		return store.PendingPublish{}, err
	}
	var b []byte
	if rb := ib.Bucket(bucketRequests); rb != nil {
		b = rb.Get(u64(version))
	}
	if b == nil {
		return store.PendingPublish{}, fmt.Errorf("embedded: publish request for v%d: %w", version, store.ErrNotFound)
	}
	return store.UnmarshalPublishRequest(b)
}

// ListPublishRequests returns an incident's requests by version.
func (s *Store) ListPublishRequests(ctx context.Context, incident string) ([]store.PendingPublish, error) {
	var out []store.PendingPublish
	err := s.view(ctx, func(tx *bolt.Tx) error {
		ib, err := incidentBucket(tx, incident)
		if err != nil {
			return nil // unknown incident: none
		}
		rb := ib.Bucket(bucketRequests)
		if rb == nil {
			return nil
		}
		return rb.ForEach(func(_, v []byte) error {
			r, err := store.UnmarshalPublishRequest(v)
			if err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// ApprovePublishRequest adds an approval, once.
func (s *Store) ApprovePublishRequest(ctx context.Context, incident string, version uint64, approver string) (store.PendingPublish, error) {
	var r store.PendingPublish
	err := s.update(ctx, func(tx *bolt.Tx) error {
		cur, err := getRequest(tx, incident, version)
		if err != nil {
			return err
		}
		r = cur.WithApproval(approver)
		val, err := store.MarshalPublishRequest(r)
		if err != nil {
			return err
		}
		ib, _ := incidentBucket(tx, incident)
		return ib.Bucket(bucketRequests).Put(u64(version), val)
	})
	return r, err
}

// DeletePublishRequest removes the request for a version.
func (s *Store) DeletePublishRequest(ctx context.Context, incident string, version uint64) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		ib, err := incidentBucket(tx, incident)
		if err != nil {
			return nil
		}
		if rb := ib.Bucket(bucketRequests); rb != nil {
			return rb.Delete(u64(version))
		}
		return nil
	})
}
