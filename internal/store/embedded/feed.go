package embedded

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/impact-health/impact/internal/store"
)

// The change log (store.Feed) of the embedded store lives in the process's
// memory, next to the file: one process owns the file, so every replica
// that tails the log (package store/replica) runs in the same process.
//
//   - Every write that changes what a replica answers from (ClaimPin,
//     Publish, a stager's Commit, Tombstone, DeleteVersion) appends its
//     change after its bbolt transaction committed and before it returns,
//     while it still holds the store's write order (feed.order): changes
//     are numbered 1, 2, 3... without gap, in commit order, and a write
//     that fails appends nothing.
//   - The log keeps the last DefaultChangeLog changes (WithChangeLog); a
//     reader whose cursor is older sees the gap in the sequence numbers
//     and loads again.
//   - Leases are measured on the process's monotonic clock (time.Now).
//   - The log and the registry start empty at each Open: a replica
//     created over a store that was just opened joins from the store's
//     state (its visible versions, pins and tombstones) at sequence 0,
//     exactly as it joins a Redis stream at its tail.

// DefaultChangeLog is how many changes the log keeps: a replica that falls
// further behind loads again. A change takes 128 bytes plus its notice id
// (shared with the replica's copy of the pin), so a full log holds about
// 26 MB.
const DefaultChangeLog = 200_000

// minChangeLog is the smallest log WithChangeLog admits (as on Redis).
const minChangeLog = 1000

// WithChangeLog sets how many changes the log keeps (default
// DefaultChangeLog, at least 1000).
func WithChangeLog(n int) Option {
	return func(o *options) { o.changeLog = n }
}

// feed is the change log and the registry of replicas.
type feed struct {
	// order is held from before a change-producing write transaction
	// begins until its changes are appended: log order is commit order.
	order sync.Mutex

	mu   sync.Mutex
	max  int
	ring []store.Change // the last len(ring) changes; once full, the oldest at ring[head]
	head int
	tail uint64        // the last change's sequence number
	wake chan struct{} // closed, and replaced, by every append
	reg  map[string]*replicaEntry
}

type replicaEntry struct {
	expiry  time.Time // on the monotonic clock
	serving bool
	ack     uint64
	seq     uint64 // the last renewal's (ReplicaLease.Seq)
}

func newFeed(max int) *feed {
	return &feed{max: max, wake: make(chan struct{}), reg: map[string]*replicaEntry{}}
}

// append numbers and appends changes, trimming the oldest past max, and
// wakes the readers waiting.
func (f *feed) append(cs []store.Change) {
	if len(cs) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cs {
		f.tail++
		c.Seq = f.tail
		switch {
		case len(f.ring) < cap(f.ring):
			f.ring = append(f.ring, c)
		case len(f.ring) < f.max: // grow by doubling, up to max
			ring := make([]store.Change, len(f.ring), min(f.max, max(64, 2*cap(f.ring))))
			copy(ring, f.ring)
			f.ring = append(ring, c)
		default:
			f.ring[f.head] = c
			f.head = (f.head + 1) % len(f.ring)
		}
	}
	close(f.wake)
	f.wake = make(chan struct{})
}

// since returns up to n changes after seq after (n <= 0: all), from the
// oldest kept if after is older, the last sequence number returned, and
// the channel the next append closes.
func (f *feed) since(after uint64, n int) ([]store.Change, uint64, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tail <= after || len(f.ring) == 0 {
		return nil, after, f.wake
	}
	oldest := f.tail - uint64(len(f.ring)) + 1
	from := max(after+1, oldest)
	count := f.tail - from + 1
	if n > 0 && count > uint64(n) {
		count = uint64(n)
	}
	out := make([]store.Change, count)
	i := (f.head + int(from-oldest)) % len(f.ring)
	for j := range out {
		out[j] = f.ring[i]
		if i++; i == len(f.ring) {
			i = 0
		}
	}
	return out, from + count - 1, f.wake
}

func (f *feed) lastSeq() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tail
}

// logged runs fn in a write transaction, committed and fsynced before it
// returns, and appends the changes fn emitted once it committed, in the
// same critical section (see feed.order). A failed transaction appends
// nothing.
func (s *Store) logged(ctx context.Context, fn func(tx *bolt.Tx, emit func(store.Change)) error) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	s.feed.order.Lock()
	defer s.feed.order.Unlock()
	var changes []store.Change
	err := s.db.Update(func(tx *bolt.Tx) error {
		changes = changes[:0]
		return fn(tx, func(c store.Change) { changes = append(changes, c) })
	})
	if err != nil {
		return mapErr(err)
	}
	s.feed.append(changes)
	return nil
}

// feedUsable fails once the store is closed, or ctx ended.
func (s *Store) feedUsable(ctx context.Context) error {
	select {
	case <-s.closing:
		return fmt.Errorf("embedded: %w: store closed", store.ErrUnavailable)
	default:
	}
	return ctxErr(ctx)
}

