package embedded

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/impact-health/impact/internal/store"
)

// Stage leases in the embedded store.
//
// One process owns the file (Open takes its lock), so a lease never has to
// outlive the process: leases are kept in memory, on the process's
// monotonic clock, and every version left staging when the process died is
// aborted when the store is opened again. Within the process, a loader that
// stops renewing (its request abandoned without Abort) loses its stage
// after its lease, like on a shared store, and CollectStages aborts it. A
// version is aborted and its records dropped in one transaction, so there
// is never anything left to finish.

// leases holds the expiry of every live stage of this process.
type leases struct {
	mu sync.Mutex
	m  map[leaseRef]time.Time
}

type leaseRef struct {
	incident string
	version  uint64
}

// grant records a lease of d from now.
func (l *leases) grant(ref leaseRef, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[leaseRef]time.Time{}
	}
	l.m[ref] = time.Now().Add(d)
}

// renew extends a live lease by d from now; false if it expired or is gone.
func (l *leases) renew(ref leaseRef, d time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	exp, ok := l.m[ref]
	now := time.Now()
	if !ok || !now.Before(exp) {
		return false
	}
	l.m[ref] = now.Add(d)
	return true
}

// live reports whether ref holds a lease that has not expired.
func (l *leases) live(ref leaseRef) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	exp, ok := l.m[ref]
	return ok && time.Now().Before(exp)
}

// release forgets a lease (the stage committed or aborted).
func (l *leases) release(ref leaseRef) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, ref)
}

// startLease grants a stage its lease and starts its renewer.
func (s *Store) startLease(ctx context.Context, ref leaseRef, d time.Duration) *store.LeaseKeeper {
	sent := time.Now()
	s.leases.grant(ref, d)
	return store.StartLease(ctx, d, sent, func(context.Context) (bool, error) {
		return s.leases.renew(ref, d), nil
	})
}

// CollectStages aborts the incident's staging versions whose lease expired
// (or whose loader belonged to an earlier process).
func (s *Store) CollectStages(ctx context.Context, incident string) ([]uint64, error) {
	var collected []uint64
	err := s.update(ctx, func(tx *bolt.Tx) error {
		collected = nil
		ib, err := incidentBucket(tx, incident)
		if err != nil {
			return err
		}
		staging, err := stagingVersions(ib)
		if err != nil {
			return err
		}
		for _, ver := range staging {
			if s.leases.live(leaseRef{incident, ver}) {
				continue
			}
			if err := abortVersion(ib, ver); err != nil {
				return err
			}
			collected = append(collected, ver)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: collect %s: %w", incident, err)
	}
	for _, ver := range collected {
		s.leases.release(leaseRef{incident, ver})
	}
	return collected, nil
}

// stagingVersions lists the versions of an incident bucket in state
// staging.
func stagingVersions(ib *bolt.Bucket) ([]uint64, error) {
	var staging []uint64
	err := ib.Bucket(bucketVersions).ForEach(func(k, v []byte) error {
		doc, err := decodeVersion(v)
		if err != nil {
			return err
		}
		if doc.State == store.StateStaging {
			staging = append(staging, binary.BigEndian.Uint64(k))
		}
		return nil
	})
	return staging, err
}
