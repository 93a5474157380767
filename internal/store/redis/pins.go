package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
)

// idemField scopes an idempotency key to its subject: a key reused for
// another subject never replays someone else's notice.
func idemField(idem store.IdemKey, key store.Key) string {
	var b [2 * store.KeySize]byte
	copy(b[:], idem[:])
	copy(b[store.KeySize:], key[:])
	return string(b[:])
}

// ClaimPin replaces the subject's pin old by next and records next under
// idem, atomically (claimScript), if next.Version is staged or published
// (ErrConflict if it is being or was deleted, so that the caller decides
// again at the visible version; ErrNotFound if it was never allocated).
// On a standalone or Sentinel Redis the script checks the version too; on
// a Cluster, where the version's state is in another slot, the version is
// checked right after the write and the claim undone if it fails (see
// DeleteVersion for why this is enough). With WithWait, it returns only
// after the replicas acknowledged the pin.
func (s *Store) ClaimPin(ctx context.Context, incident string, key store.Key, old *store.Pin, next store.Pin, idem store.IdemKey) error {
	pinBits, err := s.pinBitsOf(ctx, incident)
	if err != nil {
		return err
	}
	if next.Version == 0 || next.NoticeID == "" {
		return errors.New("redisstore: a pin needs a version and a notice id")
	}
	pb := bucket(key, pinBits)
	keys := []string{s.pinsKey(incident, pb), s.idemKey(incident, pb)}
	_, cluster := s.c.(*redis.ClusterClient)
	if !cluster {
		keys = append(keys, s.versionsKey(incident), s.headKey(incident), s.tombKey(key), s.fencesKey(incident))
		keys = s.feedKeys(keys...)
	}
	field, ifield := string(key[:]), idemField(idem, key)
	hasOld, oldID := "0", ""
	if old != nil {
		hasOld, oldID = "1", old.NoticeID
	}
	pin := store.AppendPin(nil, next)
	res, err := s.runScript(ctx, claimScript, keys, s.feedArgs(incident, field, hasOld, oldID, pin, next.Version, ifield)...)
	if err != nil {
		return err
	}
	arr, _ := res.([]any)
	if len(arr) == 0 {
		return fmt.Errorf("%w: unexpected claim reply", store.ErrUnavailable)
	}
	switch arr[0] {
	case "ok":
	case "conflict", "idem":
		return fmt.Errorf("pin changed: %w", store.ErrConflict)
	case "unpinnable":
		return fmt.Errorf("version %d is not available to pin: %w", next.Version, store.ErrConflict)
	case "notfound":
		return fmt.Errorf("version: %w", store.ErrNotFound)
	case "erased":
		return fmt.Errorf("the subject's account was closed: %w", store.ErrConflict)
	case "fenced":
		return fmt.Errorf("version %d is fenced by a publish: %w", next.Version, store.ErrConflict)
	default:
		return fmt.Errorf("%w: unexpected claim reply", store.ErrUnavailable)
	}
	if !cluster {
		return nil // the script checked the version and the tombstone
	}
	prev, _ := arr[1].(string)

	// Cluster: the version's state lives in another slot, so it is read
	// after the pin write; DeleteVersion marks a version deleting before it
	// reads the pins, so one of the two sees the other. A claim that finds
	// its version unavailable is undone.
	// Likewise the subject must not be tombstoned (see Tombstone).
	var state *redis.StringCmd
	var latest *redis.StringCmd
	var tomb *redis.BoolCmd
	cmds, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		state = p.HGet(ctx, s.versionsKey(incident), vfield(next.Version, ":state"))
		latest = p.HGet(ctx, s.headKey(incident), "latest")
		tomb = p.HExists(ctx, s.tombKey(key), field)
		return nil
	})
	if err := cmdErr(cmds, err); err != nil {
		// The pin stands; the caller sees an error and retries with the same
		// idempotency key, which replays it.
		return err
	}
	fenced, err := s.fencedAfterWrite(ctx, incident, next.Version)
	if err != nil {
		return err // the pin stands, as above
	}
	if st := state.Val(); (st == "2" || st == "3") && !tomb.Val() && !fenced {
		return nil
	}
	if _, err := s.runScript(ctx, unclaimScript, keys, field, pin, prev, ifield); err != nil {
		return err
	}
	if fenced {
		return fmt.Errorf("version %d is fenced by a publish: %w", next.Version, store.ErrConflict)
	}
	if tomb.Val() {
		return fmt.Errorf("the subject's account was closed: %w", store.ErrConflict)
	}
	if l, _ := strconv.ParseUint(latest.Val(), 10, 64); next.Version > l {
		return fmt.Errorf("version: %w", store.ErrNotFound)
	}
	return fmt.Errorf("version %d is not available to pin: %w", next.Version, store.ErrConflict)
}

// Pins calls fn for every pin of the incident.
func (s *Store) Pins(ctx context.Context, incident string, fn func(store.Key, store.Pin) error) error {
	pinBits, err := s.pinBitsOf(ctx, incident)
	if err != nil {
		return err
	}
	return s.scanHashes(ctx, 1<<pinBits, func(b int) string { return s.pinsKey(incident, uint32(b)) },
		func(f, v string) error {
			if len(f) != store.KeySize {
				return fmt.Errorf("%w: malformed pin key", store.ErrUnavailable)
			}
			p, err := store.DecodePin([]byte(v))
			if err != nil {
				return fmt.Errorf("%w: corrupt pin", store.ErrUnavailable)
			}
			var k store.Key
			copy(k[:], f)
			return fn(k, p)
		})
}

// scanHashes calls fn for every field of the hashes key(0..n-1).
func (s *Store) scanHashes(ctx context.Context, n int, key func(int) string, fn func(field, val string) error) error {
	for lo := 0; lo < n; lo += readChunk {
		err := s.scanHashesRange(ctx, lo, min(n, lo+readChunk), key, func(_, f, v string) error { return fn(f, v) })
		if err != nil {
			return err
		}
	}
	return nil
}

// scanHashesRange reads the hashes key(lo..hi-1) in one pipeline and calls
// fn for each field with the hash's key name.
func (s *Store) scanHashesRange(ctx context.Context, lo, hi int, key func(int) string, fn func(key, field, val string) error) error {
	names := make([]string, 0, hi-lo)
	cmds := make([]*redis.MapStringStringCmd, 0, hi-lo)
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b := lo; b < hi; b++ {
			names = append(names, key(b))
			cmds = append(cmds, p.HGetAll(ctx, names[len(names)-1]))
		}
		return nil
	})
	if err != nil {
		return unavailable(err)
	}
	for i, c := range cmds {
		for f, v := range c.Val() {
			if err := fn(names[i], f, v); err != nil {
				return err
			}
		}
	}
	return nil
}
