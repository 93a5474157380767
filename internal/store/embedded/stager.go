package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/impact-health/impact/internal/store"
)

// stager loads one version. It buffers entries and writes them in key
// order, stageFlush at a time: bbolt inserts a sorted run into a B+tree
// cheaply, while random keys in small transactions rewrite most leaves every
// time (measured: 200k random entries in batches of 10k load ~5x slower than
// in sorted runs of 64k).
type stager struct {
	s        *Store
	incident string
	version  uint64
	buf      []store.Entry
	done     bool // committed or aborted through this stager
	ref      leaseRef
	lease    *store.LeaseKeeper // renewed until Commit or Abort
	// pacer (StageRequest.Pacer) is yielded to before each flush, every
	// yieldEvery entries within one and of the read-back; nil: never.
	pacer store.Pacer
}

// yieldEvery is how many entries a stager writes or reads back between two
// calls of its yield: about a millisecond of work.
const yieldEvery = 1 << 10

// pause yields to the stager's pacer, if any.
func (st *stager) pause(ctx context.Context) error {
	if st.pacer == nil {
		return nil
	}
	return st.pacer.Yield(ctx)
}

// stageFlush is how many buffered entries a stager writes per transaction
// (about 2 MiB of memory).
const stageFlush = 1 << 16

func (st *stager) Version() uint64 { return st.version }

// Put buffers entries and writes a sorted run once enough are buffered.
// Nothing written is visible before Commit, and a load a crash interrupts is
// aborted when the store is next opened.
func (st *stager) Put(ctx context.Context, entries []store.Entry) error {
	for i, e := range entries {
		if e.Record.Status != store.Affected && e.Record.Status != store.UnderReview {
			return fmt.Errorf("embedded: put %s v%d: entry %d of the batch: status %s cannot be stored", st.incident, st.version, i, e.Record.Status)
		}
	}
	if err := st.usable(ctx, "put"); err != nil {
		return err
	}
	st.buf = append(st.buf, entries...)
	if len(st.buf) >= stageFlush {
		return st.flush(ctx)
	}
	return nil
}

// usable reports why the stager cannot take more work, if it cannot.
func (st *stager) usable(ctx context.Context, op string) error {
	if st.done {
		return fmt.Errorf("embedded: %s %s v%d: already committed or aborted: %w", op, st.incident, st.version, store.ErrNotStaged)
	}
	if err := st.lease.Check(); err != nil {
		return fmt.Errorf("embedded: %s %s v%d: %w", op, st.incident, st.version, err)
	}
	select {
	case <-st.s.closing:
		return fmt.Errorf("embedded: %w: store closed", store.ErrUnavailable)
	default:
	}
	return ctxErr(ctx)
}

