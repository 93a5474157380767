// Package embedded is the default Impact store: one local bbolt file, durable
// (every write transaction is fsynced before it returns), no server needed.
//
// Layout: a root bucket "incidents" holds one bucket per incident id, which
// holds
//
//	visible            the visible version (8 bytes, big endian)
//	latest             the highest version number allocated (8 bytes)
//	versions/<ver>     the version's info (JSON)
//	manifests/<ver>    the version's manifest (JSON)
//	records/<ver>/<key>  store.AppendRecord bytes, one sub-bucket per version
//	pins/<key>         store.AppendPin bytes
//	idem/<key><idem>   the pin a claim with that idempotency key recorded
//
// where <ver> is a version number as 8 big-endian bytes and <key> a 16-byte
// store.Key. bbolt admits one writer at a time and gives every reader a
// consistent snapshot, so a Read sees exactly one version and a publish is
// one small transaction flipping "visible".
//
// Writes: concurrent ClaimPin calls are group-committed (one transaction and
// one fsync for every claim waiting), each still checked against the pins as
// the claims before it left them. A Stager buffers entries and writes them in
// sorted runs, which bbolt inserts far faster than random keys.
//
// The store is also a store.Feed: claims, publishes, commits, tombstones and
// deletions append their change to a change log in memory, in commit order,
// so that package store/replica answers reads from memory over it as it
// does over Redis (feed.go).
//
// bbolt locks the file, so only one process can open a store. A version
// left in the staging state by a crash is aborted when the store is opened.
package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/impact-health/impact/internal/store"
)

// ErrLocked is returned by Open when another process holds the store's file.
var ErrLocked = errors.New("store file is locked by another process")

// DefaultLockTimeout is how long Open waits for the file lock by default.
const DefaultLockTimeout = time.Second

var (
	bucketIncidents = []byte("incidents")
	bucketVersions  = []byte("versions")
	bucketManifests = []byte("manifests")
	bucketRecords   = []byte("records")
	bucketPins      = []byte("pins")
	bucketIdem      = []byte("idem")
	keyVisible      = []byte("visible")
	keyLatest       = []byte("latest")
)

// Option configures Open.
type Option func(*options)

type options struct {
	lockTimeout time.Duration
	changeLog   int
}

// WithLockTimeout sets how long Open waits for another process to release
// the file lock before it fails with ErrLocked (default DefaultLockTimeout).
func WithLockTimeout(d time.Duration) Option {
	return func(o *options) { o.lockTimeout = d }
}

// Store is a store.Store backed by a bbolt file. It is safe for concurrent
// use.
type Store struct {
	db *bolt.DB

	claims     chan *claim   // to the claim writer (unbuffered)
	closing    chan struct{} // closed by Close
	closeOnce  sync.Once
	writerDone chan struct{} // closed when the claim writer returned

	leases leases // live stages of this process (lease.go)
	feed   *feed  // the change log and the replicas' registry (feed.go)
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the store file at path, creating its
// directory with mode 0700 if missing. Versions a crash left in the staging
// state are aborted before Open returns.
func Open(path string, opts ...Option) (*Store, error) {
	o := options{lockTimeout: DefaultLockTimeout, changeLog: DefaultChangeLog}
	for _, opt := range opts {
		opt(&o)
	}
	if o.changeLog < minChangeLog {
		return nil, fmt.Errorf("embedded: the change log must keep at least %d changes", minChangeLog)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("embedded: create data directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      o.lockTimeout,
		FreelistType: bolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("embedded: open %s: %w (waited %s)", path, ErrLocked, o.lockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("embedded: open %s: %w", path, err)
	}
	s := &Store{db: db, claims: make(chan *claim), closing: make(chan struct{}), writerDone: make(chan struct{}), feed: newFeed(o.changeLog)}
	if err := s.recover(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("embedded: open %s: %w", path, err)
	}
	go s.claimWriter()
	return s, nil
}

// recover creates the root bucket and aborts every version left staging.
func (s *Store) recover() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(bucketIncidents)
		if err != nil {
			return err
		}
		var incidents [][]byte
		err = root.ForEachBucket(func(k []byte) error {
			incidents = append(incidents, bytes.Clone(k))
			return nil
		})
		if err != nil {
			return err
		}
		for _, id := range incidents {
			ib := root.Bucket(id)
			staging, err := stagingVersions(ib)
			if err != nil {
				return err
			}
			for _, ver := range staging {
				if err := abortVersion(ib, ver); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// Close closes the file, waiting for transactions in flight. Calling it
// again is a no-op.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	<-s.writerDone
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("embedded: close: %w", err)
	}
	return nil
}

// Ping reports whether the store is open.
func (s *Store) Ping(ctx context.Context) error {
	return s.view(ctx, func(*bolt.Tx) error { return nil })
}

// errCorrupt marks stored bytes that do not decode. The store cannot
// establish an answer from them, so it is reported as unavailable.
var errCorrupt = errors.New("corrupt data")

func corrupt(what string, err error) error {
	return fmt.Errorf("embedded: %w: %s: %w", errCorrupt, what, err)
}

// view runs fn in a read transaction and maps the error.
func (s *Store) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	return mapErr(s.db.View(fn))
}

// update runs fn in a write transaction, committed and fsynced before it
// returns, and maps the error.
func (s *Store) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	return mapErr(s.db.Update(fn))
}

func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("embedded: %w: %w", store.ErrUnavailable, err)
	}
	return nil
}

// mapErr passes the store's own errors through and reports everything else
// (closed database, I/O errors, corrupt bytes) as store.ErrUnavailable.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	for _, known := range []error{store.ErrNotFound, store.ErrConflict, store.ErrNotStaged, store.ErrVerify, store.ErrUnavailable, store.ErrPinned} {
		if errors.Is(err, known) {
			return err
		}
	}
	return fmt.Errorf("embedded: %w: %w", store.ErrUnavailable, err)
}
