package redisstore

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/impact-health/impact/internal/store"
)

// Read returns the subject's view in one round trip when the cached visible
// version is current (see the package doc).
func (s *Store) Read(ctx context.Context, incident string, key store.Key, idem *store.IdemKey) (store.View, error) {
	pinBits, err := s.pinBitsOf(ctx, incident)
	if err != nil {
		return store.View{}, err
	}
	hint := s.hint(incident)
	cached := hint.Load()
	var cachedBits uint8
	if cached > 0 {
		b, ok := s.bitsCache.Load(versionRef{incident, cached})
		if ok {
			cachedBits = b.(uint8)
		} else {
			cached = 0 // learn the bits below, once
		}
	}
	pb := bucket(key, pinBits)
	field := string(key[:])
	q := readQuery{head: s.headKey(incident), tomb: s.tombKey(key), pins: s.pinsKey(incident, pb), field: field}
	if cached > 0 {
		q.recKey = s.recordsKey(incident, cached, bucket(key, cachedBits))
	}
	if idem != nil {
		q.idemKey, q.idemField = s.idemKey(incident, pb), idemField(*idem, key)
	}
	rep, err := s.readPipeline(ctx, q)
	if err != nil {
		return store.View{}, err
	}
	h, ok, err := parseHead(incident, rep.head)
	if err != nil {
		return store.View{}, err
	}
	if !ok {
		return store.View{}, fmt.Errorf("incident: %w", store.ErrNotFound)
	}
	view := store.View{Visible: h.Visible}
	if rep.tomb {
		view.Erased = true // see Tombstone
		return view, nil
	}
	if view.Pin, err = decodeOptionalPin(rep.pin); err != nil {
		return store.View{}, err
	}
	if q.idemKey != "" {
		if view.Replay, err = decodeOptionalPin(rep.idem); err != nil {
			return store.View{}, err
		}
	}
	if h.Visible == 0 {
		return view, nil
	}
	if h.Visible != cached {
		// The hint was stale (or unknown): read the record at the version
		// the pointer named. Correctness never rests on the hint.
		hint.Store(h.Visible)
		bits, set, err := s.bitsOf(ctx, incident, h.Visible)
		if err != nil {
			return store.View{}, err
		}
		if !set {
			return store.View{}, fmt.Errorf("%w: visible version %d has no records", store.ErrUnavailable, h.Visible)
		}
		if rep.rec, err = s.c.HMGet(ctx, s.recordsKey(incident, h.Visible, bucket(key, bits)), field, sentinelName).Result(); err != nil {
			return store.View{}, unavailable(err)
		}
	}
	if view.Record, err = recordOf(rep.rec, h.Visible); err != nil {
		return store.View{}, err
	}
	return view, nil
}

// recordOf decodes an HMGET of [key, sentinel]. A missing sentinel means the
// bucket does not exist: the version's records are gone, so fail closed.
func recordOf(vals []any, v uint64) (store.Record, error) {
	if len(vals) != 2 || vals[1] == nil {
		return store.Record{}, fmt.Errorf("%w: records of version %d are missing", store.ErrUnavailable, v)
	}
	if vals[0] == nil {
		return store.Record{}, nil // not in the roster: not affected
	}
	r, rest, err := store.DecodeRecord([]byte(vals[0].(string)))
	if err != nil || len(rest) != 0 {
		return store.Record{}, fmt.Errorf("%w: corrupt record", store.ErrUnavailable)
	}
	return r, nil
}

// decodeOptionalPin decodes a pin read with HGET: nil when there is none.
func decodeOptionalPin(b []byte) (*store.Pin, error) {
	if b == nil {
		return nil, nil
	}
	p, err := store.DecodePin(b)
	if err != nil {
		return nil, fmt.Errorf("%w: corrupt pin", store.ErrUnavailable)
	}
	return &p, nil
}

// Records returns the records of keys at a staged or published version.
func (s *Store) Records(ctx context.Context, incident string, version uint64, keys []store.Key) ([]store.Record, error) {
	bits, err := s.readableBits(ctx, incident, version)
	if err != nil {
		return nil, err
	}
	out := make([]store.Record, len(keys))
	for lo := 0; lo < len(keys); lo += readChunk {
		hi := min(len(keys), lo+readChunk)
		cmds := make([]*redis.SliceCmd, 0, hi-lo)
		_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys[lo:hi] {
				cmds = append(cmds, p.HMGet(ctx, s.recordsKey(incident, version, bucket(k, bits)), string(k[:]), sentinelName))
			}
			return nil
		})
		if err != nil {
			return nil, unavailable(err)
		}
		for i, c := range cmds {
			if out[lo+i], err = recordOf(c.Val(), version); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}
