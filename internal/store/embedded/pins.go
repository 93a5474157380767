package embedded

import (
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/impact-health/impact/internal/store"
)

// ClaimPin replaces the subject's pin old by next and records next under
// idem, atomically. Concurrent claims are committed together, in one
// transaction and one fsync (group commit), each checked in turn against the
// pins as the claims before it in the group left them.
func (s *Store) ClaimPin(ctx context.Context, incident string, key store.Key, old *store.Pin, next store.Pin, idem store.IdemKey) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	val := store.AppendPin(nil, next)
	// The change carries the pin as a read decodes it (times in UTC).
	pin, err := store.DecodePin(val)
	if err != nil {
		return fmt.Errorf("embedded: claim pin: %w", err)
	}
	c := &claim{incident: incident, key: key, old: old, val: val, pin: pin, idem: idem, done: make(chan error, 1)}
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
	val      []byte    // the encoded next pin
	pin      store.Pin // next, decoded from val
	idem     store.IdemKey
	done     chan error
	err      error
}

// maxClaimGroup bounds how many claims one transaction commits.
const maxClaimGroup = 512

// claimWriter commits claims until the store closes. It takes one claim,
// then every other claim already waiting, and applies them in one
// transaction; the claims that succeeded append their changes in the order
// they were applied.
func (s *Store) claimWriter() {
	defer close(s.writerDone)
	group := make([]*claim, 0, maxClaimGroup)
	changes := make([]store.Change, 0, maxClaimGroup)
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
		s.feed.order.Lock()
		err := mapErr(s.db.Update(func(tx *bolt.Tx) error {
			changes = changes[:0]
			for _, c := range group {
				var err error
				c.err, err = applyClaim(tx, c)
				if err != nil {
					return err
				}
				if c.err == nil {
					changes = append(changes, store.Change{Kind: store.ChangePin, Incident: c.incident, Key: c.key, Version: c.pin.Version, Pin: c.pin})
				}
			}
			return nil
		}))
		if err == nil {
			s.feed.append(changes)
		}
		s.feed.order.Unlock()
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
		if c.pin.Version < cur.Version {
			return fmt.Errorf("embedded: claim pin: v%d is before the pinned v%d: %w", c.pin.Version, cur.Version, store.ErrConflict), nil
		}
	} else if c.old != nil {
		return fmt.Errorf("embedded: claim pin: subject has no pin: %w", store.ErrConflict), nil
	}
	// A publish counting the notified subjects it corrects fences the
	// versions up to the visible one (see store.Fences).
	if fenced(ib, c.pin.Version) {
		return fmt.Errorf("embedded: claim pin: v%d is fenced by a publish: %w", c.pin.Version, store.ErrConflict), nil
	}
	// The version pinned must hold its whole content: a version deleted (or
	// never loaded) is refused in the same transaction that would pin it,
	// so DeleteVersion and a claim never both succeed.
	if b := ib.Bucket(bucketVersions).Get(u64(c.pin.Version)); b == nil {
		if c.pin.Version > getU64(ib, keyLatest) {
			return fmt.Errorf("embedded: claim pin: v%d: %w", c.pin.Version, store.ErrNotFound), nil
		}
		return fmt.Errorf("embedded: claim pin: v%d was deleted: %w", c.pin.Version, store.ErrConflict), nil
	} else if doc, err := decodeVersion(b); err != nil {
		return err, nil
	} else if !readable(doc.State) {
		return fmt.Errorf("embedded: claim pin: v%d is %s: %w", c.pin.Version, doc.State, store.ErrConflict), nil
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
	type keyPin struct {
		k store.Key
		p store.Pin
	}
	pins := func(tx *bolt.Tx) (*bolt.Bucket, error) {
		ib, err := incidentBucket(tx, incident)
		if err != nil {
			return nil, err
		}
		return ib.Bucket(bucketPins), nil
	}
	decode := func(k, v []byte) (keyPin, error) {
		if len(k) != store.KeySize {
			return keyPin{}, corrupt("pin key", errors.New("bad length"))
		}
		p, err := store.DecodePin(v)
		if err != nil {
			return keyPin{}, corrupt("pin", err)
		}
		return keyPin{store.Key(k), p}, nil
	}
	return chunked(ctx, s, pins, decode, func(e keyPin) store.Key { return e.k }, func(e keyPin) error { return fn(e.k, e.p) })
}
