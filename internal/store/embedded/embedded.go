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
// bbolt locks the file, so only one process can open a store. A version
// left in the staging state by a crash is aborted when the store is opened.
package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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

// maxRecordSize bounds store.AppendRecord's output: a status byte and two
// uvarints.
const maxRecordSize = 1 + 2*binary.MaxVarintLen64

// scanChunk is how many entries Scan and Pins read per transaction: the
// callback then runs outside any transaction, so it may call the store.
const scanChunk = 4096

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
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the store file at path, creating its
// directory with mode 0700 if missing. Versions a crash left in the staging
// state are aborted before Open returns.
func Open(path string, opts ...Option) (*Store, error) {
	o := options{lockTimeout: DefaultLockTimeout}
	for _, opt := range opts {
		opt(&o)
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
	s := &Store{db: db, claims: make(chan *claim), closing: make(chan struct{}), writerDone: make(chan struct{})}
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
	return &stager{s: s, incident: req.Incident, version: ver}, nil
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
	var (
		after []byte
		buf   = make([]store.Entry, 0, scanChunk)
	)
	for {
		buf = buf[:0]
		err := s.view(ctx, func(tx *bolt.Tx) error {
			ib, doc, err := versionOf(tx, incident, version)
			if err != nil {
				return err
			}
			if !readable(doc.State) && !(allowStaging && doc.State == store.StateStaging) {
				return fmt.Errorf("embedded: scan %s v%d (%s): %w", incident, version, doc.State, store.ErrNotStaged)
			}
			rb := ib.Bucket(bucketRecords).Bucket(u64(version))
			if rb == nil {
				return corrupt("records", errors.New("missing"))
			}
			c := rb.Cursor()
			k, v := seekAfter(c, after)
			for ; k != nil && len(buf) < scanChunk; k, v = c.Next() {
				e, err := decodeEntry(k, v)
				if err != nil {
					return err
				}
				buf = append(buf, e)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, e := range buf {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(buf) < scanChunk {
			return nil
		}
		last := buf[len(buf)-1].Key
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
	err := s.update(ctx, func(tx *bolt.Tx) error {
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
		return nil
	})
	return info, err
}

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

// ClaimPin replaces the subject's pin old by next and records next under
// idem, atomically. Concurrent claims are committed together, in one
// transaction and one fsync (group commit), each checked in turn against the
// pins as the claims before it in the group left them.
func (s *Store) ClaimPin(ctx context.Context, incident string, key store.Key, old *store.Pin, next store.Pin, idem store.IdemKey) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	c := &claim{incident: incident, key: key, old: old, val: store.AppendPin(nil, next), version: next.Version, idem: idem, done: make(chan error, 1)}
	select {
	case s.claims <- c:
	case <-s.closing:
		return fmt.Errorf("embedded: %w: store closed", store.ErrUnavailable)
	case <-ctx.Done():
		return ctxErr(ctx)
	}
	// Once handed over, the claim is decided: wait for the outcome.
	return <-c.done
}

// claim is one ClaimPin waiting for the writer.
type claim struct {
	incident string
	key      store.Key
	old      *store.Pin
	val      []byte // the encoded next pin
	version  uint64
	idem     store.IdemKey
	done     chan error
	err      error
}

// maxClaimGroup bounds how many claims one transaction commits.
const maxClaimGroup = 512

// claimWriter commits claims until the store closes. It takes one claim,
// then every other claim already waiting, and applies them in one
// transaction.
func (s *Store) claimWriter() {
	defer close(s.writerDone)
	group := make([]*claim, 0, maxClaimGroup)
	for {
		group = group[:0]
		select {
		case c := <-s.claims:
			group = append(group, c)
		case <-s.closing:
			return
		}
	more:
		for len(group) < maxClaimGroup {
			select {
			case c := <-s.claims:
				group = append(group, c)
			default:
				break more
			}
		}
		err := mapErr(s.db.Update(func(tx *bolt.Tx) error {
			for _, c := range group {
				var err error
				c.err, err = applyClaim(tx, c)
				if err != nil {
					return err
				}
			}
			return nil
		}))
		for _, c := range group {
			if err != nil {
				c.done <- err
			} else {
				c.done <- c.err
			}
		}
	}
}

// applyClaim checks and writes one claim. It returns the claim's own
// outcome (nil, ErrConflict, ErrNotFound), and an error that fails the whole
// transaction.
func applyClaim(tx *bolt.Tx, c *claim) (outcome, fatal error) {
	ib, err := incidentBucket(tx, c.incident)
	if err != nil {
		return err, nil
	}
	if tombstoned(tx, c.key) {
		return fmt.Errorf("embedded: claim pin: the subject's account was closed: %w", store.ErrConflict), nil
	}
	pins := ib.Bucket(bucketPins)
	if b := pins.Get(c.key[:]); b != nil {
		cur, err := store.DecodePin(b)
		if err != nil {
			return corrupt("pin", err), nil
		}
		if c.old == nil || c.old.NoticeID != cur.NoticeID {
			return fmt.Errorf("embedded: claim pin: current pin differs: %w", store.ErrConflict), nil
		}
		if c.version < cur.Version {
			return fmt.Errorf("embedded: claim pin: v%d is before the pinned v%d: %w", c.version, cur.Version, store.ErrConflict), nil
		}
	} else if c.old != nil {
		return fmt.Errorf("embedded: claim pin: subject has no pin: %w", store.ErrConflict), nil
	}
	// The version pinned must hold its whole content: a version deleted (or
	// never loaded) is refused in the same transaction that would pin it,
	// so DeleteVersion and a claim never both succeed.
	if b := ib.Bucket(bucketVersions).Get(u64(c.version)); b == nil {
		if c.version > getU64(ib, keyLatest) {
			return fmt.Errorf("embedded: claim pin: v%d: %w", c.version, store.ErrNotFound), nil
		}
		return fmt.Errorf("embedded: claim pin: v%d was deleted: %w", c.version, store.ErrConflict), nil
	} else if doc, err := decodeVersion(b); err != nil {
		return err, nil
	} else if !readable(doc.State) {
		return fmt.Errorf("embedded: claim pin: v%d is %s: %w", c.version, doc.State, store.ErrConflict), nil
	}
	if err := pins.Put(c.key[:], c.val); err != nil {
		return nil, err
	}
	return nil, ib.Bucket(bucketIdem).Put(idemKey(c.key, c.idem), c.val)
}

// Pins calls fn for every pin of the incident, in key order. fn runs outside
// any transaction; a pin claimed during the iteration may or may not be
// seen, in its old or new form.
func (s *Store) Pins(ctx context.Context, incident string, fn func(store.Key, store.Pin) error) error {
	type kp struct {
		k store.Key
		p store.Pin
	}
	var (
		after []byte
		buf   = make([]kp, 0, scanChunk)
	)
	for {
		buf = buf[:0]
		err := s.view(ctx, func(tx *bolt.Tx) error {
			ib, err := incidentBucket(tx, incident)
			if err != nil {
				return err
			}
			c := ib.Bucket(bucketPins).Cursor()
			k, v := seekAfter(c, after)
			for ; k != nil && len(buf) < scanChunk; k, v = c.Next() {
				if len(k) != store.KeySize {
					return corrupt("pin key", errors.New("bad length"))
				}
				p, err := store.DecodePin(v)
				if err != nil {
					return corrupt("pin", err)
				}
				buf = append(buf, kp{store.Key(k), p})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, e := range buf {
			if err := fn(e.k, e.p); err != nil {
				return err
			}
		}
		if len(buf) < scanChunk {
			return nil
		}
		last := buf[len(buf)-1].k
		after = last[:]
		if err := ctxErr(ctx); err != nil {
			return err
		}
	}
}

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
		for _, e := range st.buf {
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
		ib, doc, err := versionOf(tx, st.incident, st.version)
		if err != nil {
			return err
		}
		if doc.State != store.StateStaging {
			return fmt.Errorf("embedded: commit %s v%d (%s): %w", st.incident, st.version, doc.State, store.ErrNotStaged)
		}
		return ib.Bucket(bucketManifests).Put(u64(st.version), mb)
	})
	if err != nil {
		return store.VersionInfo{}, err
	}
	counts, err := store.Verify(m, want, wantCount, func(fn func(store.Entry) error) error {
		return st.s.scan(ctx, st.incident, st.version, true, fn)
	})
	if errors.Is(err, store.ErrVerify) {
		st.done = true
		if aerr := st.abort(ctx); aerr != nil {
			return store.VersionInfo{}, errors.Join(err, aerr)
		}
		return store.VersionInfo{}, fmt.Errorf("embedded: commit %s v%d: %w", st.incident, st.version, err)
	}
	if err != nil {
		return store.VersionInfo{}, err
	}
	var info store.VersionInfo
	err = st.s.update(ctx, func(tx *bolt.Tx) error {
		ib, doc, err := versionOf(tx, st.incident, st.version)
		if err != nil {
			return err
		}
		if doc.State != store.StateStaging {
			return fmt.Errorf("embedded: commit %s v%d (%s): %w", st.incident, st.version, doc.State, store.ErrNotStaged)
		}
		doc.State = store.StateStaged
		doc.Digest = want
		doc.Counts = counts
		if err := putVersion(ib, doc); err != nil {
			return err
		}
		info = doc.info(st.incident)
		return nil
	})
	if err == nil {
		st.done = true
	}
	return info, err
}

// Abort marks a version still staging as aborted and drops its records; it
// is a no-op for a version already committed or aborted.
func (st *stager) Abort(ctx context.Context) error {
	st.buf = nil
	if st.done {
		return nil
	}
	if err := st.abort(ctx); err != nil {
		return err
	}
	st.done = true
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

// versionDoc is the stored form of a version's info.
type versionDoc struct {
	Version     uint64       `json:"version"`
	State       store.State  `json:"state"`
	Digest      store.Digest `json:"-"`
	DigestHex   string       `json:"digest,omitempty"`
	Counts      store.Counts `json:"counts"`
	CreatedBy   string       `json:"created_by,omitempty"`
	CreatedAt   time.Time    `json:"created_at"`
	PublishedBy string       `json:"published_by,omitempty"`
	PublishedAt time.Time    `json:"published_at"`
	Source      string       `json:"source,omitempty"`
}

func (d versionDoc) info(incident string) store.VersionInfo {
	return store.VersionInfo{
		Incident:    incident,
		Version:     d.Version,
		State:       d.State,
		Digest:      d.Digest,
		Counts:      d.Counts,
		CreatedBy:   d.CreatedBy,
		CreatedAt:   d.CreatedAt,
		PublishedBy: d.PublishedBy,
		PublishedAt: d.PublishedAt,
		Source:      d.Source,
	}
}

func putVersion(ib *bolt.Bucket, d versionDoc) error {
	d.DigestHex = ""
	if d.Digest != (store.Digest{}) {
		d.DigestHex = d.Digest.String()
	}
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("embedded: encode version: %w", err)
	}
	return ib.Bucket(bucketVersions).Put(u64(d.Version), b)
}

func decodeVersion(b []byte) (versionDoc, error) {
	var d versionDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return d, corrupt("version", err)
	}
	if d.DigestHex != "" {
		dg, err := store.ParseDigest(d.DigestHex)
		if err != nil {
			return d, corrupt("version digest", err)
		}
		d.Digest = dg
	}
	return d, nil
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

func decodeEntry(k, v []byte) (store.Entry, error) {
	if len(k) != store.KeySize {
		return store.Entry{}, corrupt("record key", errors.New("bad length"))
	}
	r, _, err := store.DecodeRecord(v)
	if err != nil {
		return store.Entry{}, corrupt("record", err)
	}
	return store.Entry{Key: store.Key(k), Record: r}, nil
}

func idemKey(key store.Key, idem store.IdemKey) []byte {
	b := make([]byte, 0, 2*store.KeySize)
	b = append(b, key[:]...)
	return append(b, idem[:]...)
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getU64(b *bolt.Bucket, k []byte) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
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

// seekAfter positions c on the first key after `after` (the first key of
// all when after is nil): how Scan and Pins resume in a new transaction
// where the previous chunk ended.
func seekAfter(c *bolt.Cursor, after []byte) (k, v []byte) {
	if after == nil {
		return c.First()
	}
	k, v = c.Seek(after)
	if bytes.Equal(k, after) {
		k, v = c.Next()
	}
	return k, v
}