// flush writes the buffered entries in key order, in one transaction.
func (st *stager) flush(ctx context.Context) error {
	if len(st.buf) == 0 {
		return nil
	}
	if err := st.pause(ctx); err != nil {
		return err
	}
	slices.SortFunc(st.buf, func(a, b store.Entry) int { return bytes.Compare(a.Key[:], b.Key[:]) })
	err := st.s.update(ctx, func(tx *bolt.Tx) error {
		ib, doc, err := versionOf(tx, st.incident, st.version)
		if err != nil {
			return err
		}
		if doc.State != store.StateStaging {
			return fmt.Errorf("embedded: put %s v%d (%s): %w", st.incident, st.version, doc.State, store.ErrNotStaged)
		}
		rb := ib.Bucket(bucketRecords).Bucket(u64(st.version))
		// bbolt keeps the key and value slices until the transaction ends:
		// give each its own bytes, from one slab per run.
		keys := make([]byte, 0, len(st.buf)*store.KeySize)
		vals := make([]byte, 0, len(st.buf)*maxRecordSize)
		for i, e := range st.buf {
			// Pauses hold the write lock (claims wait for this transaction
			// anyway), never a read: bbolt readers do not wait for it.
			if i > 0 && i%yieldEvery == 0 {
				if err := st.pause(ctx); err != nil {
					return err
				}
			}
			keys = append(keys, e.Key[:]...)
			start := len(vals)
			vals = store.AppendRecord(vals, e.Record)
			if err := rb.Put(keys[len(keys)-store.KeySize:], vals[start:]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	st.buf = st.buf[:0]
	return nil
}

// Commit writes the manifest, verifies the stored records against want and
// wantCount and marks the version staged; on ErrVerify it aborts the version.
func (st *stager) Commit(ctx context.Context, m store.Manifest, want store.Digest, wantCount uint64) (store.VersionInfo, error) {
	if err := st.usable(ctx, "commit"); err != nil {
		return store.VersionInfo{}, err
	}
	if err := st.flush(ctx); err != nil {
		return store.VersionInfo{}, err
	}
	st.buf = nil
	mb, err := json.Marshal(m)
	if err != nil {
		return store.VersionInfo{}, fmt.Errorf("embedded: encode manifest: %w", err)
	}
	err = st.s.update(ctx, func(tx *bolt.Tx) error {
		ib, _, err := st.staging(tx)
		if err != nil {
			return err
		}
		return ib.Bucket(bucketManifests).Put(u64(st.version), mb)
	})
	if err != nil {
		return store.VersionInfo{}, err
	}
	counts, err := store.Verify(m, want, wantCount, func(fn func(store.Entry) error) error {
		n := 0
		return st.s.scan(ctx, st.incident, st.version, true, func(e store.Entry) error {
			if n++; n%yieldEvery == 0 {
				if err := st.pause(ctx); err != nil {
					return err
				}
			}
			return fn(e)
		})
	})
	if errors.Is(err, store.ErrVerify) {
		st.done = true
		st.lease.Stop()
		defer st.s.leases.release(st.ref)
		if aerr := st.abort(ctx); aerr != nil {
			return store.VersionInfo{}, errors.Join(err, aerr)
		}
		return store.VersionInfo{}, fmt.Errorf("embedded: commit %s v%d: %w", st.incident, st.version, err)
	}
	if err != nil {
		return store.VersionInfo{}, err
	}
	var info store.VersionInfo
	err = st.s.logged(ctx, func(tx *bolt.Tx, emit func(store.Change)) error {
		ib, doc, err := st.staging(tx)
		if err != nil {
			return err
		}
		if !st.s.leases.live(st.ref) {
			return fmt.Errorf("embedded: commit %s v%d: %w", st.incident, st.version, store.ErrLeaseExpired)
		}
		doc.State = store.StateStaged
		doc.Digest = want
		doc.Counts = counts
		if err := putVersion(ib, doc); err != nil {
			return err
		}
		info = doc.info(st.incident)
		emit(store.Change{Kind: store.ChangeStaged, Incident: st.incident, Version: st.version})
		return nil
	})
	if err == nil {
		st.done = true
		st.lease.Stop()
		st.s.leases.release(st.ref)
	}
	return info, err
}

// staging returns the incident's bucket and the version's info, or
// ErrNotStaged if the version left the staging state (aborted by a restart
// or a retention run) while it was being committed.
func (st *stager) staging(tx *bolt.Tx) (*bolt.Bucket, versionDoc, error) {
	ib, doc, err := versionOf(tx, st.incident, st.version)
	if err != nil {
		return nil, versionDoc{}, err
	}
	if doc.State != store.StateStaging {
		return nil, versionDoc{}, fmt.Errorf("embedded: commit %s v%d (%s): %w", st.incident, st.version, doc.State, store.ErrNotStaged)
	}
	return ib, doc, nil
}

// Abort marks a version still staging as aborted and drops its records; it
// is a no-op for a version already committed or aborted.
func (st *stager) Abort(ctx context.Context) error {
	st.buf = nil
	st.lease.Stop()
	if st.done {
		return nil
	}
	if err := st.abort(ctx); err != nil {
		return err
	}
	st.done = true
	st.s.leases.release(st.ref)
	return nil
}

func (st *stager) abort(ctx context.Context) error {
	return st.s.update(ctx, func(tx *bolt.Tx) error {
		ib, err := incidentBucket(tx, st.incident)
		if err != nil {
			return err
		}
		return abortVersion(ib, st.version)
	})
}

// abortVersion aborts ver if it is staging.
func abortVersion(ib *bolt.Bucket, ver uint64) error {
	b := ib.Bucket(bucketVersions).Get(u64(ver))
	if b == nil {
		return fmt.Errorf("embedded: version %d: %w", ver, store.ErrNotFound)
	}
	doc, err := decodeVersion(b)
	if err != nil {
		return err
	}
	if doc.State != store.StateStaging {
		return nil
	}
	doc.State = store.StateAborted
	recs := ib.Bucket(bucketRecords)
	if recs.Bucket(u64(ver)) != nil {
		if err := recs.DeleteBucket(u64(ver)); err != nil {
			return err
		}
	}
	return putVersion(ib, doc)
}
