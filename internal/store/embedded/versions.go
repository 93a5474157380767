package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/impact-health/impact/internal/store"
)

// scanChunk is how many entries Scan and Pins read per transaction: the
// callback then runs outside any transaction, so it may call the store.
const scanChunk = 4096

// Incidents lists every incident's head, sorted by id.
func (s *Store) Incidents(ctx context.Context) ([]store.Head, error) {
	var heads []store.Head
	err := s.view(ctx, func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketIncidents)
		return root.ForEachBucket(func(k []byte) error {
			heads = append(heads, headOf(string(k), root.Bucket(k)))
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return heads, nil
}

// Head returns one incident's head.
func (s *Store) Head(ctx context.Context, incident string) (store.Head, error) {
	var h store.Head
	err := s.view(ctx, func(tx *bolt.Tx) error {
		ib, err := incidentBucket(tx, incident)
		if err != nil {
			return err
		}
		h = headOf(incident, ib)
		return nil
	})
	return h, err
}

func headOf(incident string, ib *bolt.Bucket) store.Head {
	return store.Head{Incident: incident, Visible: getU64(ib, keyVisible), Latest: getU64(ib, keyLatest)}
}

// Stage allocates the incident's next version, in state staging.
func (s *Store) Stage(ctx context.Context, req store.StageRequest) (store.Stager, error) {
	if req.Incident == "" {
		return nil, errors.New("embedded: stage: empty incident id")
	}
	var ver uint64
	err := s.update(ctx, func(tx *bolt.Tx) error {
		ib, err := tx.Bucket(bucketIncidents).CreateBucketIfNotExists([]byte(req.Incident))
		if err != nil {
			return err
		}
		for _, name := range [][]byte{bucketVersions, bucketManifests, bucketRecords, bucketPins, bucketIdem} {
			if _, err := ib.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		ver = getU64(ib, keyLatest) + 1
		if err := ib.Put(keyLatest, u64(ver)); err != nil {
			return err
		}
		if _, err := ib.Bucket(bucketRecords).CreateBucket(u64(ver)); err != nil {
			return err
		}
		return putVersion(ib, versionDoc{
			Version:   ver,
			State:     store.StateStaging,
			CreatedBy: req.CreatedBy,
			CreatedAt: req.At.UTC(),
			Source:    req.Source,
		})
	})
	if err != nil {
		return nil, err
	}
	ref := leaseRef{req.Incident, ver}
	return &stager{s: s, incident: req.Incident, version: ver, ref: ref,
		lease: s.startLease(ctx, ref, store.StageLease(req.Lease)), pacer: req.Pacer}, nil
}

// Versions lists an incident's versions, oldest first.
func (s *Store) Versions(ctx context.Context, incident string) ([]store.VersionInfo, error) {
	var out []store.VersionInfo
	err := s.view(ctx, func(tx *bolt.Tx) error {
		ib, err := incidentBucket(tx, incident)
		if err != nil {
			return err
		}
		return ib.Bucket(bucketVersions).ForEach(func(_, v []byte) error {
			doc, err := decodeVersion(v)
			if err != nil {
				return err
			}
			out = append(out, doc.info(incident))
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Version returns one version's info and manifest (the manifest is empty
// until the version was committed).
func (s *Store) Version(ctx context.Context, incident string, version uint64) (store.VersionInfo, store.Manifest, error) {
	var (
		info store.VersionInfo
		m    store.Manifest
	)
	err := s.view(ctx, func(tx *bolt.Tx) error {
		ib, doc, err := versionOf(tx, incident, version)
		if err != nil {
			return err
		}
		info = doc.info(incident)
		if b := ib.Bucket(bucketManifests).Get(u64(version)); b != nil {
			if err := json.Unmarshal(b, &m); err != nil {
				return corrupt("manifest", err)
			}
		}
		return nil
	})
	return info, m, err
}

// Scan calls fn for every entry of a staged or published version in
// increasing key order. fn runs outside any transaction.
func (s *Store) Scan(ctx context.Context, incident string, version uint64, fn func(store.Entry) error) error {
	return s.scan(ctx, incident, version, false, fn)
}

// scan reads the version's records in chunks, each in its own read
// transaction; records of a version never change once loaded, so the chunks
// form one consistent scan. allowStaging admits a version being loaded (for
// Commit's verification).
func (s *Store) scan(ctx context.Context, incident string, version uint64, allowStaging bool, fn func(store.Entry) error) error {
	records := func(tx *bolt.Tx) (*bolt.Bucket, error) {
		ib, doc, err := versionOf(tx, incident, version)
		if err != nil {
			return nil, err
		}
		if !readable(doc.State) && !(allowStaging && doc.State == store.StateStaging) {
			return nil, fmt.Errorf("embedded: scan %s v%d (%s): %w", incident, version, doc.State, store.ErrNotStaged)
		}
		rb := ib.Bucket(bucketRecords).Bucket(u64(version))
		if rb == nil {
			return nil, corrupt("records", errors.New("missing"))
		}
		return rb, nil
	}
	return chunked(ctx, s, records, decodeEntry, func(e store.Entry) store.Key { return e.Key }, fn)
}

// chunked calls fn for every item of a bucket in key order, reading
// scanChunk items per read transaction (bucket finds the bucket in each
// one, decode turns a key and value into an item, keyOf gives the key to
// resume after) and calling fn outside any transaction, so that fn may call
// the store.
func chunked[T any](ctx context.Context, s *Store, bucket func(*bolt.Tx) (*bolt.Bucket, error),
	decode func(k, v []byte) (T, error), keyOf func(T) store.Key, fn func(T) error) error {
	var (
		after []byte
		buf   = make([]T, 0, scanChunk)
	)
	for {
		buf = buf[:0]
		err := s.view(ctx, func(tx *bolt.Tx) error {
			b, err := bucket(tx)
			if err != nil {
				return err
			}
			c := b.Cursor()
			k, v := seekAfter(c, after)
			for ; k != nil && len(buf) < scanChunk; k, v = c.Next() {
				item, err := decode(k, v)
				if err != nil {
					return err
				}
				buf = append(buf, item)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, item := range buf {
			if err := fn(item); err != nil {
				return err
			}
		}
		if len(buf) < scanChunk {
			return nil
		}
		last := keyOf(buf[len(buf)-1])
		after = last[:]
		if err := ctxErr(ctx); err != nil {
			return err
		}
	}
}

// Publish makes version visible if the visible version is expectVisible and
// version is greater than it.
func (s *Store) Publish(ctx context.Context, req store.PublishRequest) (store.VersionInfo, error) {
	var info store.VersionInfo
	err := s.logged(ctx, func(tx *bolt.Tx, emit func(store.Change)) error {
		ib, doc, err := versionOf(tx, req.Incident, req.Version)
		if err != nil {
			return err
		}
		if !readable(doc.State) {
			return fmt.Errorf("embedded: publish %s v%d (%s): %w", req.Incident, req.Version, doc.State, store.ErrNotStaged)
		}
		visible := getU64(ib, keyVisible)
		if visible != req.ExpectVisible {
			return fmt.Errorf("embedded: publish %s v%d: visible is v%d, expected v%d: %w", req.Incident, req.Version, visible, req.ExpectVisible, store.ErrConflict)
		}
		if req.Version <= visible {
			return fmt.Errorf("embedded: publish %s v%d: not after visible v%d: %w", req.Incident, req.Version, visible, store.ErrConflict)
		}
		if doc.State != store.StatePublished {
			doc.State = store.StatePublished
			doc.PublishedBy = req.Actor
			doc.PublishedAt = req.At.UTC()
		}
		if err := putVersion(ib, doc); err != nil {
			return err
		}
		if err := ib.Put(keyVisible, u64(req.Version)); err != nil {
			return err
		}
		info = doc.info(req.Incident)
		emit(store.Change{Kind: store.ChangePublish, Incident: req.Incident, Version: req.Version})
		return nil
	})
	return info, err
}

// readable reports whether a version in state st holds its whole content.
func readable(st store.State) bool {
	return st == store.StateStaged || st == store.StatePublished
}

func incidentBucket(tx *bolt.Tx, incident string) (*bolt.Bucket, error) {
	if incident != "" {
		if ib := tx.Bucket(bucketIncidents).Bucket([]byte(incident)); ib != nil {
			return ib, nil
		}
	}
	return nil, fmt.Errorf("embedded: incident: %w", store.ErrNotFound)
}

func versionOf(tx *bolt.Tx, incident string, version uint64) (*bolt.Bucket, versionDoc, error) {
	ib, err := incidentBucket(tx, incident)
	if err != nil {
		return nil, versionDoc{}, err
	}
	b := ib.Bucket(bucketVersions).Get(u64(version))
	if b == nil {
		return nil, versionDoc{}, fmt.Errorf("embedded: %s v%d: %w", incident, version, store.ErrNotFound)
	}
	doc, err := decodeVersion(b)
	return ib, doc, err
}