func cursorOf(seq uint64) store.FeedCursor { return store.FeedCursor(strconv.FormatUint(seq, 10)) }

func parseCursor(c store.FeedCursor) (uint64, error) {
	if c == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(string(c), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("embedded: change log cursor %q is not one of this store's", c)
	}
	return n, nil
}

// RenewReplica implements store.Feed.
func (s *Store) RenewReplica(ctx context.Context, r store.ReplicaLease) (store.Renewal, error) {
	if err := s.feedUsable(ctx); err != nil {
		return store.Renewal{}, err
	}
	f := s.feed
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	cur := f.reg[r.ID]
	if cur != nil && cur.seq >= r.Seq && r.Seq > 0 {
		return store.Renewal{}, fmt.Errorf("renewal %d of replica is older than one applied: %w", r.Seq, store.ErrConflict)
	}
	cont := cur != nil && now.Before(cur.expiry) && cur.serving
	f.reg[r.ID] = &replicaEntry{expiry: now.Add(r.Lease), serving: r.Serving, ack: r.Acked, seq: r.Seq}
	live := 0
	for _, e := range f.reg {
		if now.Before(e.expiry) {
			live++
		}
	}
	return store.Renewal{Tail: f.tail, Continuous: cont, Live: live}, nil
}

// AckReplica implements store.Feed.
func (s *Store) AckReplica(ctx context.Context, id string, seq uint64) error {
	if err := s.feedUsable(ctx); err != nil {
		return err
	}
	f := s.feed
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.reg[id]; e != nil && time.Now().Before(e.expiry) && seq > e.ack {
		e.ack = seq
	}
	return nil
}

// RemoveReplica implements store.Feed.
func (s *Store) RemoveReplica(ctx context.Context, id string) error {
	if err := s.feedUsable(ctx); err != nil {
		return err
	}
	f := s.feed
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.reg, id)
	return nil
}

// ReplicaAcks implements store.Feed.
func (s *Store) ReplicaAcks(ctx context.Context) (store.Acks, error) {
	if err := s.feedUsable(ctx); err != nil {
		return store.Acks{}, err
	}
	f := s.feed
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	a := store.Acks{Tail: f.tail, MinAck: f.tail}
	for id, e := range f.reg {
		switch {
		case !now.Before(e.expiry):
			delete(f.reg, id)
		case e.serving:
			a.Serving++
			a.MinAck = min(a.MinAck, e.ack)
		}
	}
	return a, nil
}

// FeedTail implements store.Feed.
func (s *Store) FeedTail(ctx context.Context) (uint64, store.FeedCursor, error) {
	if err := s.feedUsable(ctx); err != nil {
		return 0, "", err
	}
	tail := s.feed.lastSeq()
	return tail, cursorOf(tail), nil
}

// Changes implements store.Feed: it returns at once when changes after the
// cursor are in the log, and otherwise waits up to block for the next
// append, ctx's end or the store's Close.
func (s *Store) Changes(ctx context.Context, after store.FeedCursor, block time.Duration, max int) ([]store.Change, store.FeedCursor, error) {
	from, err := parseCursor(after)
	if err != nil {
		return nil, after, err
	}
	var timeout <-chan time.Time
	if block > 0 {
		t := time.NewTimer(block)
		defer t.Stop()
		timeout = t.C
	}
	for {
		if err := s.feedUsable(ctx); err != nil {
			return nil, after, err
		}
		out, last, wake := s.feed.since(from, max)
		if len(out) > 0 {
			return out, cursorOf(last), nil
		}
		if block <= 0 {
			return nil, after, nil
		}
		select {
		case <-wake:
		case <-timeout:
			return nil, after, nil
		case <-ctx.Done():
		case <-s.closing:
		}
	}
}

// errNoTombstones: the tombstone bucket was never created.
var errNoTombstones = errors.New("no tombstones")

// Tombstones implements store.Feed, reading the tombstone bucket a chunk
// per read transaction (fn runs outside any).
func (s *Store) Tombstones(ctx context.Context, fn func(store.Key) error) error {
	bucket := func(tx *bolt.Tx) (*bolt.Bucket, error) {
		if tb := tx.Bucket(bucketTombstones); tb != nil {
			return tb, nil
		}
		return nil, errNoTombstones
	}
	decode := func(k, _ []byte) (store.Key, error) {
		if len(k) != store.KeySize {
			return store.Key{}, corrupt("tombstone key", errors.New("bad length"))
		}
		return store.Key(k), nil
	}
	err := chunked(ctx, s, bucket, decode, func(k store.Key) store.Key { return k }, fn)
	if errors.Is(err, errNoTombstones) {
		return nil
	}
	return err
}

var _ store.Feed = (*Store)(nil)
